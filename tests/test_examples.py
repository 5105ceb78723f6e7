"""The worked extension examples (examples/): each mixup is the formula its docstring states, and
each trains through `python -m synface_jax.main` with the mixup and a generator named by
module:callable in the config."""
import json
import math
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, subprocess_env
from synface_jax.types import Factors, SoftLabel

sys.path.insert(0, str(REPO))  # examples/ is the package `examples`, as main imports it.
from examples import dirichlet_mixup, expression_mixup  # noqa: E402

B = 6


def _factors(rng, *lead):
  dims = dict(identity=160, expression=64, pose=3, lighting=27, noise=32)
  return Factors(**{k: rng.normal(size=(*lead, d)).astype(np.float32) for k, d in dims.items()})


def test_expression_mixup_mixes_identity_by_phi_and_expression_by_its_own_draw():
  rng = np.random.default_rng(0)
  a, b = _factors(rng, B), _factors(rng, B, 1)
  ids, partners = np.arange(B), np.arange(B)[:, None] + 10
  phi = rng.uniform(size=B).astype(np.float32)
  key = jax.random.key(1)
  mixed, label = expression_mixup.mix(key, a, SoftLabel.one_hot(ids), b,
                                      SoftLabel(partners, np.ones((B, 1), np.float32)), phi)
  eta = np.asarray(jax.random.uniform(key, (B,)))[:, None]
  np.testing.assert_allclose(mixed.identity, phi[:, None] * a.identity +
                             (1 - phi[:, None]) * b.identity[:, 0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(mixed.expression, eta * a.expression +
                             (1 - eta) * b.expression[:, 0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(eta[:, 0], phi)  # Its own coefficient, not phi.
  np.testing.assert_array_equal(mixed.pose, a.pose)
  np.testing.assert_array_equal(label.ids, np.stack([ids, partners[:, 0]], -1))
  np.testing.assert_allclose(label.weights, np.stack([phi, 1 - phi], -1))


def test_dirichlet_mixup_mixes_three_identities_and_labels_them():
  rng = np.random.default_rng(1)
  a, b = _factors(rng, B), _factors(rng, B, 2)
  partners = np.stack([np.arange(B) + 10, np.arange(B) + 20], -1)
  mixed, label = dirichlet_mixup.mix(jax.random.key(2), a, SoftLabel.one_hot(np.arange(B)), b,
                                     SoftLabel(partners, np.full((B, 2), 0.5, np.float32)),
                                     np.zeros(B, np.float32))
  w = np.asarray(label.weights)
  assert w.shape == (B, 3) and np.all(w >= 0)
  np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
  assert len({tuple(row) for row in w.round(4)}) == B  # A fresh draw per face.
  want = w[:, :1] * a.identity + w[:, 1:2] * b.identity[:, 0] + w[:, 2:] * b.identity[:, 1]
  np.testing.assert_allclose(mixed.identity, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(mixed.expression, a.expression)
  np.testing.assert_array_equal(label.ids, np.concatenate([np.arange(B)[:, None], partners], -1))


TINY = ['--config.model.arch=r18', '--config.model.width=0.0625', '--config.model.input_size=(32,32)',
        '--config.synthetic.num_identities=8', '--config.synthetic.images_per_identity=2',
        '--config.optim.batch_size=8', '--config.num_train_steps=3', '--config.log_every_steps=1',
        '--config.checkpoint_every_steps=100', '--config.log_batch_images=0',
        '--config.generator.name=tests.toy_generator:ToyGenerator']


@pytest.mark.slow
@pytest.mark.parametrize('example', ['expression_mixup', 'dirichlet_mixup'])
def test_example_trains_through_main(example, tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'synface_jax.main', f'--config=examples/{example}.py:Syn_8_2',
       f'--workdir={tmp_path}', *TINY], cwd=REPO, env=subprocess_env(), capture_output=True,
      text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  losses = [float(v) for v in re.findall(r'train/loss=([0-9.e+-]+)', proc.stdout + proc.stderr)]
  assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses), losses
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['train/loss'] == pytest.approx(losses[-1], rel=1e-4)
