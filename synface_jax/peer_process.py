"""The torch peer of `benchmark step --peer torch`, in a process of its own.

The child (`python -m synface_jax.torch_peer SPEC`) builds the peer's step and answers each line `N`
on its stdin with the seconds per step of N steps. Torch is never imported into the benchmark's
own process, so torch's and XLA's thread pools never share one, and the child sits idle (blocked
on its stdin) while ours runs.
"""
import importlib.util
import json
import os
import subprocess
import sys

_CLOSE_TIMEOUT_S = 30


class TorchPeer:
  """`run(steps)` -> seconds per step of the peer; `info` as torch_peer.make_runner gives it (the
  latest loss included); `close()` ends the child. Needs torch (the [bench] extra)."""

  def __init__(self, arch: str, batch: int, size, classes: int, width: float = 1.0):
    if importlib.util.find_spec('torch') is None:
      raise ValueError("--peer torch needs torch: pip install 'synface_jax[bench]'")
    spec = json.dumps({'arch': arch, 'batch': batch, 'size': list(size), 'classes': classes,
                       'width': width})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # Where synface_jax is.
    path = os.pathsep.join(p for p in (root, os.environ.get('PYTHONPATH', '')) if p)
    self._child = subprocess.Popen([sys.executable, '-m', 'synface_jax.torch_peer', spec],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                   env=dict(os.environ, PYTHONPATH=path))
    self.info = self._read()

  def _ended(self) -> ChildProcessError:
    return ChildProcessError(f'the torch peer process ended (exit status {self._child.wait()})')

  def _read(self) -> dict:
    line = self._child.stdout.readline()
    if not line:
      raise self._ended()
    return json.loads(line)

  def run(self, steps: int) -> float:
    try:
      self._child.stdin.write(f'{int(steps)}\n')
      self._child.stdin.flush()
    except BrokenPipeError:
      raise self._ended() from None
    reply = self._read()
    self.info['loss'] = reply['loss']
    return reply['seconds']

  def close(self) -> None:
    """Ends the child (end of its input; killed if it has not exited within 30 s)."""
    try:
      self._child.stdin.close()
    except BrokenPipeError:
      pass
    try:
      self._child.wait(timeout=_CLOSE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
      self._child.kill()
      self._child.wait()
    self._child.stdout.close()
