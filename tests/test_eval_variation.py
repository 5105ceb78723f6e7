"""Intra-class variation: statistics on clusters of known spread, IM renders, the command."""
import contextlib
import io
import json
import math

import jax
import numpy as np
import pytest

from synface_jax import evaluate
from synface_jax.data import images as image_io
from synface_jax.eval import sets, variation
from conftest import raw_embedder, write_tiny_checkpoint
from toy_generator import ToyGenerator

HW = (32, 32)
TINY = 1 / 16


def _circle_clusters(delta, per_side=3, classes=4):
  """Unit vectors in 2-D: class c around angle 90c degrees, faces at +-delta (per_side each)."""
  x, labels = [], []
  for c in range(classes):
    theta = 2 * math.pi * c / classes
    for sign in (1, -1):
      for _ in range(per_side):
        x.append([math.cos(theta + sign * delta), math.sin(theta + sign * delta)])
        labels.append(c)
  return 5.0 * np.array(x), np.array(labels)  # Scaled: the statistics normalise first.


@pytest.mark.parametrize('delta', [0.1, 0.4, 0.9])
def test_known_spread_and_variance_ratio(delta):
  x, labels = _circle_clusters(delta)
  s = variation.variation_stats(x, labels)
  # Each face is delta from its centre direction; the class mean is cos(delta) u_c, so a face is
  # sin(delta) away from it; the class means cos(delta) u_c sum to 0 over the 4 classes.
  assert s['spread_mean'] == pytest.approx(math.degrees(delta))
  assert s['spread_std'] == pytest.approx(0.0, abs=1e-6)
  assert s['within'] == pytest.approx(math.sin(delta) ** 2)
  assert s['between'] == pytest.approx(math.cos(delta) ** 2)
  assert s['ratio'] == pytest.approx(math.tan(delta) ** 2)
  assert s['concentration'] == pytest.approx(0.0, abs=1e-12)  # Balanced around the circle.
  assert (s['identities'], s['images']) == (4, 24)


def test_unequal_classes_by_hand():
  # Class 0: (1, 0) twice; class 1: (0, 1) and (1, 0) -> mean (0.5, 0.5); overall (0.75, 0.25).
  x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
  s = variation.variation_stats(x, [0, 0, 1, 1])
  assert s['within'] == pytest.approx((0 + 0 + 0.5 + 0.5) / 4)
  assert s['between'] == pytest.approx((2 * (0.25 ** 2 + 0.25 ** 2) + 2 * (0.25 ** 2 + 0.25 ** 2)) / 4)
  assert s['spread_mean'] == pytest.approx((0 + 45) / 2)
  assert s['spread_median'] == pytest.approx(22.5)
  assert s['concentration'] == pytest.approx(math.hypot(0.75, 0.25))
  assert s['within'] + s['between'] == pytest.approx(1 - s['concentration'] ** 2)
  with pytest.raises(ValueError, match='at least 2 identities'):
    variation.variation_stats(x, [0, 0, 0, 0])


def test_pca_recovers_the_main_axes():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 3)) * [5.0, 2.0, 0.1] + [1, 2, 3]
  p = variation.pca_2d(x)
  assert p.shape == (200, 2)
  np.testing.assert_allclose(p.std(0), (x[:, 0].std(), x[:, 1].std()), rtol=0.05)


def test_identity_mixup_renders():
  gen = ToyGenerator(HW)
  renderer = sets.Renderer(gen, gen.init(jax.random.key(0)), first_identity=50, seed=3)
  off, labels = variation.render_mixed(renderer, 4, 3, 'off', batch_size=8)
  one, _ = variation.render_mixed(renderer, 4, 3, 'fixed:1.0', batch_size=8)
  half, _ = variation.render_mixed(renderer, 4, 3, 'fixed:0.5', batch_size=8)
  np.testing.assert_array_equal(labels, np.repeat(np.arange(4), 3))
  np.testing.assert_array_equal(off, one)  # Same nuisance, phi = 1 is no mixup.
  assert np.abs(off.astype(int) - half.astype(int)).mean() > 1.0
  assert variation.parse_im('Syn3=linspace:0.6,1.0,11') == ('Syn3', 'linspace:0.6,1.0,11')
  assert variation.parse_im('off') == ('off', 'off')
  with pytest.raises(ValueError, match='fixed:2'):
    variation.parse_im('fixed:2')


def test_command_writes_the_report(tmp_path):
  variables = write_tiny_checkpoint(tmp_path / 'run', HW, seed=1, width=TINY)
  rng = np.random.default_rng(0)
  coarse = rng.integers(0, 256, (6, 8, 8, 3)).astype(np.float32)
  faces = np.repeat(np.repeat(coarse, 4, 1), 4, 2)
  images = np.clip(np.repeat(faces, 3, 0) + rng.normal(0, 20, (18, *HW, 3)), 0, 255)
  images = images.astype(np.uint8)
  labels = np.repeat(np.arange(6), 3)
  np.savez(tmp_path / 'faces.npz', images=images, labels=labels)
  out = tmp_path / 'variation'
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    rc = evaluate.main(['variation', '--checkpoint', str(tmp_path / 'run'), '--sets',
                        str(tmp_path / 'faces.npz'), '--out', str(out), '--show', '4',
                        '--batch', '8'])
  assert rc == 0
  results = json.loads((out / 'variation.json').read_text())
  raw = raw_embedder(variables, TINY)
  x = image_io.model_input(images)
  e = raw(x) + raw(np.ascontiguousarray(x[:, :, ::-1]))
  expected = variation.variation_stats(e, labels)
  assert results['sets']['faces']['ratio'] == pytest.approx(expected['ratio'], rel=1e-4)
  assert results['sets']['faces']['spread_mean'] == pytest.approx(expected['spread_mean'],
                                                                   rel=1e-4)
  assert '| faces | - | 6 | 18 |' in (out / 'variation.md').read_text()
  assert (out / 'projection.png').is_file()
  assert 'report: ' in buffer.getvalue()
  with contextlib.redirect_stderr(io.StringIO()) as err:
    assert evaluate.main(['variation', '--checkpoint', str(tmp_path / 'run'), '--sets',
                          'synthetic:4x2', '--im', 'fixed:7', '--out', str(out)]) == 2
  assert 'fixed:7' in err.getvalue()
