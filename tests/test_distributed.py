"""Two processes x 4 simulated CPU devices, joined by jax.distributed over localhost, train exactly
like one process with 8 devices."""
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

WORKER = str(REPO / 'tests' / 'distributed_worker.py')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch(process_id, num_processes, port, out):
  return subprocess.Popen([sys.executable, WORKER, str(process_id), str(num_processes), str(port),
                           str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _wait(proc):
  try:
    log, _ = proc.communicate(timeout=300)
  except subprocess.TimeoutExpired:
    proc.kill()
    raise
  assert proc.returncode == 0, log[-3000:]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
  port = _free_port()
  workers = [_launch(i, 2, port, tmp_path / f'p{i}.npz') for i in range(2)]
  single = _launch(0, 1, 0, tmp_path / 'single.npz')
  for proc in workers + [single]:
    _wait(proc)
  want = np.load(tmp_path / 'single.npz')
  for i in range(2):
    got = np.load(tmp_path / f'p{i}.npz')
    np.testing.assert_allclose(got['losses'], want['losses'], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got['fc'], want['fc'], rtol=1e-5, atol=1e-5 * np.abs(want['fc']).max())
    heads = [k for k in got.files if k.startswith('head')]
    assert heads  # Each process holds its own shards of the head; they match the single run's.
    for k in heads:
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5 * np.abs(want[k]).max())
