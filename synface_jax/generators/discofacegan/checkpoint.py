"""The on-disk layout of a converted DiscoFaceGAN generator, and reading it back.

    DIR/arch.json   {"format": "synface_jax.discofacegan/1", "arch": {Arch fields},
                     "vae_factors": ["id", "exp", "gamma", "rot"]}
    DIR/params/     an orbax PyTree checkpoint of the parameter tree (float32):
                    {'vae': {factor: {fc0, fc1, fc2, x_hat: {kernel, bias}}},
                     'mapping': {'Dense0'..: {'weight', 'bias'}},
                     'synthesis': {...see synthesis.py},
                     'mean_w_id': [num_layers, dlatent_size]}

Weights are the official stored values (unscaled; the run-time equalized-lr scales are applied
by the modules), conv kernels HWIO, noise maps [H, W], the constant [4, 4, C].
"""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from synface_jax.generators.discofacegan.arch import Arch

FORMAT = 'synface_jax.discofacegan/1'
ARCH_FILE = 'arch.json'
PARAMS_DIR = 'params'


def save(directory, params, arch: Arch):
  """Writes params and arch to a new directory (or an empty one)."""
  directory = os.path.abspath(os.fspath(directory))
  if os.path.isdir(directory) and os.listdir(directory):
    raise FileExistsError(f'{directory} is not empty; choose a new output directory')
  os.makedirs(directory, exist_ok=True)
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  ocp.PyTreeCheckpointer().save(os.path.join(directory, PARAMS_DIR), params)
  info = {'format': FORMAT, 'arch': arch.to_dict(), 'vae_factors': sorted(params['vae'])}
  with open(os.path.join(directory, ARCH_FILE), 'w') as f:
    json.dump(info, f, indent=2)


def read_info(directory) -> tuple[Arch, tuple]:
  """(Arch, VAE factors present) of a converted checkpoint directory."""
  path = os.path.join(os.fspath(directory), ARCH_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: {directory} is not a converted DiscoFaceGAN '
                            'checkpoint (see synface_jax.generators.discofacegan.convert)')
  with open(path) as f:
    info = json.load(f)
  if info.get('format') != FORMAT:
    raise ValueError(f'{path}: format {info.get("format")!r}, expected {FORMAT!r}')
  return Arch.from_dict(info['arch']), tuple(info['vae_factors'])


def load(directory, subtree: str | None = None):
  """The parameter tree as numpy arrays, or only its top-level entry `subtree` (e.g. 'vae')."""
  path = os.path.join(os.path.abspath(os.fspath(directory)), PARAMS_DIR)
  checkpointer = ocp.PyTreeCheckpointer()
  if subtree is None:
    tree = checkpointer.restore(path)
  else:
    metadata = checkpointer.metadata(path).item_metadata.tree
    target = {subtree: metadata[subtree]}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    tree = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True))
  tree = jax.tree.map(np.asarray, tree)
  return tree if subtree is None else tree[subtree]
