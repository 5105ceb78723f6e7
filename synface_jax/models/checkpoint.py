"""Reads a backbone's variables from an orbax checkpoint (converted or written by training).

Both layouts hold {'params': {'backbone': ...}, 'batch_stats': ...} under one CheckpointManager
item; training checkpoints also hold 'step', 'opt_state' and params['head'], which are not read.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINTS_SUBDIR = 'checkpoints'


def checkpoint_dir(path) -> str:
  """The CheckpointManager directory: `path`, or `path`/checkpoints in a training workdir."""
  from synface_jax.checkpointing import workdir_path
  path = workdir_path(path)  # Local (made absolute) or gs://.
  if not path.is_dir():
    raise FileNotFoundError(f'checkpoint directory {path} does not exist')
  nested = path / CHECKPOINTS_SUBDIR
  return os.fspath(nested if nested.is_dir() else path)


def load_backbone(path, step=None):
  """Restores the backbone variables of the latest (or given) step as numpy arrays.

  Args:
    path: a CheckpointManager directory, or a training workdir containing `checkpoints/`.
    step: the step to restore; the latest when None.

  Returns:
    ({'params': backbone params, 'batch_stats': batch stats}, step).

  Raises:
    FileNotFoundError: no checkpoint under `path`.
    ValueError: the checkpoint has no params['backbone'] or batch_stats.
  """
  directory = checkpoint_dir(path)
  options = ocp.CheckpointManagerOptions(create=False)
  with ocp.CheckpointManager(directory, options=options,
                             item_handlers=ocp.PyTreeCheckpointHandler()) as manager:
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
      raise FileNotFoundError(f'no checkpoint{"" if step is None else f" at step {step}"} '
                              f'in {directory}')
    tree = manager.item_metadata(step).tree
    params = tree.get('params') or {}
    if 'backbone' not in params or 'batch_stats' not in tree:
      raise ValueError(f'checkpoint {directory} step {step} has no params/backbone and '
                       f'batch_stats (top-level keys: {sorted(tree)})')
    target = {'params': {'backbone': params['backbone']}, 'batch_stats': tree['batch_stats']}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True))
  return {'params': restored['params']['backbone'],
          'batch_stats': restored['batch_stats']}, int(step)
