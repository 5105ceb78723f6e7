"""ROC, AUC, EER, TAR@FAR and histograms against hand-worked values and independent computations."""
import numpy as np
import pytest
from PIL import Image

from synface_jax.eval import metrics as M
from synface_jax.eval import plots, protocols

# Similarities: "same" when score >= threshold. The genuine 0.3 ties the impostor 0.3.
GENUINE = np.array([0.9, 0.7, 0.3])
IMPOSTOR = np.array([0.6, 0.2, 0.1, 0.3])


def test_operating_points_by_hand():
  thresholds, tar, far = M.operating_points(GENUINE, IMPOSTOR)
  np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.7, 0.6, 0.3, 0.2, 0.1])
  np.testing.assert_allclose(tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
  np.testing.assert_allclose(far, [0, 0, 0, 1 / 4, 2 / 4, 3 / 4, 1])
  far2, tar2, _ = M.roc_curve(np.concatenate([GENUINE, IMPOSTOR]), [1, 1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(far2, far)
  np.testing.assert_array_equal(tar2, tar)


def test_auc_by_hand():
  # 12 (genuine, impostor) pairs: 0.9 and 0.7 beat all four impostors (8); 0.3 beats 0.2 and 0.1
  # and ties 0.3 (2.5): 10.5 / 12.
  assert M.auc(GENUINE, IMPOSTOR) == pytest.approx(10.5 / 12)
  assert M.auc([0.9, 0.8], [0.1, 0.2]) == 1.0
  assert M.auc([0.1, 0.2], [0.9, 0.8]) == 0.0
  assert M.auc([0.5, 0.5], [0.5]) == 0.5


def test_eer_by_hand():
  # |FNMR - FAR| along the points: 1, 2/3, 1/3, 1/12 (threshold 0.6), 1/2, 3/4, 1.
  assert M.eer(GENUINE, IMPOSTOR) == pytest.approx(0.5 * (1 / 3 + 1 / 4))
  assert M.eer([0.9, 0.8], [0.1, 0.2]) == 0.0
  assert M.eer([0.1, 0.2], [0.9, 0.8]) == 1.0


def test_tar_at_far_by_hand():
  at = M.tar_at_far(GENUINE, IMPOSTOR, (0.1, 0.25, 0.5, 1.0))
  assert at[0.1] == {'tar': pytest.approx(2 / 3), 'far': 0.0, 'threshold': 0.7,
                     'far_resolved': False}  # 4 impostors cannot measure a FAR of 0.1.
  assert at[0.25]['tar'] == pytest.approx(2 / 3) and at[0.25]['threshold'] == 0.6
  assert at[0.25]['far'] == 0.25 and at[0.25]['far_resolved']
  assert at[0.5]['tar'] == 1.0 and at[0.5]['threshold'] == 0.3
  assert at[1.0]['tar'] == 1.0
  with pytest.raises(ValueError, match='FAR targets'):
    M.tar_at_far(GENUINE, IMPOSTOR, (0.0,))


@pytest.fixture(scope='module')
def random_scores():
  rng = np.random.default_rng(3)
  issame = rng.random(4000) < 0.4
  scores = np.round(rng.normal(issame * 1.2, 1.0), 2)  # Rounded: many ties.
  return scores, issame


def test_auc_equals_pairwise_count_and_roc_area(random_scores):
  scores, issame = random_scores
  g, i = scores[issame], scores[~issame]
  brute = (np.sum(g[:, None] > i[None, :]) + 0.5 * np.sum(g[:, None] == i[None, :])) / (g.size * i.size)
  assert M.auc(g, i) == pytest.approx(brute, abs=1e-12)
  far, tar, _ = M.roc_curve(scores, issame)
  trapezoid = np.sum(np.diff(far) * 0.5 * (tar[1:] + tar[:-1]))
  assert M.auc(g, i) == pytest.approx(trapezoid, abs=1e-12)


def test_eer_against_a_threshold_scan(random_scores):
  scores, issame = random_scores
  g, i = scores[issame], scores[~issame]
  best = None
  for t in np.concatenate([[np.inf], np.unique(scores)[::-1]]):
    fnmr, fmr = np.mean(g < t), np.mean(i >= t)
    if best is None or abs(fnmr - fmr) < best[0]:
      best = (abs(fnmr - fmr), 0.5 * (fnmr + fmr))
  assert M.eer(g, i) == pytest.approx(best[1])


def test_tar_at_far_equals_insightface_val_at_the_same_point():
  """TAR@FAR on cosine similarity = insightface's VAL at the distance threshold of that point."""
  rng = np.random.default_rng(7)
  n = 3000
  issame = rng.random(n) < 0.5
  e1 = rng.normal(size=(n, 16))
  e2 = np.where(issame[:, None], e1 + rng.normal(scale=1.2, size=(n, 16)), rng.normal(size=(n, 16)))
  e1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
  e2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
  similarity = np.sum(e1 * e2, 1)
  dist = protocols.squared_l2(e1, e2)  # = 2 - 2 cos for unit rows.
  n_imp = int(np.sum(~issame))
  for target in (1e-3, 1e-2, 0.1):
    at = M.tar_at_far(similarity[issame], similarity[~issame], (target,))[target]
    # The same acceptance set in distances: d <= 2 - 2 t, i.e. d < the midpoint to the next one.
    accepted = similarity >= at['threshold']
    cut = 0.5 * (dist[accepted].max() + dist[~accepted].min())
    val, far = protocols._val_far(dist, issame, cut)  # pylint: disable=protected-access
    assert val == pytest.approx(at['tar'], abs=1e-12)
    assert far == pytest.approx(at['far'], abs=1e-12)
    assert far <= target and (far + 1 / n_imp > target or at['tar'] == 1.0)


def test_histograms_by_hand():
  h = M.histograms(GENUINE, IMPOSTOR, bins=2, value_range=(0.0, 1.0))
  assert h['edges'] == [0.0, 0.5, 1.0]
  assert h['genuine'] == pytest.approx([1 / 3, 2 / 3])
  assert h['impostor'] == pytest.approx([3 / 4, 1 / 4])


def test_verification_metrics_keys_and_checks():
  out = M.verification_metrics(np.concatenate([GENUINE, IMPOSTOR]), [1, 1, 1, 0, 0, 0, 0],
                               far_targets=(0.25,))
  assert out['auc'] == pytest.approx(10.5 / 12)
  assert out['pairs_genuine'] == 3 and out['pairs_impostor'] == 4
  assert out['tar_at_far'] == {'0.25': M.tar_at_far(GENUINE, IMPOSTOR, (0.25,))[0.25]}
  assert [M.far_key(f) for f in M.DEFAULT_FAR_TARGETS] == ['0.0001', '0.001', '0.01']
  with pytest.raises(ValueError, match='genuine and impostor'):
    M.verification_metrics([0.1, 0.2], [True, True])
  with pytest.raises(ValueError, match='0/1'):
    M.verification_metrics([0.1, 0.2], [2, 0])


def test_roc_summary_of_distances_matches_the_similarity_metrics(random_scores):
  scores, issame = random_scores
  d = 3.0 - scores
  s = M.roc_summary(d[issame], d[~issame], threshold=3.0)
  assert s['auc'] == pytest.approx(M.auc(scores[issame], scores[~issame]))
  assert s['eer'] == pytest.approx(M.eer(scores[issame], scores[~issame]))
  # The best cut reproduces the best balanced accuracy when applied as "distance < cut".
  acc = 0.5 * (np.mean(d[issame] < s['best_threshold']) + np.mean(d[~issame] >= s['best_threshold']))
  assert acc == pytest.approx(s['best_accuracy'])


def test_roc_png_draws_a_perfect_curve_along_the_top(tmp_path):
  path = tmp_path / 'roc.png'
  plots.roc_png(path, {'perfect': ([0.0, 1e-3, 1.0], [1.0, 1.0, 1.0]),
                       'chance': ([1e-3, 1e-2, 0.1, 1.0], [1e-3, 1e-2, 0.1, 1.0])})
  image = np.asarray(Image.open(path).convert('RGB'))
  assert image.shape == (420, 640, 3)
  first = np.array(plots.PALETTE[0])
  rows = np.nonzero(np.all(image == first, axis=-1))[0]
  legend_free = rows[rows < 300]
  assert legend_free.size > 100 and legend_free.max() - legend_free.min() <= 2
  second = np.nonzero(np.all(image == np.array(plots.PALETTE[1]), axis=-1))
  assert np.ptp(second[0]) > 200  # The chance curve climbs across the plot.


def test_cmc_and_histogram_png(tmp_path):
  plots.cmc_png(tmp_path / 'cmc.png', {'a': [0.5, 0.8, 0.9, 1.0], 'b': [0.95]})
  plots.histogram_png(tmp_path / 'h.png', GENUINE, IMPOSTOR, threshold=0.5, label='cosine')
  for name in ('cmc.png', 'h.png'):
    assert Image.open(tmp_path / name).size[0] == 640
