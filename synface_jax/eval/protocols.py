"""Face verification protocols in pure numpy, reproducing the reference code number for number.

* ``insightface``: arcface_torch ``eval/verification.py``. Embeddings are L2-normalised, the
  distance is the squared L2 distance, a pair is predicted "same" when ``dist < threshold``
  (strict) over ``arange(0, 4, 0.01)``; sklearn-style ``KFold(10, shuffle=False)`` folds (the first
  ``N mod 10`` folds get one extra pair); the best training threshold is the FIRST of maximal
  accuracy. VAL@FAR uses ``arange(0, 4, 0.001)`` and scipy<=1.8 ``interp1d(kind='slinear')``.
* ``synface``: SynFace ``lfw_eval``. Cosine similarity ``dot / (|a| |b| + 1e-5)``, thresholds
  ``arange(-1, 1, 0.005)``, a pair is "same" when ``similarity > threshold``; ties go to the LAST
  threshold; folds are the contiguous blocks ``[floor(i N / 10), floor((i + 1) N / 10))``.

Only numpy is imported.
"""
from typing import Any, Dict, List, Tuple

import numpy as np

PROTOCOLS = ('insightface', 'synface')
INSIGHTFACE_THRESHOLDS = np.arange(0, 4, 0.01)
INSIGHTFACE_VAL_THRESHOLDS = np.arange(0, 4, 0.001)
SYNFACE_THRESHOLDS = np.arange(-1, 1, 0.005)
SYNFACE_FOLDS = 10
SYNFACE_COSINE_EPS = 1e-5


# ----------------------------------------------------------------------------------------------
# Input checks.
# ----------------------------------------------------------------------------------------------


def _check_pairs(embeddings1, embeddings2, issame, nrof_folds: int):
  """Validates and converts protocol inputs.

  Args:
    embeddings1: [N, D] first member of every pair.
    embeddings2: [N, D] second member of every pair.
    issame: [N] ground truth, bools or 0/1.
    nrof_folds: number of cross-validation folds; N must be at least this.

  Returns:
    (embeddings1, embeddings2, issame) as float arrays and a bool array.

  Raises:
    ValueError: on inconsistent shapes, non-binary labels or too few pairs.
  """
  e1 = _as_float_matrix(embeddings1, 'embeddings1')
  e2 = _as_float_matrix(embeddings2, 'embeddings2')
  if e1.shape != e2.shape:
    raise ValueError(f'embeddings1 and embeddings2 must have the same shape, got {e1.shape} '
                     f'and {e2.shape}')
  labels = np.asarray(issame)
  if labels.ndim != 1 or labels.shape[0] != e1.shape[0]:
    raise ValueError(f'issame must have shape ({e1.shape[0]},) to match the embeddings, got '
                     f'{labels.shape}')
  if labels.dtype != np.bool_:
    if not np.all((labels == 0) | (labels == 1)):
      raise ValueError('issame must hold booleans or 0/1 values')
    labels = labels.astype(bool)
  if nrof_folds < 2:
    raise ValueError(f'nrof_folds must be at least 2, got {nrof_folds}')
  if e1.shape[0] < nrof_folds:
    raise ValueError(f'need at least {nrof_folds} pairs for {nrof_folds} folds, got '
                     f'{e1.shape[0]}')
  return e1, e2, labels


def _as_float_matrix(x, name: str) -> np.ndarray:
  """Returns ``x`` as a 2-D floating array (integer input becomes float64)."""
  arr = np.asarray(x)
  if arr.ndim != 2:
    raise ValueError(f'{name} must be a 2-D [N, D] array, got shape {arr.shape}')
  if not np.issubdtype(arr.dtype, np.floating):
    arr = arr.astype(np.float64)
  return arr


# ----------------------------------------------------------------------------------------------
# Folds.
# ----------------------------------------------------------------------------------------------


def insightface_fold_bounds(n: int, nrof_folds: int = 10) -> List[Tuple[int, int]]:
  """Contiguous test folds of sklearn ``KFold(nrof_folds, shuffle=False)``.

  Args:
    n: number of pairs.
    nrof_folds: number of folds.

  Returns:
    ``[(start, stop), ...]``; the first ``n % nrof_folds`` folds hold one extra pair.
  """
  sizes = np.full(nrof_folds, n // nrof_folds, dtype=np.int64)
  sizes[:n % nrof_folds] += 1
  stops = np.cumsum(sizes)
  return [(int(stop - size), int(stop)) for size, stop in zip(sizes, stops)]


def synface_fold_bounds(n: int, nrof_folds: int = SYNFACE_FOLDS) -> List[Tuple[int, int]]:
  """SynFace's contiguous test folds ``[floor(i n / k), floor((i + 1) n / k))``."""
  return [(i * n // nrof_folds, (i + 1) * n // nrof_folds) for i in range(nrof_folds)]


def _split(n: int, start: int, stop: int) -> Tuple[np.ndarray, np.ndarray]:
  """Returns (train indices, test indices) for the test block ``[start, stop)``."""
  indices = np.arange(n)
  test = (indices >= start) & (indices < stop)
  return indices[~test], indices[test]


def _fold_results(accuracy: np.ndarray, best: np.ndarray, bounds) -> Dict[str, Any]:
  """What both protocols report of their folds: mean and population std of the test accuracies,
  the accuracies, the best training threshold and the test size of every fold."""
  return {
      'accuracy': float(np.mean(accuracy)),
      'std': float(np.std(accuracy)),
      'fold_accuracy': accuracy,
      'thresholds': best,
      'fold_sizes': np.array([stop - start for start, stop in bounds], dtype=np.int64),
  }


# ----------------------------------------------------------------------------------------------
# insightface protocol.
# ----------------------------------------------------------------------------------------------


def l2_normalize(x: np.ndarray) -> np.ndarray:
  """Row-wise L2 normalisation, applied once.

  Rows whose norm is already 1 to within 64 ulp are returned unchanged, so embeddings the caller
  normalised (as insightface does before ``evaluate``) are not normalised a second time; that
  keeps the distances bit-identical to the reference. All-zero rows are left unchanged (as
  sklearn's ``normalize``).
  """
  norms = np.sqrt(np.einsum('ij,ij->i', x, x))
  tol = 64 * np.finfo(x.dtype).eps
  norms[(norms == 0.0) | (np.abs(norms - 1.0) <= tol)] = 1.0
  return x / norms[:, None]


def squared_l2(embeddings1: np.ndarray, embeddings2: np.ndarray) -> np.ndarray:
  """Squared L2 distance per pair, computed as insightface does."""
  return np.sum(np.square(np.subtract(embeddings1, embeddings2)), 1)


def _less_counts(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray):
  """Counts pairs with ``dist < threshold`` per threshold.

  Returns:
    (true accepts, false accepts, number of same pairs, number of different pairs); the first two
    are int64 arrays over thresholds.
  """
  dist = dist.astype(np.float64)
  same = np.sort(dist[issame])
  diff = np.sort(dist[~issame])
  tp = np.searchsorted(same, thresholds, side='left')
  fp = np.searchsorted(diff, thresholds, side='left')
  return tp, fp, same.size, diff.size


def _rate(count: np.ndarray, total: int) -> np.ndarray:
  """``count / total`` as float64, 0 where ``total`` is 0 (as insightface's tpr/fpr)."""
  count = np.asarray(count, dtype=np.float64)
  if total == 0:
    return np.zeros_like(count)
  return count / float(total)


def _roc_and_accuracy(dist, issame, thresholds):
  """insightface ``calculate_accuracy`` over a threshold grid.

  Returns:
    (tpr, fpr, accuracy), each float64 over thresholds.
  """
  tp, fp, n_same, n_diff = _less_counts(dist, issame, thresholds)
  tn = n_diff - fp
  tpr = _rate(tp, n_same)
  fpr = _rate(fp, n_diff)
  acc = (tp + tn).astype(np.float64) / float(dist.size)
  return tpr, fpr, acc


def slinear_interp(x: np.ndarray, y: np.ndarray, x_new: float) -> float:
  """scipy<=1.8 ``interp1d(x, y, kind='slinear')(x_new)``, including repeated ``x`` values.

  The data are stably sorted by ``x`` and evaluated as the degree-1 B-spline with knots
  ``[x0, x..., x_last]`` and coefficients ``y`` (de Boor recursion, same operation order). For a
  point strictly between two distinct ``x`` levels this is linear interpolation between the last
  sample of the lower level and the first sample of the upper level.

  Args:
    x: [M] sample positions (M >= 2), any order, repeats allowed.
    y: [M] sample values.
    x_new: where to evaluate; must lie in ``[min(x), max(x)]``.

  Returns:
    The interpolated value as a float.

  Raises:
    ValueError: when ``x_new`` is outside the data range (interp1d's ``bounds_error``).
  """
  x = np.asarray(x, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  order = np.argsort(x, kind='mergesort')
  xs, ys = x[order], y[order]
  if not xs[0] <= x_new <= xs[-1]:
    raise ValueError(f'{x_new} is outside the interpolation range [{xs[0]}, {xs[-1]}]')
  knots = np.concatenate([xs[:1], xs, xs[-1:]])
  n = xs.size
  ell = int(np.searchsorted(knots, x_new, side='right')) - 1
  ell = min(max(ell, 1), n - 1)
  xa, xb = knots[ell], knots[ell + 1]
  if xb == xa:
    return 0.0
  w = 1.0 / (xb - xa)
  return float(ys[ell - 1] * (w * (xb - x_new)) + ys[ell] * (w * (x_new - xa)))


def _val_far(dist, issame, threshold) -> Tuple[float, float]:
  """insightface ``calculate_val_far``: (VAL, FAR) at one threshold, 0 for an empty class."""
  predict = dist < threshold
  n_same = int(np.sum(issame))
  n_diff = int(issame.size - n_same)
  true_accept = int(np.sum(predict & issame))
  false_accept = int(np.sum(predict & ~issame))
  val = float(true_accept) / float(n_same) if n_same else 0.0
  far = float(false_accept) / float(n_diff) if n_diff else 0.0
  return val, far


def _val_threshold(dist, issame, thresholds, far_target) -> float:
  """Threshold whose training FAR equals ``far_target`` (0.0 when FAR never reaches it)."""
  _, fp, _, n_diff = _less_counts(dist, issame, thresholds)
  far_train = _rate(fp, n_diff)
  if np.max(far_train) >= far_target:
    return slinear_interp(far_train, thresholds, far_target)
  return 0.0


def insightface_protocol(embeddings1,
                         embeddings2,
                         issame,
                         nrof_folds: int = 10,
                         far_target: float = 1e-3) -> Dict[str, Any]:
  """arcface_torch ``evaluate()`` on already-computed (flip-summed) embeddings.

  Args:
    embeddings1: [N, D] first member of every pair.
    embeddings2: [N, D] second member of every pair.
    issame: [N] ground truth.
    nrof_folds: number of contiguous cross-validation folds.
    far_target: the false-accept rate at which VAL is reported.

  Returns:
    A dict with 'accuracy' (mean over folds), 'std' (population std), 'fold_accuracy',
    'thresholds' (best threshold per fold), 'fold_sizes', 'roc_thresholds', 'tpr', 'fpr'
    (fold-averaged ROC), 'val', 'val_std', 'far', 'fold_val', 'fold_far', 'val_thresholds'.
  """
  e1, e2, labels = _check_pairs(embeddings1, embeddings2, issame, nrof_folds)
  dist = squared_l2(l2_normalize(e1), l2_normalize(e2))
  n = dist.size
  thresholds = INSIGHTFACE_THRESHOLDS
  bounds = insightface_fold_bounds(n, nrof_folds)
  accuracy = np.zeros(nrof_folds)
  best = np.zeros(nrof_folds)
  tprs = np.zeros((nrof_folds, thresholds.size))
  fprs = np.zeros((nrof_folds, thresholds.size))
  val = np.zeros(nrof_folds)
  far = np.zeros(nrof_folds)
  val_thresholds = np.zeros(nrof_folds)
  for k, (start, stop) in enumerate(bounds):
    train, test = _split(n, start, stop)
    _, _, acc_train = _roc_and_accuracy(dist[train], labels[train], thresholds)
    best[k] = thresholds[int(np.argmax(acc_train))]
    tprs[k], fprs[k], _ = _roc_and_accuracy(dist[test], labels[test], thresholds)
    _, _, acc_test = _roc_and_accuracy(dist[test], labels[test], best[k:k + 1])
    accuracy[k] = acc_test[0]
    val_thresholds[k] = _val_threshold(dist[train], labels[train], INSIGHTFACE_VAL_THRESHOLDS,
                                       far_target)
    val[k], far[k] = _val_far(dist[test], labels[test], val_thresholds[k])
  return {
      **_fold_results(accuracy, best, bounds),
      'roc_thresholds': thresholds,
      'tpr': np.mean(tprs, 0),
      'fpr': np.mean(fprs, 0),
      'val': float(np.mean(val)),
      'val_std': float(np.std(val)),
      'far': float(np.mean(far)),
      'fold_val': val,
      'fold_far': far,
      'val_thresholds': val_thresholds,
  }


# ----------------------------------------------------------------------------------------------
# SynFace protocol.
# ----------------------------------------------------------------------------------------------


def synface_cosine(embeddings1: np.ndarray, embeddings2: np.ndarray) -> np.ndarray:
  """SynFace's ``cosine_similarity`` per pair: ``dot / (|a| |b| + 1e-5)``."""
  dots = np.sum(embeddings1 * embeddings2, 1)
  norms = np.linalg.norm(embeddings1, axis=1) * np.linalg.norm(embeddings2, axis=1)
  return dots / (norms + SYNFACE_COSINE_EPS)


def _greater_correct(similarity, issame, thresholds) -> np.ndarray:
  """Number of correct decisions per threshold when "same" means ``similarity > threshold``."""
  similarity = similarity.astype(np.float64)
  same = np.sort(similarity[issame])
  diff = np.sort(similarity[~issame])
  true_pos = same.size - np.searchsorted(same, thresholds, side='right')
  true_neg = np.searchsorted(diff, thresholds, side='right')
  return true_pos + true_neg


def synface_protocol(embeddings1, embeddings2, issame) -> Dict[str, Any]:
  """SynFace ``lfw_eval`` 10-fold protocol (no flip).

  Args:
    embeddings1: [N, D] first member of every pair.
    embeddings2: [N, D] second member of every pair.
    issame: [N] ground truth.

  Returns:
    A dict with 'accuracy' (mean over folds), 'std' (population std), 'fold_accuracy',
    'thresholds' (best threshold per fold), 'fold_sizes' and 'similarity' (cosine per pair).
  """
  e1, e2, labels = _check_pairs(embeddings1, embeddings2, issame, SYNFACE_FOLDS)
  similarity = synface_cosine(e1, e2)
  n = similarity.size
  thresholds = SYNFACE_THRESHOLDS
  bounds = synface_fold_bounds(n)
  accuracy = np.zeros(SYNFACE_FOLDS)
  best = np.zeros(SYNFACE_FOLDS)
  for k, (start, stop) in enumerate(bounds):
    train, test = _split(n, start, stop)
    correct = _greater_correct(similarity[train], labels[train], thresholds)
    last_best = thresholds.size - 1 - int(np.argmax(correct[::-1]))
    best[k] = thresholds[last_best]
    correct_test = _greater_correct(similarity[test], labels[test], best[k:k + 1])
    accuracy[k] = 1.0 * float(correct_test[0]) / float(test.size)
  return {**_fold_results(accuracy, best, bounds), 'similarity': similarity}


def verify(embeddings1, embeddings2, issame, protocol: str) -> Dict[str, Any]:
  """Runs the named verification protocol ('insightface' or 'synface')."""
  if protocol == 'insightface':
    return insightface_protocol(embeddings1, embeddings2, issame)
  if protocol == 'synface':
    return synface_protocol(embeddings1, embeddings2, issame)
  raise ValueError(f'unknown verification protocol {protocol!r}; expected one of {PROTOCOLS}')
