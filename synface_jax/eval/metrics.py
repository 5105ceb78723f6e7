"""Verification metrics of pair scores beyond the 10-fold protocols: ROC, AUC, EER, TAR@FAR.

Pure numpy. Scores are similarities: a pair is called "same" when ``score >= threshold``
(for distances pass ``-distance``). Every figure is computed on all pairs at once (no folds):

* the ROC is the list of operating points obtained by putting the threshold at every distinct
  score, from "accept nothing" (threshold +inf) to "accept everything";
* AUC is the probability that a random genuine pair scores above a random impostor pair, ties
  counting one half (the Mann-Whitney U statistic; equal to the trapezoid area under the ROC);
* EER is the operating point where the false non-match rate ``1 - TAR`` and the false match rate
  ``FAR`` are closest, reported as their mean;
* TAR@FAR=f is the highest TAR among operating points whose FAR does not exceed f. With fewer
  than ``1 / f`` impostor pairs the only such point is FAR = 0; ``far_resolved`` says so.
"""
from typing import Dict, Optional, Sequence

import numpy as np

DEFAULT_FAR_TARGETS = (1e-4, 1e-3, 1e-2)


def _split_scores(scores, issame):
  scores = np.asarray(scores, np.float64).reshape(-1)
  issame = np.asarray(issame).reshape(-1)
  if scores.shape != issame.shape:
    raise ValueError(f'{scores.size} scores for {issame.size} labels')
  if issame.dtype != np.bool_:
    if not np.all((issame == 0) | (issame == 1)):
      raise ValueError('issame must hold booleans or 0/1 values')
    issame = issame.astype(bool)
  return scores[issame], scores[~issame]


def _check_classes(genuine, impostor):
  genuine = np.asarray(genuine, np.float64).reshape(-1)
  impostor = np.asarray(impostor, np.float64).reshape(-1)
  if genuine.size == 0 or impostor.size == 0:
    raise ValueError(f'need genuine and impostor pairs, got {genuine.size} and {impostor.size}')
  if not (np.all(np.isfinite(genuine)) and np.all(np.isfinite(impostor))):
    raise ValueError('scores must be finite')
  return genuine, impostor


def operating_points(genuine, impostor):
  """Every operating point of "same when score >= threshold".

  Args:
    genuine: scores of same-identity pairs.
    impostor: scores of different-identity pairs.

  Returns:
    (thresholds, tar, far), float64, ordered by growing acceptance: thresholds[0] = +inf
    (nothing accepted), then every distinct score in decreasing order (the last accepts all).
  """
  genuine, impostor = _check_classes(genuine, impostor)
  levels = np.unique(np.concatenate([genuine, impostor]))[::-1]
  thresholds = np.concatenate([[np.inf], levels])
  # Count of scores >= t = size - (count of scores < t).
  count_ge = lambda values: values.size - np.searchsorted(np.sort(values), thresholds, side='left')
  tar = count_ge(genuine) / genuine.size
  far = count_ge(impostor) / impostor.size
  return thresholds, tar, far


def roc_curve(scores, issame):
  """(far, tar, thresholds) of pair ``scores`` with ground truth ``issame``; see operating_points."""
  thresholds, tar, far = operating_points(*_split_scores(scores, issame))
  return far, tar, thresholds


def auc(genuine, impostor) -> float:
  """P(genuine score > impostor score) + 0.5 P(equal), by ranks (Mann-Whitney U)."""
  genuine, impostor = _check_classes(genuine, impostor)
  values = np.concatenate([genuine, impostor])
  _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
  first = np.concatenate([[0], np.cumsum(counts)[:-1]])
  ranks = (first + (counts + 1) / 2.0)[inverse]  # 1-based mid-ranks, ascending scores.
  n_gen, n_imp = genuine.size, impostor.size
  u = ranks[:n_gen].sum() - n_gen * (n_gen + 1) / 2.0
  return float(u / (n_gen * n_imp))


def eer(genuine, impostor) -> float:
  """Equal error rate: mean of (1 - TAR) and FAR at the operating point where they are closest
  (the first such point in order of growing acceptance)."""
  _, tar, far = operating_points(genuine, impostor)
  index = int(np.argmin(np.abs((1.0 - tar) - far)))
  return float(0.5 * ((1.0 - tar[index]) + far[index]))


def tar_at_far(genuine, impostor, far_targets: Sequence[float] = DEFAULT_FAR_TARGETS
               ) -> Dict[float, Dict[str, float]]:
  """TAR at each FAR target: the best TAR whose FAR <= target.

  Returns:
    {target: {'tar': ..., 'far': the FAR actually reached, 'threshold': the score threshold,
    'far_resolved': whether the impostor pairs can measure a FAR this small (n_imp * f >= 1)}}.
  """
  thresholds, tar, far = operating_points(genuine, impostor)
  n_imp = np.asarray(impostor).size
  out = {}
  for target in far_targets:
    target = float(target)
    if not 0.0 < target <= 1.0:
      raise ValueError(f'FAR targets must lie in (0, 1], got {target}')
    # Acceptance grows along the points, so FAR is non-decreasing: the last point within target.
    index = int(np.searchsorted(far, target, side='right')) - 1
    out[target] = {'tar': float(tar[index]), 'far': float(far[index]),
                   'threshold': float(thresholds[index]),
                   'far_resolved': bool(n_imp * target >= 1.0)}
  return out


def histograms(genuine, impostor, bins: int = 50, value_range=None):
  """Genuine and impostor score histograms on common bins, each normalised to sum to 1.

  Returns:
    {'edges': [bins + 1], 'genuine': [bins], 'impostor': [bins]} as float lists.
  """
  genuine, impostor = _check_classes(genuine, impostor)
  if value_range is None:
    lo = float(min(genuine.min(), impostor.min()))
    hi = float(max(genuine.max(), impostor.max()))
    value_range = (lo, hi if hi > lo else lo + 1.0)
  edges = np.linspace(value_range[0], value_range[1], bins + 1)
  return {'edges': edges.tolist(),
          'genuine': (np.histogram(genuine, edges)[0] / genuine.size).tolist(),
          'impostor': (np.histogram(impostor, edges)[0] / impostor.size).tolist()}


def verification_metrics(scores, issame, far_targets: Sequence[float] = DEFAULT_FAR_TARGETS
                         ) -> Dict[str, object]:
  """AUC, EER and TAR@FAR of pair similarities, all pairs at once.

  Returns:
    {'auc', 'eer', 'pairs_genuine', 'pairs_impostor', 'tar_at_far': {'0.0001': {...}, ...}};
    the keys of 'tar_at_far' are the targets formatted with ``far_key``.
  """
  genuine, impostor = _split_scores(scores, issame)
  at = tar_at_far(genuine, impostor, far_targets)
  return {'auc': auc(genuine, impostor), 'eer': eer(genuine, impostor),
          'pairs_genuine': int(genuine.size), 'pairs_impostor': int(impostor.size),
          'tar_at_far': {far_key(f): v for f, v in at.items()}}


def far_key(far: float) -> str:
  """'0.0001' for 1e-4: the key of a FAR target in result dicts (Python's %g)."""
  return f'{float(far):g}'


def roc_summary(genuine, impostor, threshold: Optional[float] = None) -> Dict[str, float]:
  """Pair statistics of DISTANCES (smaller = same; "same" when distance < cut).

  Accuracy balanced over the two classes at ``threshold`` and at the best cut, EER and AUC.
  'best_threshold' is the distance cut (a pair is "same" below it).
  """
  genuine, impostor = _check_classes(genuine, impostor)
  _, tar, far = operating_points(-genuine, -impostor)
  # Point k accepts distance <= the k-th smallest distinct value, i.e. distance < the next one.
  cuts = np.concatenate([np.unique(np.concatenate([genuine, impostor])), [np.inf]])
  balanced = 0.5 * (tar + 1.0 - far)
  best = int(np.argmax(balanced))
  out = {
      'pairs_genuine': int(genuine.size), 'pairs_impostor': int(impostor.size),
      'genuine_mean': float(genuine.mean()), 'impostor_mean': float(impostor.mean()),
      'best_accuracy': float(balanced[best]), 'best_threshold': float(cuts[best]),
      'eer': eer(-genuine, -impostor), 'auc': auc(-genuine, -impostor),
  }
  if threshold is not None:
    out['accuracy_at_threshold'] = float(
        0.5 * (np.mean(genuine < threshold) + np.mean(impostor >= threshold)))
  return out
