"""End to end through `python -m synface_jax.main`: train, checkpoint, resume, evaluate."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, subprocess_env

SIZE = 32


def _face(proto, rng):
  base = np.kron(proto, np.ones((SIZE // 4, SIZE // 4, 1)))
  return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  """6 training identities x 8 images (CASIA layout) and a 10-identity LFW-style pair set."""
  root = tmp_path_factory.mktemp('faces')
  rng = np.random.default_rng(0)
  protos = rng.uniform(0, 255, (10, 4, 4, 3))
  for i in range(6):
    (root / 'train' / f'id{i:03d}').mkdir(parents=True)
    for j in range(8):
      _face(protos[i], rng).save(root / 'train' / f'id{i:03d}' / f'{j:03d}.jpg')
  names = [f'Person_{k}' for k in range(10)]
  for k, name in enumerate(names):
    (root / 'lfw' / name).mkdir(parents=True)
    for j in (1, 2):
      _face(protos[k], rng).save(root / 'lfw' / name / f'{name}_{j:04d}.jpg')
  lines = ['2\t5']
  for _ in range(2):
    lines += [f'{names[k]}\t1\t2' for k in range(5)]
    lines += [f'{names[k]}\t1\t{names[k + 5]}\t2' for k in range(5)]
  (root / 'pairs.txt').write_text('\n'.join(lines) + '\n')
  return root


def _main(workdir, data, steps):
  env = subprocess_env()
  args = [
      sys.executable, '-m', 'synface_jax.main', '--config=configs/real.py', f'--workdir={workdir}',
      f'--config.real.path={data / "train"}', '--config.model.arch=r18',
      '--config.model.width=0.0625', f'--config.model.input_size=({SIZE},{SIZE})',
      '--config.optim.batch_size=16', f'--config.num_train_steps={steps}',
      '--config.log_every_steps=5', '--config.checkpoint_every_steps=10',
      f'--config.eval.pairs=("{data / "lfw"}:{data / "pairs.txt"}",)']
  proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout + proc.stderr


def _losses(log):
  return [float(v) for v in re.findall(r'train/loss=([0-9.e+-]+)', log)]


@pytest.mark.slow
def test_train_resume_and_evaluate(dataset, tmp_path):
  workdir = tmp_path / 'run'
  log = _main(workdir, dataset, steps=20)
  losses = _losses(log)
  assert len(losses) == 4 and losses[-1] < losses[0] / 2, losses
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['10', '20', 'model.json']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  accuracy = float(re.search(r'eval/lfw/insightface/accuracy=([0-9.]+)', log).group(1))
  # The run ends by saying where its figures are, and they are the ones it logged.
  results = json.loads((workdir / 'results.json').read_text())
  assert results['eval/lfw/insightface/accuracy'] == pytest.approx(accuracy, abs=5e-5)
  assert f'results: {workdir / "results.json"}' in log
  assert re.search(r'final: loss [0-9.]+, accuracy [0-9.]+, lfw/insightface [0-9.]+', log)

  log = _main(workdir, dataset, steps=30)
  assert 'Resumed from' in log and 'at step 20' in log
  assert 'steps 21..30' in log
  assert len(_losses(log)) == 2  # Steps 25 and 30 only: nothing before the checkpoint reran.
  assert '30' in os.listdir(workdir / 'checkpoints')
  assert re.search(r'\[30\] .*eval/lfw/synface/accuracy=', log)


def test_unknown_config_field_fails_before_compute(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'synface_jax.main', '--config=configs/real.py',
       f'--workdir={tmp_path}', '--config.optim.batchsize=8'],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert 'batchsize' in proc.stderr
  assert not os.listdir(tmp_path)
