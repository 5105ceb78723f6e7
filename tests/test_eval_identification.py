"""1:N search against numpy, ranks and CMC on a hand-built gallery, DIR@FPIR worked out by hand."""
import json

import numpy as np
import pytest

from synface_jax import benchmark
from synface_jax.eval import identification as I

# Small chunks: several gallery chunks, a padded last one, several probe chunks; one compile each.
CHUNKS = dict(probe_chunk=16, gallery_chunk=16)


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _angles(degrees):
  a = np.deg2rad(np.asarray(degrees, np.float64))
  return np.stack([np.cos(a), np.sin(a)], 1)


def test_search_equals_a_full_sort():
  import jax
  assert jax.device_count() == 8  # conftest's 8 CPU devices: each probe chunk is split over them.
  rng = np.random.default_rng(0)
  probes, gallery = rng.normal(size=(37, 8)), rng.normal(size=(53, 8))
  scores, index = I.search(probes, gallery, 5, **CHUNKS)
  full = _unit(probes) @ _unit(gallery).T
  expected = np.argsort(-full, axis=1, kind='stable')[:, :5]
  np.testing.assert_array_equal(index, expected)
  np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), atol=1e-5)


def test_search_ties_go_to_the_lower_index_and_counts_above_the_mate():
  gallery = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]] * 5)  # 20 rows, many ties.
  probes = np.array([[1.0, 0.1], [0.0, 1.0]])
  _, index = I.search(probes, gallery, 4, probe_chunk=1, gallery_chunk=3)
  np.testing.assert_array_equal(index, [[0, 2, 3, 4], [1, 5, 9, 13]])
  rng = np.random.default_rng(1)
  probes, gallery = rng.normal(size=(30, 6)), rng.normal(size=(40, 6))
  mate = rng.integers(-1, 40, 30)
  _, _, mate_scores, above = I.search(probes, gallery, 1, mate=mate, **CHUNKS)
  full = _unit(probes) @ _unit(gallery).T
  for p in range(30):
    if mate[p] >= 0:
      assert mate_scores[p] == pytest.approx(full[p, mate[p]], abs=1e-5)
      assert above[p] == np.sum(np.delete(full[p], mate[p]) > full[p, mate[p]])
    else:
      assert above[p] == 40  # No mate: every entry scores above -inf.


def test_mate_ranks_and_cmc_on_a_hand_built_gallery():
  # Gallery: A at 0 deg, B at 90, C at 180 (2-D unit vectors; similarity = cos of the angle gap).
  gallery, gallery_labels = _angles([0, 90, 180]), ['A', 'B', 'C']
  # a1 at 10: A first. a2 at 80: B (10 away) beats A (80). b1 at 100: B first.
  # c1 at 100: B (10), C (80): rank 2. c2 at 0: A, B, C: rank 3.
  probes, labels = _angles([10, 80, 100, 100, 0]), ['A', 'A', 'B', 'C', 'C']
  ranks, top, mate_scores = I.mate_ranks(probes, labels, gallery, gallery_labels)
  np.testing.assert_array_equal(ranks, [1, 2, 1, 2, 3])
  np.testing.assert_allclose(top, np.cos(np.deg2rad([10, 10, 10, 10, 0])), atol=1e-6)
  np.testing.assert_allclose(mate_scores, np.cos(np.deg2rad([10, 80, 10, 80, 180])), atol=1e-6)
  np.testing.assert_allclose(I.cmc_curve(ranks, 3), [2 / 5, 4 / 5, 1.0])
  with pytest.raises(ValueError, match="'D' has no gallery entry"):
    I.mate_ranks(probes[:1], ['D'], gallery, gallery_labels)


def test_split_gallery_one_image_per_identity_seeded():
  labels = np.repeat(np.arange(12), [1, 2, 3, 4] * 3)
  gallery, probes = I.split_gallery(labels, seed=0)
  assert sorted(labels[gallery].tolist()) == list(range(12))
  assert sorted(gallery.tolist() + probes.tolist()) == list(range(labels.size))
  again, _ = I.split_gallery(labels, seed=0)
  np.testing.assert_array_equal(gallery, again)
  choices = {tuple(I.split_gallery(labels, seed=s)[0]) for s in range(5)}
  assert len(choices) > 1


@pytest.fixture(scope='module')
def clusters():
  """40 identities x 5 noisy images in 32-D: some identities are confusable."""
  rng = np.random.default_rng(2)
  centres = rng.normal(size=(40, 32))
  labels = np.repeat(np.arange(40), 5)
  return centres[labels] + rng.normal(scale=1.1, size=(200, 32)), labels


def test_closed_set_against_brute_force(clusters):
  e, labels = clusters
  out = I.closed_set(e, labels, seed=3, **CHUNKS)
  gallery, probes = I.split_gallery(labels, 3)
  full = _unit(e[probes]) @ _unit(e[gallery]).T
  mate = np.searchsorted(labels[gallery], labels[probes])
  mate_score = full[np.arange(probes.size), mate]
  ranks = 1 + np.sum(full > mate_score[:, None], axis=1)
  assert out['gallery'] == 40 and out['probes'] == 160
  assert out['rank1'] == pytest.approx(np.mean(ranks == 1))
  assert out['rank5'] == pytest.approx(np.mean(ranks <= 5))
  np.testing.assert_allclose(out['cmc'], [np.mean(ranks <= r) for r in range(1, 41)])
  assert 0.2 < out['rank1'] < 0.95  # Confusable enough for the comparison to mean something.


def test_dir_at_fpir_by_hand():
  nonmated = [0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0, -0.1, -0.2]
  ranks, scores = [1, 1, 2, 1], [0.6, 0.5, 0.95, 0.8]
  at = I.dir_at_fpir(ranks, scores, nonmated, (0.01, 0.1, 0.3))
  # FPIR 0.1 of 10 distractors: one alarm allowed (0.9); alarms are scores above 0.5.
  assert at[0.1] == {'dir': 0.5, 'fpir': 0.1, 'threshold': 0.5, 'fpir_resolved': True}
  assert at[0.01]['dir'] == 0.0 and at[0.01]['threshold'] == 0.9 and not at[0.01]['fpir_resolved']
  assert at[0.3]['dir'] == 0.75 and at[0.3]['fpir'] == pytest.approx(0.3)
  # Ties at the cut are all rejected: FPIR stays under the target.
  tied = I.dir_at_fpir([1], [0.6], [0.5, 0.5] + [0.0] * 8, (0.1,))[0.1]
  assert tied['fpir'] == 0.0 and tied['threshold'] == 0.5 and tied['dir'] == 1.0


def test_open_set_against_brute_force(clusters):
  e, labels = clusters
  out = I.open_set(e, labels, seed=4, distractor_fraction=0.25, fpir_targets=(0.02, 0.1), **CHUNKS)
  gallery, mated, nonmated, held = I.open_set_split(labels, 4, 0.25)
  assert held == 10 and out['enrolled'] == 30 and out['distractor_identities'] == 10
  assert out['mated_probes'] == 120 and out['nonmated_probes'] == 50
  assert not set(labels[nonmated]) & set(labels[gallery])
  assert set(labels[mated]) == set(labels[gallery])
  g = _unit(e[gallery])
  nm_top = np.sort(np.max(_unit(e[nonmated]) @ g.T, axis=1))[::-1]
  full = _unit(e[mated]) @ g.T
  mate = np.searchsorted(labels[gallery], labels[mated])
  best_is_mate = np.argmax(full, axis=1) == mate
  mate_score = full[np.arange(mated.size), mate]
  for target, key in ((0.02, '0.02'), (0.1, '0.1')):
    threshold = nm_top[int(target * 50)]  # 1 and 5 alarms allowed.
    expected = np.mean(best_is_mate & (mate_score > threshold))
    assert out['dir_at_fpir'][key]['dir'] == pytest.approx(expected)
    assert out['dir_at_fpir'][key]['fpir'] == pytest.approx(np.mean(nm_top > threshold))
  assert 0 < out['dir_at_fpir']['0.1']['dir'] < 1


def test_benchmark_search_prints_probes_per_second(capsys):
  benchmark.main(['search', '--gallery', '3000', '--probes', '500', '--dim', '64',
                  '--probe-chunk', '256', '--gallery-chunk', '1024'])
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert result['benchmark'] == 'search' and result['probes_per_s'] > 0
  assert result['gallery'] == 3000 and result['probes'] == 500
  # Random 64-D unit vectors: the best of 3000 lies far above the mean similarity of 0.
  assert 0.2 < result['mean_top1'] < 0.8
