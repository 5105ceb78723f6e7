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


def test_step_and_mixup_print_figures(capsys):
  benchmark.main(['step', '--arch', 'r18', '--width', '0.0625', '--size', '32x32', '--batch', '8',
                  '--classes', '16', '--steps', '2'])
  benchmark.main(['mixup', '--batch', '8', '--size', '32x32', '--steps', '2'])
  step, mix = _json_lines(capsys.readouterr().out)
  assert step['images_per_s'] > 0 and step['ms_per_step'] > 0 and step['compile_s'] > 0
  assert step['flops_per_step'] > 0 and np.isfinite(step['loss'])
  assert mix['images_per_s'] > 0


@pytest.mark.slow
def test_million_class_head_trains_a_step_on_8_devices():
  proc = subprocess.run(
      [sys.executable, '-m', 'synface_jax.benchmark', 'head', '--classes', '1000000',
       '--devices', '8', '--arch', 'r18', '--width', '0.0625', '--size', '32x32', '--batch', '16',
       '--steps', '1'], cwd=REPO, capture_output=True, text=True, timeout=900,
      env=subprocess_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  (result,) = _json_lines(proc.stdout)
  assert result['devices'] == 8 and result['mesh'] == {'data': 1, 'model': 8}
  assert result['head_shape'] == [1_000_000, 512]
  assert result['head_bytes_per_device'] == 1_000_000 * 512 * 4 // 8  # One eighth each.
  assert np.isfinite(result['loss'])
