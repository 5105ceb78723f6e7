"""The benchmark CLI prints its figures; the head benchmark trains a 1M-class head on 8 devices."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, subprocess_env
from synface_jax import benchmark


def _json_lines(text):
  return [json.loads(line) for line in text.splitlines() if line.startswith('{')]


def test_step_and_mixup_print_figures(capsys, tmp_path):
  benchmark.main(['step', '--arch', 'r18', '--width', '0.0625', '--size', '32x32', '--batch', '8',
                  '--classes', '16', '--steps', '2', '--profile', str(tmp_path)])
  benchmark.main(['mixup', '--batch', '8', '--size', '32x32', '--steps', '2'])
  step, mix = _json_lines(capsys.readouterr().out)
  assert step['images_per_s'] > 0 and step['ms_per_step'] > 0 and step['compile_s'] > 0
  assert step['flops_per_step'] > 0 and np.isfinite(step['loss'])
  ops = step['op_seconds']  # The traced step: its convolutions, forward and both gradients.
  assert {'conv forward', 'conv kernel gradient'} <= set(ops) and all(v >= 0 for v in ops.values())
  assert mix['images_per_s'] > 0


# The 1M-class figure is the benchmark's (README, Benchmark); 100K classes exercise the same
# sharding at a tenth of the memory and time.
@pytest.mark.slow
def test_large_head_trains_a_step_sharded_over_8_devices():
  proc = subprocess.run(
      [sys.executable, '-m', 'synface_jax.benchmark', 'head', '--classes', '100000',
       '--devices', '8', '--arch', 'r18', '--width', '0.0625', '--size', '32x32', '--batch', '16',
       '--steps', '1'], cwd=REPO, capture_output=True, text=True, timeout=900,
      env=subprocess_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  (result,) = _json_lines(proc.stdout)
  # The batch and the head's classes both split over the 8 devices (mesh.head_on_data).
  assert result['devices'] == 8 and result['mesh'] == {'data': 8, 'model': 1}
  assert result['head_shape'] == [100_000, 512]
  assert result['head_bytes_per_device'] == 100_000 * 512 * 4 // 8  # One eighth each.
  assert np.isfinite(result['loss'])
  # Peak memory is printed against parameters + optimizer state + one batch of activations.
  assert result['state_bytes'] >= 2 * 100_000 * 512 * 4  # The head and its momentum.
  assert result['peak_rss_bytes'] > result['state_bytes'] and result['activation_bytes'] > 0
  assert 'peak resident' in proc.stdout


def test_torch_peer_has_insightface_layout_and_our_forward():
  """The peer's weights convert with the insightface converter, and then both nets agree."""
  torch = pytest.importorskip('torch', reason='the torch peer needs torch (the [bench] extra)')
  import jax
  from synface_jax import torch_peer
  from synface_jax.models import convert, iresnet
  torch.manual_seed(0)
  peer = torch_peer.IResNet(torch_peer.STAGES['r18'], (32, 32), width=1 / 16).eval()
  for m in peer.modules():  # Non-trivial statistics, so eval-mode BatchNorm is exercised.
    if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
      m.running_mean.uniform_(-0.5, 0.5)
      m.running_var.uniform_(0.5, 1.5)
  state = {k: v.detach().numpy() for k, v in peer.state_dict().items()}
  variables = convert.torch_to_flax(state, 'r18', 1 / 16, (32, 32))
  x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  want = peer(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
  got = jax.jit(lambda v, x: iresnet('r18', width=1 / 16).apply(v, x, train=False))(variables, x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_torch_peer_trains_in_a_process_that_has_run_tensorflow():
  # The test suite (and a user's notebook) may have TensorFlow loaded: PyPI's CUDA build of torch
  # then crashed on its first optimizer step, importing triton (SIGSEGV).
  pytest.importorskip('torch', reason='the torch peer needs torch (the [bench] extra)')
  pytest.importorskip('tensorflow', reason='needs TensorFlow (the [data] extra)')
  code = ('import tensorflow as tf; tf.constant(1.0) + 1.0\n'
          'from synface_jax import torch_peer\n'
          'run, _ = torch_peer.make_runner("r18", 2, (32, 32), 8, width=1 / 16)\n'
          'print("loss", run(1))\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                        timeout=300, env=subprocess_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'loss' in proc.stdout


def test_step_with_torch_peer_prints_both_and_the_ratio(capsys):
  pytest.importorskip('torch', reason='--peer torch needs torch (the [bench] extra)')
  benchmark.main(['step', '--arch', 'r18', '--width', '0.0625', '--size', '32x32', '--batch', '8',
                  '--classes', '16', '--steps', '1', '--repeats', '2', '--peer', 'torch'])
  (step,) = _json_lines(capsys.readouterr().out)
  assert len(step['ms_per_step_each']) == 2 and len(step['peer_ms_per_step_each']) == 2
  assert step['speed_ratio'] == pytest.approx(step['peer_ms_per_step'] / step['ms_per_step'],
                                              rel=1e-2)
  assert np.isfinite(step['peer_loss']) and step['time_to_first_step_s'] >= step['compile_s']


def test_a_torch_peer_that_dies_is_told_in_one_error(monkeypatch):
  from synface_jax import peer_process
  monkeypatch.setattr(peer_process.importlib.util, 'find_spec', lambda name: object())
  real_popen = peer_process.subprocess.Popen
  # A child that introduces itself, answers one request, then exits with status 3.
  child = ('import json, sys\nprint(json.dumps({"torch": "t", "threads": 1, "loss": {"loss": 1.0}}),'
           ' flush=True)\nsys.stdin.readline()\nprint(json.dumps({"seconds": 0.5, "loss": {"loss":'
           ' 0.5}}), flush=True)\nsys.exit(3)\n')
  monkeypatch.setattr(peer_process.subprocess, 'Popen',
                      lambda args, **kw: real_popen([sys.executable, '-c', child], **kw))
  peer = peer_process.TorchPeer('r18', 2, (32, 32), 8)
  assert peer.info['torch'] == 't' and peer.run(1) == 0.5 and peer.info['loss'] == {'loss': 0.5}
  with pytest.raises(ChildProcessError, match=r'the torch peer process ended \(exit status 3\)'):
    peer.run(1)
  peer.close()  # Closing a dead peer raises nothing.
