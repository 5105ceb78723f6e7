"""The core (models, losses, mixups, the step, generators, benchmark, embedding, export) and the
synthetic-only training loop of `python -m synface_jax.main` must work without TensorFlow.

Accelerator machines often have only jax/flax/optax/orbax, and `pip install -e .` installs no
TensorFlow (it comes with the [data] extra, for real data).
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, subprocess_env

BLOCK = """
import sys
for name in ('tensorflow', 'tensorflow_datasets'):
  sys.modules[name] = None  # Any import of these now fails.
"""

# The demo's command (configs/demo.py, synthetic faces only) shrunk to a few tiny steps.
# One process (a process costs its compiles): every core module imports, then the demo trains.
TRAIN = BLOCK + """
import synface_jax
from synface_jax import (benchmark, embed, embedder, evaluate, generators, losses, mixup, sharding,
                         train, writers)
from synface_jax.models import convert, checkpoint, export, model_spec
from synface_jax.data import images, pair_files, source_pairs
from synface_jax.eval import evaluator, protocols, report, sets
from absl import app
from synface_jax import main
sys.argv = ['main', '--config=configs/demo.py', '--workdir=' + sys.argv[1],
    '--config.model.width=0.0625', '--config.model.input_size=(32,32)',
    '--config.generator.procedural.resolution=0.3', '--config.synthetic.num_identities=8',
    '--config.synthetic.images_per_identity=2', '--config.optim.batch_size=8',
    '--config.num_train_steps=2', '--config.log_every_steps=1', '--config.eval.pairs=()']
app.run(main.main)
"""


def _run(script, *args):
  env = subprocess_env()
  return subprocess.run([sys.executable, '-c', script, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


def test_core_imports_and_demo_trains_without_tensorflow(tmp_path):
  workdir = tmp_path / 'demo'
  proc = _run(TRAIN, str(workdir))
  log = proc.stdout + proc.stderr
  assert proc.returncode == 0, log[-4000:]
  # Two steps logged, a checkpoint, the model description and a TensorBoard event file.
  losses = [float(v) for v in __import__('re').findall(r'\[\d\] .*train/loss=([0-9.e+-]+)', log)]
  assert len(losses) == 2 and all(np.isfinite(losses)), log[-3000:]
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', 'model.json']
  spec = json.loads((workdir / 'checkpoints' / 'model.json').read_text())
  assert spec == {'arch': 'r18', 'width': 0.0625, 'num_features': 512, 'input_size': [32, 32],
                  'dtype': 'float32'}
  events = [f for f in os.listdir(workdir) if f.startswith('events.out.tfevents')]
  assert len(events) == 1 and (workdir / events[0]).stat().st_size > 0
  # The run's model.json is all the embedder needs.
  import synface_jax
  emb = synface_jax.load_embedder(workdir)
  assert emb.step == 2 and emb.spec.input_size == (32, 32)
  e = emb(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)


def test_packaging_keeps_tensorflow_out_of_the_core():
  tomllib = pytest.importorskip('tomllib')
  project = tomllib.loads((pathlib.Path(REPO) / 'pyproject.toml').read_text())['project']
  core = ' '.join(project['dependencies']).lower()
  assert 'tensorflow' not in core and 'torch' not in core
  extras = project['optional-dependencies']
  assert any(d.startswith('tensorflow-cpu') for d in extras['data'])
  assert any(d.startswith('tensorflow-datasets') for d in extras['data'])
  assert any('[data' in d for d in extras['test'])  # The tests exercise the TFDS pipeline.
  assert extras['tpu'][0].startswith('jax[tpu]') and extras['cuda12'][0].startswith('jax[cuda12]')
  # Every console script names a module that runs as `python -m`.
  from synface_jax import scripts
  for name, target in project['scripts'].items():
    module, function = target.split(':')
    assert module == 'synface_jax.scripts' and callable(getattr(scripts, function)), name
    assert (pathlib.Path(REPO) / (scripts.COMMANDS[function].replace('.', '/') + '.py')).exists() or (
        pathlib.Path(REPO) / scripts.COMMANDS[function].replace('.', '/') / '__main__.py').exists()
