"""The shell commands: `python -m synface_jax.data stats|dump|build` and `benchmark input`."""
import json
import os
import subprocess
import sys

import numpy as np

from conftest import REPO, reference_file, subprocess_env
from synface_jax import benchmark
from synface_jax.data import __main__ as cli

from conftest import make_folder


def test_stats_prints_one_json_line_and_errors_exit_1(tmp_path):
  rec = reference_file('insightface_synface', 'train.rec').parent
  env = subprocess_env()
  proc = subprocess.run([sys.executable, '-m', 'synface_jax.data', 'stats', str(rec)], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  line = json.loads(proc.stdout.strip().splitlines()[-1])
  assert (line['kind'], line['identities'], line['images'], line['skipped']) == ('rec', 5, 20, 0)
  assert f'stats {rec}: 0/20 images' in proc.stderr  # Progress lines name the total.
  assert f'stats {rec}: 20/20 images (100.0%)' in proc.stderr
  assert cli.main(['stats', str(tmp_path / 'missing')]) == 2


def test_dump_and_build(tmp_path, capsys):
  root = make_folder(tmp_path / 'faces', [2, 3])
  assert cli.main(['dump', str(root), '--out', str(tmp_path / 'x.npz'), '--limit', '4']) == 0
  out = np.load(tmp_path / 'x.npz')
  assert out['images'].shape == (4, 16, 16, 3) and out['images'].dtype == np.uint8
  np.testing.assert_array_equal(out['labels'], [0, 0, 1, 1])
  assert cli.main(['build', str(root), '--data-dir', str(tmp_path / 'tfds')]) == 0
  captured = capsys.readouterr()
  built = json.loads(captured.out.strip().splitlines()[-1])
  assert built['kind'] == 'folder' and built['splits'] == {'train': 5}
  assert f'build {root}: 5/5 images (100.0%)' in captured.err


def test_benchmark_input_reports_images_per_second(tmp_path):
  root = make_folder(tmp_path / 'faces', [3, 3])
  result = benchmark.main(['input', '--data', str(root), '--data-dir', str(tmp_path / 'tfds'),
                           '--batch', '8', '--batches', '3', '--size', '16x16'])
  assert result['benchmark'] == 'input' and result['images_per_s_per_host'] > 0


def test_the_package_imports_without_tensorflow():
  script = ("import sys\n"
            "sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None\n"
            "import synface_jax.data\n"
            "print('ok')\n")
  proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0 and 'ok' in proc.stdout, proc.stderr[-2000:]
