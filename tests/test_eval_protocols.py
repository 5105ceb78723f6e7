"""synface_jax.eval.protocols against the golden reference and on hand-made cases."""
import numpy as np
import pytest

from synface_jax.eval import protocols as ev

INSIGHTFACE_KEYS = {
    'fold_accuracy': 'insightface_accuracy',
    'accuracy': 'insightface_acc_mean',
    'std': 'insightface_acc_std',
    'thresholds': 'insightface_best_thresholds',
    'fold_sizes': 'insightface_fold_test_sizes',
    'roc_thresholds': 'insightface_roc_thresholds',
    'tpr': 'insightface_tpr',
    'fpr': 'insightface_fpr',
    'val': 'insightface_val',
    'val_std': 'insightface_val_std',
    'far': 'insightface_far',
    'fold_val': 'insightface_val_per_fold',
    'fold_far': 'insightface_far_per_fold',
    'val_thresholds': 'insightface_val_thresholds',
}
SYNFACE_KEYS = {
    'fold_accuracy': 'synface_accuracy',
    'accuracy': 'synface_acc_mean',
    'std': 'synface_acc_std',
    'thresholds': 'synface_best_thresholds',
    'fold_sizes': 'synface_fold_test_sizes',
    'similarity': 'synface_cosine',
}


def _pairs_at_distance(dists):
  """2-D unit pairs whose squared L2 distance is ``dists`` (cosine 1 - d / 2)."""
  cos = 1.0 - np.asarray(dists) / 2.0
  e1 = np.tile([1.0, 0.0], (len(cos), 1))
  e2 = np.stack([cos, np.sqrt(1.0 - cos**2)], axis=1)
  return e1, e2


def _pairs_at_cosine(cosines):
  """2-D unit pairs whose cosine similarity is ``cosines``."""
  return _pairs_at_distance(2.0 - 2.0 * np.asarray(cosines))


@pytest.fixture(scope='module')
def golden(verification_golden):
  return verification_golden


# ------------------------------------------------------------------------------------------------
# Protocols against the golden reference.
# ------------------------------------------------------------------------------------------------


def test_insightface_matches_golden(golden):
  result = ev.insightface_protocol(golden['embeddings1'], golden['embeddings2'], golden['issame'],
                                   far_target=float(golden['insightface_far_target']))
  for ours, theirs in INSIGHTFACE_KEYS.items():
    np.testing.assert_allclose(result[ours], golden[theirs], rtol=0, atol=1e-12, err_msg=ours)
  np.testing.assert_array_equal(result['fold_accuracy'], golden['insightface_accuracy'])
  np.testing.assert_array_equal(result['thresholds'], golden['insightface_best_thresholds'])
  np.testing.assert_array_equal(result['fold_sizes'], golden['insightface_fold_test_sizes'])
  np.testing.assert_array_equal(result['val_thresholds'], golden['insightface_val_thresholds'])
  dist = ev.squared_l2(ev.l2_normalize(golden['embeddings1']),
                       ev.l2_normalize(golden['embeddings2']))
  np.testing.assert_array_equal(dist, golden['dist_sq'])


def test_synface_matches_golden(golden):
  result = ev.synface_protocol(golden['embeddings1'], golden['embeddings2'], golden['issame'])
  for ours, theirs in SYNFACE_KEYS.items():
    np.testing.assert_allclose(result[ours], golden[theirs], rtol=0, atol=1e-12, err_msg=ours)
  np.testing.assert_array_equal(result['fold_accuracy'], golden['synface_accuracy'])
  np.testing.assert_array_equal(result['thresholds'], golden['synface_best_thresholds'])
  np.testing.assert_array_equal(result['fold_sizes'], golden['synface_fold_test_sizes'])
  np.testing.assert_array_equal(ev.SYNFACE_THRESHOLDS, golden['synface_thresholds'])
  np.testing.assert_array_equal(golden['synface_predicts'][:, 0], result['similarity'])


def test_verify_dispatches(golden):
  args = golden['embeddings1'], golden['embeddings2'], golden['issame']
  assert ev.verify(*args, 'insightface')['accuracy'] == golden['insightface_acc_mean']
  assert ev.verify(*args, 'synface')['accuracy'] == golden['synface_acc_mean']
  with pytest.raises(ValueError, match='lfw'):
    ev.verify(*args, 'lfw')


# ------------------------------------------------------------------------------------------------
# Protocols on hand-made cases.
# ------------------------------------------------------------------------------------------------


def _hand_case(same_value, diff_value, hard_value):
  """20 pairs: even pairs 'same' except pair 7, a hard negative; odd pairs 'different'."""
  issame = np.arange(20) % 2 == 0
  values = np.where(issame, same_value, diff_value)
  values[7] = hard_value
  return values, issame


def _assert_only_fold_three_errs(result, threshold):
  """Every fold picks `threshold`; fold 3 gets one of its two test pairs wrong, the rest none."""
  np.testing.assert_array_equal(result['thresholds'], np.full(10, threshold))
  expected = np.ones(10)
  expected[3] = 0.5
  np.testing.assert_array_equal(result['fold_accuracy'], expected)
  assert result['accuracy'] == pytest.approx(0.95, abs=1e-15)
  assert result['std'] == pytest.approx(0.15, abs=1e-15)


def test_insightface_hand_case():
  # Same pairs at distance 0.305, different at 1.205, one different pair (fold 3) at 0.105.
  # Any threshold in 0.31 .. 1.20 errs only on the hard negative; the FIRST, 0.31, is chosen.
  dists, issame = _hand_case(0.305, 1.205, 0.105)
  e1, e2 = _pairs_at_distance(dists)
  result = ev.insightface_protocol(e1, e2, issame)
  _assert_only_fold_three_errs(result, ev.INSIGHTFACE_THRESHOLDS[31])
  np.testing.assert_array_equal(result['fold_sizes'], np.full(10, 2))
  # ROC at a threshold of 1.0: every test fold accepts its same pair and rejects its different
  # one, except fold 3 whose only test "different" pair is accepted (fpr 1).
  k = 100
  assert result['tpr'][k] == 1.0
  assert result['fpr'][k] == pytest.approx(0.1, abs=1e-15)


def test_insightface_is_strict_and_normalises():
  # A distance exactly on a grid value is not accepted at that threshold: with same pairs at
  # distance 0 and different pairs at 2 (orthogonal), the first perfect threshold is 0.01.
  issame = np.arange(10) % 2 == 0
  e1 = np.tile([3.0, 0.0], (10, 1))  # not unit: normalised internally
  e2 = np.where(issame[:, None], [5.0, 0.0], [0.0, 2.0])
  result = ev.insightface_protocol(e1, e2, issame)
  np.testing.assert_array_equal(result['thresholds'], np.full(10, 0.01))
  assert result['accuracy'] == 1.0


def test_synface_hand_case():
  # Same pairs at cosine 0.6023, different at -0.3023, one different pair (fold 3) at 0.8023.
  # Thresholds -0.300 .. 0.600 err only on the hard negative; ties go to the LAST, 0.600.
  cosines, issame = _hand_case(0.6023, -0.3023, 0.8023)
  e1, e2 = _pairs_at_cosine(cosines)
  result = ev.synface_protocol(e1, e2, issame)
  assert ev.SYNFACE_THRESHOLDS[320] == pytest.approx(0.6)
  _assert_only_fold_three_errs(result, ev.SYNFACE_THRESHOLDS[320])
  np.testing.assert_allclose(result['similarity'], cosines / (1 + 1e-5), rtol=1e-12)


def test_fold_sizes_when_n_not_divisible_by_ten():
  rng = np.random.default_rng(0)
  e1, e2 = rng.normal(size=(23, 4)), rng.normal(size=(23, 4))
  issame = np.arange(23) % 2 == 0
  # KFold: 23 = 10 * 2 + 3, so the first three folds hold 3 pairs.
  np.testing.assert_array_equal(
      ev.insightface_protocol(e1, e2, issame)['fold_sizes'], [3, 3, 3, 2, 2, 2, 2, 2, 2, 2])
  # SynFace: boundaries floor(23 i / 10) = 0 2 4 6 9 11 13 16 18 20 23.
  np.testing.assert_array_equal(
      ev.synface_protocol(e1, e2, issame)['fold_sizes'], [2, 2, 2, 3, 2, 2, 3, 2, 2, 3])
  assert ev.synface_fold_bounds(23)[3] == (6, 9)
  assert ev.insightface_fold_bounds(23)[3] == (9, 11)


def test_slinear_interp_with_repeats():
  x = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
  y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
  # Between the last sample of level 0 (y = 2) and the first of level 1 (y = 3).
  assert ev.slinear_interp(x, y, 0.5) == 2.5
  assert ev.slinear_interp(x, y, 0.25) == 2.25
  # Unsorted input is stably sorted first: level 0 then holds y = 2, 1, 0 and level 1 y = 4, 3.
  assert ev.slinear_interp(x[::-1], y[::-1], 0.5) == 2.0
  with pytest.raises(ValueError):
    ev.slinear_interp(x, y, 1.5)


def test_input_validation():
  e = np.zeros((12, 4))
  with pytest.raises(ValueError, match='same shape'):
    ev.verify(e, np.zeros((11, 4)), np.zeros(12, bool), 'synface')
  with pytest.raises(ValueError, match='issame'):
    ev.verify(e, e, np.zeros(11, bool), 'insightface')
  with pytest.raises(ValueError, match='at least 10 pairs'):
    ev.verify(e[:9], e[:9], np.zeros(9, bool), 'insightface')
  with pytest.raises(ValueError, match='booleans'):
    ev.verify(e, e, np.full(12, 2), 'synface')
