"""What keeps a training run safe on disk: the workdir lock, checkpoints that are verified before
they are trusted, and a clean stop on SIGTERM / SIGINT.

* `workdir_path`: a workdir as an `etils.epath.Path`, so that `gs://` (and s3://, az://) workdirs
  are written through their filesystem and never become a local `./gs:/...` folder.
* `WorkdirLock`: one run per workdir. The lock is an `fcntl.flock` on `WORKDIR/.lock`, which the
  kernel releases when its process ends, however it ends, so a run killed with SIGKILL never leaves
  a lock behind; the file holds the owner's host and pid for the error message. Object stores
  have no such lock: a remote workdir is not locked (a warning says so).
* `restore_latest`: the newest checkpoint that restores and holds only finite values; damaged or
  non-finite newer ones are moved aside to `checkpoints/STEP.unusable-N` (never deleted) with a
  warning naming them, so that the run continues from the last good state and can save again.
* `StopSignals`: SIGTERM or SIGINT asks the loop to stop after the step in flight; the loop saves
  a checkpoint synchronously and returns. A second SIGINT interrupts at once.
"""
import contextlib
import errno
import fcntl
import os
import re
import signal
import socket
import threading
from typing import Any, List, Optional, Tuple

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir."""


class NonFiniteError(RuntimeError):
  """Training produced (or was about to keep) NaN or infinite values."""


def all_finite(tree) -> bool:
  """True when every floating-point leaf of a pytree of (possibly sharded) arrays is finite.

  One compiled reduction over the whole tree (per tree structure), one value to the host.
  """
  leaves = [x for x in jax.tree.leaves(tree)
            if jnp.issubdtype(getattr(x, 'dtype', np.float32), jnp.inexact)]
  return bool(_all_finite(leaves)) if leaves else True


@jax.jit
def _all_finite(leaves):
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))


REMOTE_SCHEMES = ('gs', 's3', 'az', 'hf')  # The URL schemes etils.epath reads and writes.


def is_remote(path) -> bool:
  """True for a URL of a remote filesystem (gs://bucket/run), False for a local path."""
  return os.fspath(path).split('://', 1)[0] in REMOTE_SCHEMES and '://' in os.fspath(path)


def workdir_path(path) -> epath.Path:
  """`path` as an epath.Path: a remote URL as it is, a local path made absolute.

  Raises ValueError for a URL of a scheme epath cannot write (it would become a local folder).
  """
  text = os.fspath(path)
  if is_remote(text):
    return epath.Path(text)
  if re.match(r'^[A-Za-z][A-Za-z0-9+.-]*://', text):
    raise ValueError(f'{text}: unsupported filesystem {text.split("://")[0]}://; a workdir is a '
                     f'local path or a {", ".join(s + "://" for s in REMOTE_SCHEMES)} URL')
  return epath.Path(os.path.abspath(text))


class WorkdirLock:
  """An exclusive lock on a workdir for the life of a run (see the module docstring)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(os.fspath(workdir), '.lock')
    self.enabled = enabled
    self._fd: Optional[int] = None

  def __enter__(self):
    if not self.enabled:
      return self
    if is_remote(self.path):
      logging.warning('%s is on an object store, where no lock is possible: make sure no other '
                      'training uses this workdir', os.path.dirname(self.path))
      return self
    os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        os.close(fd)
        raise
      owner = os.read(fd, 200).decode('utf-8', 'replace').strip() or 'another process'
      os.close(fd)
      raise WorkdirBusyError(
          f'{os.path.dirname(self.path)} is in use by a running training ({owner}); wait for '
          f'it to finish or stop it, or choose another --workdir') from None
    os.ftruncate(fd, 0)
    os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}\n'.encode())
    self._fd = fd
    return self

  def __exit__(self, *exc):
    if self._fd is not None:
      os.close(self._fd)  # Releases the flock; the file stays (removing it would race).
      self._fd = None
    return False


def restore_latest(manager, abstract_state, directory: str) -> Tuple[Any, Optional[int], List[str]]:
  """Restores the newest usable checkpoint: (state or None, its step, what was set aside).

  A checkpoint is unusable when orbax cannot restore it into `abstract_state` (files missing or
  damaged) or when any restored value is NaN or infinite. Unusable ones newer than the one used
  are renamed to STEP.unusable-N next to it on process 0, and named in a warning.
  """
  skipped = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state = manager.restore(step, args=_standard_restore(abstract_state))
    except Exception as e:  # pylint: disable=broad-except  # orbax raises many kinds for damage.
      skipped.append((step, f'cannot be restored ({type(e).__name__}: {str(e)[:200]})'))
      continue
    if not all_finite(state):
      skipped.append((step, 'holds NaN or infinite values'))
      continue
    _set_aside(skipped, directory)
    return state, step, [f'step {s} {why}' for s, why in skipped]
  _set_aside(skipped, directory)
  return None, None, [f'step {s} {why}' for s, why in skipped]


def _standard_restore(abstract_state):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp.args.StandardRestore(abstract_state)


def _set_aside(skipped, directory: str):
  if not skipped or jax.process_index() != 0:
    return
  for step, why in skipped:
    source = epath.Path(directory) / str(step)
    n = 0
    while source.with_name(f'{step}.unusable-{n}').exists():
      n += 1
    source.rename(source.with_name(f'{step}.unusable-{n}'))
    logging.warning('Checkpoint %s %s; moved to %s.unusable-%d and resumed from an older one',
                    source, why, source, n)


class StopSignals(contextlib.AbstractContextManager):
  """Turns SIGTERM and the first SIGINT into a request to stop after the current step."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, enabled: bool = True):
    self.enabled = enabled
    self.received: Optional[str] = None
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.received is not None

  def _handle(self, signum, frame):
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # A second Ctrl-C: stop now.
    self.received = signal.Signals(signum).name
    logging.warning('%s received: stopping after the current step and saving a checkpoint',
                    self.received)

  def __enter__(self):
    if self.enabled and threading.current_thread() is threading.main_thread():
      for s in self.SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
    return False
