"""Accuracy and TAR@FAR by rendered attribute: bins against hand computations, factors read back."""
import math

import jax
import numpy as np
import pytest

from synface_jax.eval import attributes, metrics, protocols, sets
from synface_jax.generators.pairs import render_identities, synthetic_pairs
from toy_generator import ToyGenerator


def test_binning_by_hand():
  # 8 pairs; attribute values, two bins split at 10 (edges 0, 10, 20).
  values = np.array([1, 2, 3, 12, 15, 18, 19, 20.0])
  issame = np.array([1, 1, 0, 1, 1, 0, 0, 1], bool)
  scores = np.array([0.9, 0.15, 0.1, 0.8, 0.3, 0.5, 0.2, 0.7])
  correct = np.array([1, 0, 1, 1, 1, 0, 1, 1], bool)
  # Impostor scores are 0.1, 0.5, 0.2: FAR stays 1/3 from threshold 0.5 down to 0.3 (the lowest
  # score above 0.2), so TAR@FAR=0.34 is taken at threshold 0.3; FAR 1 at the lowest score.
  rows = attributes.binned_figures(values, [0, 10, 20], correct, scores, issame,
                                   far_targets=(0.34, 1.0))
  assert [(r['lo'], r['hi']) for r in rows] == [(0, 10), (10, 20)]
  first, second = rows
  assert (first['pairs'], first['genuine'], first['impostor']) == (3, 2, 1)
  assert (second['pairs'], second['genuine'], second['impostor']) == (5, 3, 2)
  assert first['accuracy'] == pytest.approx(2 / 3)
  assert second['accuracy'] == pytest.approx(4 / 5)
  # Threshold 0.3: bin 1 genuine 0.9 accepted, 0.15 not -> 1/2; bin 2 genuine 0.8, 0.3, 0.7 -> 1.
  assert first['tar@far=0.34'] == pytest.approx(1 / 2)
  assert second['tar@far=0.34'] == 1.0
  assert first['far@far=0.34'] == 0.0            # impostor 0.1 rejected
  assert second['far@far=0.34'] == pytest.approx(1 / 2)  # 0.5 accepted, 0.2 rejected
  assert first['tar@far=1'] == 1.0 and second['far@far=1'] == 1.0
  # The pair count weighted bin accuracies give back the overall accuracy.
  overall = sum(r['accuracy'] * r['pairs'] for r in rows) / len(values)
  assert overall == pytest.approx(correct.mean())


def test_bins_without_impostors_and_quantile_edges():
  rows = attributes.binned_figures([0.0, 5.0], [0, 1, 10], [True, False], [0.5, 0.2],
                                   np.array([True, False]), far_targets=(0.5,))
  assert rows[0]['impostor'] == 0 and rows[0]['far@far=0.5'] is None
  assert rows[1]['genuine'] == 0 and rows[1]['tar@far=0.5'] is None
  edges = attributes.quantile_edges(np.arange(9.0), bins=4)
  np.testing.assert_allclose(edges, [0, 2, 4, 6, 8])
  np.testing.assert_array_equal(attributes.assign_bins([0, 1.9, 2, 7.9, 8, 9, -1], edges),
                                [0, 0, 1, 3, 3, 3, 0])
  assert attributes.quantile_edges(np.zeros(5), 4).tolist() == [0.0]  # One value: one bin.


@pytest.mark.parametrize('protocol', ['insightface', 'synface'])
def test_out_of_fold_decisions_give_the_protocol_accuracy(protocol):
  rng = np.random.default_rng(3)
  n = 200  # Equal folds of 20: the mean of the decisions is the mean of the fold accuracies.
  issame = np.tile([True] * 10 + [False] * 10, 10)
  base = rng.normal(size=(2 * n, 8))
  base[1::2][issame] = base[0::2][issame] + 0.8 * rng.normal(size=(issame.sum(), 8))
  flipped = base + 0.1 * rng.normal(size=base.shape)
  correct = attributes.pair_decisions(base, flipped, issame, protocol)
  emb = flipped if protocol == 'insightface' else base
  expected = protocols.verify(emb[0::2], emb[1::2], issame, protocol)
  np.testing.assert_allclose([correct[20 * k:20 * (k + 1)].mean() for k in range(10)],
                             expected['fold_accuracy'], atol=1e-12)
  assert correct.mean() == pytest.approx(expected['accuracy'], abs=1e-12)


def test_face_attributes_read_the_renderer_factors():
  from synface_jax.generators.procedural import lighting
  assert attributes.BAND1 == pytest.approx(lighting.BAND1)
  direction = np.array([0.5, 0.2, 1.0]) / np.linalg.norm([0.5, 0.2, 1.0])
  light = np.stack([np.asarray(lighting.directional(direction, 0.3)),
                    np.asarray(lighting.directional(-direction * [1, 1, -1], 0.1,
                                                    (0.9, 1.0, 1.1)))])
  light[:, [0, 9, 18]] += 0.2  # Ambient does not count.
  pose = np.array([[0.1, -0.5, 0.0], [-0.2, 0.25, 0.1]])
  expression = np.zeros((2, 64))
  expression[0, :2] = (3.0, 4.0)
  f = attributes.face_attributes({'pose': pose, 'lighting': light, 'expression': expression})
  np.testing.assert_allclose(f['yaw'], np.degrees([-0.5, 0.25]))
  np.testing.assert_allclose(f['pitch'], np.degrees([0.1, -0.2]))
  np.testing.assert_allclose(f['light_strength'], [0.3, 0.1], rtol=1e-5)
  azimuth = math.degrees(math.atan2(direction[0], direction[2]))
  np.testing.assert_allclose(f['light_azimuth'], [azimuth, -azimuth], rtol=1e-5)
  np.testing.assert_allclose(f['expression'], [5.0, 0.0])
  p = attributes.pair_attributes({'pose': pose, 'lighting': light, 'expression': expression})
  assert p['|yaw|'] == pytest.approx([math.degrees(0.5)])
  assert p['|delta yaw|'] == pytest.approx([math.degrees(0.75)])
  assert p['|pitch|'] == pytest.approx([math.degrees(0.2)])
  assert p['light strength'] == pytest.approx([0.3], rel=1e-5)
  assert p['light |azimuth|'] == pytest.approx([abs(azimuth)], rel=1e-5)
  assert p['expression'] == pytest.approx([5.0])


def test_rendered_pairs_return_the_factors_they_were_drawn_with():
  gen = ToyGenerator((16, 16))
  params = gen.init(jax.random.key(0))
  key = jax.random.key(5)
  plain = render_identities(gen, params, key, np.arange(5), batch_size=4)
  images, factors = render_identities(gen, params, key, np.arange(5), batch_size=4,
                                      return_factors=True)
  np.testing.assert_array_equal(images, plain)
  expected = gen.sample(jax.random.fold_in(key, 3), gen.identity(params, 3))
  np.testing.assert_allclose(factors.pose[3], expected.pose, rtol=1e-6)
  np.testing.assert_allclose(factors.lighting[3], expected.lighting, rtol=1e-6)
  renderer = sets.Renderer(gen, params, first_identity=10, seed=2)
  im2, issame, f2 = sets.load_pairs_with_factors('synthetic:20', renderer)
  im1, issame1 = synthetic_pairs(gen, params, jax.random.key(2), 20, first_identity=10)
  np.testing.assert_array_equal(im2, im1)
  np.testing.assert_array_equal(issame, issame1)
  assert f2['pose'].shape == (40, 3) and f2['lighting'].shape == (40, 27)


def test_factor_keys_of_a_pair_npz(tmp_path):
  path = tmp_path / 'p.npz'
  factors = {'pose': np.zeros((20, 3)), 'lighting': np.zeros((20, 27)),
             'expression': np.zeros((20, 4))}
  np.savez(path, images=np.zeros((20, 8, 8, 3), np.uint8), issame=np.arange(10) % 2 == 0,
           **{f'factor_{k}': v for k, v in factors.items()})
  _, _, got = sets.load_pairs_with_factors(str(path))
  assert set(got) == set(factors) and got['expression'].shape == (20, 4)
  np.savez(path, images=np.zeros((20, 8, 8, 3), np.uint8), issame=np.arange(10) % 2 == 0)
  assert sets.load_pairs_with_factors(str(path))[2] is None
  np.savez(path, images=np.zeros((20, 8, 8, 3), np.uint8), issame=np.arange(10) % 2 == 0,
           factor_pose=np.zeros((3, 3)), factor_lighting=np.zeros((20, 27)),
           factor_expression=np.zeros((20, 4)))
  with pytest.raises(ValueError, match='p.npz: factor_'):
    sets.load_pairs_with_factors(str(path))


def test_attribute_figures_bin_every_pair():
  rng = np.random.default_rng(0)
  n = 40
  issame = np.tile([True, False], n // 2)
  plain = rng.normal(size=(2 * n, 6))
  factors = {'pose': rng.normal(size=(2 * n, 3)) * 0.3, 'lighting': rng.normal(size=(2 * n, 27)),
             'expression': rng.normal(size=(2 * n, 64))}
  out = attributes.attribute_figures(plain, plain, issame, factors, protocols=('synface',),
                                     far_targets=(0.1,), bins=4)
  assert set(out['synface']) == set(attributes.ATTRIBUTES)
  for rows in out['synface'].values():
    assert len(rows) == 4 and sum(r['pairs'] for r in rows) == n
  correct = attributes.pair_decisions(plain, plain, issame, 'synface')
  rows = out['synface']['|yaw|']
  assert sum(r['accuracy'] * r['pairs'] for r in rows) / n == pytest.approx(correct.mean())
  overall = metrics.tar_at_far(*(lambda s: (s[issame], s[~issame]))(
      protocols.synface_cosine(plain[0::2], plain[1::2])), (0.1,))[0.1]
  tar = sum(r['tar@far=0.1'] * r['genuine'] for r in rows if r['genuine']) / issame.sum()
  assert tar == pytest.approx(overall['tar'])


def test_markdown_rows_keep_the_table_columns():
  import re
  header = attributes.markdown_header((0.1,))
  row = {'lo': 0.0, 'hi': 1.0, 'pairs': 2, 'genuine': 1, 'impostor': 1, 'accuracy': 0.5,
         'tar@far=0.1': None, 'far@far=0.1': 0.0}
  lines = attributes.markdown_rows('s', 'p', {'|yaw|': [row]}, (0.1,))
  cells = lambda line: len(re.findall(r'(?<!\\)\|', line))
  assert cells(lines[0]) == cells(header[0]) == cells(header[1])
  assert lines[0].startswith('| s | p | \\|yaw\\| | 0 - 1 | 2 (1 / 1) | 0.5000 | - (0.0000) |')
