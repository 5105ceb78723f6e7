"""Face verification: insightface and SynFace protocols, pair loaders and a small CLI.

Two protocols are implemented in pure numpy, reproducing the reference code number for number:

* ``insightface``: arcface_torch ``eval/verification.py``. Embeddings are L2-normalised, the
  distance is the squared L2 distance, a pair is predicted "same" when ``dist < threshold``
  (strict) over ``arange(0, 4, 0.01)``; sklearn-style ``KFold(10, shuffle=False)`` folds (the first
  ``N mod 10`` folds get one extra pair); the best training threshold is the FIRST of maximal
  accuracy. VAL@FAR uses ``arange(0, 4, 0.001)`` and scipy<=1.8 ``interp1d(kind='slinear')``.
* ``synface``: SynFace ``lfw_eval``. Cosine similarity ``dot / (|a| |b| + 1e-5)``, thresholds
  ``arange(-1, 1, 0.005)``, a pair is "same" when ``similarity > threshold``; ties go to the LAST
  threshold; folds are the contiguous blocks ``[floor(i N / 10), floor((i + 1) N / 10))``.

Pair sources: insightface ``.bin`` packs (:func:`load_bin`) and LFW ``pairs.txt``
(:func:`load_pairs_txt`, :func:`load_pair_images`). :func:`evaluate_pairs` embeds interleaved pair
images with any ``embed_fn`` and runs a protocol.

Command line::

  python -m synface_jax.evaluate pairs --embeddings E.npz --protocol insightface
  python -m synface_jax.evaluate bin --bin lfw.bin --out lfw.npz
  python -m synface_jax.evaluate run --checkpoint DIR --sets lfw.bin,synthetic:600 --out REPORT
  python -m synface_jax.evaluate variation --checkpoint DIR --sets casia,synthetic:100x10 --out V

`run` (ROC, AUC, EER, TAR@FAR, identification, the report) lives in `synface_jax.eval`.

Only numpy is imported at module import time; Pillow is imported when images are decoded.
"""
import argparse
import io
import json
import os
import pickle
import sys
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from synface_jax import safe_pickle

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
      'accuracy': float(np.mean(accuracy)),
      'std': float(np.std(accuracy)),
      'fold_accuracy': accuracy,
      'thresholds': best,
      'fold_sizes': np.array([stop - start for start, stop in bounds], dtype=np.int64),
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
  return {
      'accuracy': float(np.mean(accuracy)),
      'std': float(np.std(accuracy)),
      'fold_accuracy': accuracy,
      'thresholds': best,
      'fold_sizes': np.array([stop - start for start, stop in bounds], dtype=np.int64),
      'similarity': similarity,
  }


def verify(embeddings1, embeddings2, issame, protocol: str) -> Dict[str, Any]:
  """Runs the named verification protocol ('insightface' or 'synface')."""
  if protocol == 'insightface':
    return insightface_protocol(embeddings1, embeddings2, issame)
  if protocol == 'synface':
    return synface_protocol(embeddings1, embeddings2, issame)
  raise ValueError(f'unknown verification protocol {protocol!r}; expected one of {PROTOCOLS}')


# ----------------------------------------------------------------------------------------------
# insightface .bin packs.
# ----------------------------------------------------------------------------------------------


def _unpickle_pack(path: str) -> Any:
  """The pack's pickle, read by the plain-data reader (Python 2 ``str`` data stays bytes)."""
  return safe_pickle.load_file(path, globals={**safe_pickle.BUILTINS, **safe_pickle.NUMPY},
                               str8='bytes')


def _as_jpeg_bytes(item, path: str, index: int) -> bytes:
  """Raw encoded image bytes of one pack entry (bytes, str or a numpy uint8 buffer)."""
  if isinstance(item, (bytes, bytearray, memoryview)):
    return bytes(item)
  if isinstance(item, str):
    return item.encode('latin1')
  if isinstance(item, np.ndarray) and item.dtype in (np.uint8, np.int8):
    return item.tobytes()
  raise ValueError(f'{path}: image {index} is a {type(item).__name__}, not encoded image bytes')


def _as_flag(value, path: str, index: int) -> bool:
  """One issame flag: a bool, or the integer 0 or 1 (a string such as 'no' is refused)."""
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)) and value in (0, 1):
    return bool(value)
  raise ValueError(f'{path}: issame flag {index} is {safe_pickle.describe(value)}, not a bool')


def checked_issame(values, source: str) -> np.ndarray:
  """issame [N] as bool from a stored array: bool, or integers that are all 0 or 1; ValueError
  naming `source` for any other dtype (strings such as 'no', floats, objects) or for no pairs."""
  values = np.asarray(values).reshape(-1)
  if values.dtype != bool and not (np.issubdtype(values.dtype, np.integer)
                                   and np.isin(values, (0, 1)).all()):
    raise ValueError(f'{source}: issame is {values.dtype} '
                     f'{values[:3].tolist() if values.dtype != object else "objects"}..., '
                     'not bool (or 0/1 integers)')
  if values.size == 0:
    raise ValueError(f'{source}: the pair set holds no pairs')
  return values.astype(bool)


def decode_image(data: bytes, source: str) -> np.ndarray:
  """Decodes an encoded image to uint8 RGB [H, W, 3] with Pillow.

  Args:
    data: the encoded bytes (JPEG, PNG, ...).
    source: description for error messages, e.g. ``'lfw.bin image 17'``.

  Raises:
    ValueError: naming ``source`` when the data cannot be decoded.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      return np.asarray(image.convert('RGB'), dtype=np.uint8)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f'cannot decode {source}: {e}') from e


def _stack_images(images: List[np.ndarray], source: str) -> np.ndarray:
  """Stacks equally sized images, naming the first one whose size differs."""
  if not images:
    return np.zeros((0, 0, 0, 3), dtype=np.uint8)
  for i, image in enumerate(images):
    if image.shape != images[0].shape:
      raise ValueError(f'{source}: image {i} has shape {image.shape}, image 0 has '
                       f'{images[0].shape}; all images must have the same size')
  return np.stack(images)


def load_bin(path, progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
  """Reads an insightface verification ``.bin`` pack.

  The file is a pickle of ``(list of 2N encoded images, list of N bools)``; images ``2k`` and
  ``2k + 1`` form pair ``k``. Python-3 (any protocol) and Python-2-era packs are accepted; the
  pickle is read by :mod:`synface_jax.safe_pickle`, which builds plain data only.

  Args:
    path: the ``.bin`` file.
    progress: log progress lines (synface_jax.progress) while decoding.

  Returns:
    (images uint8 [2N, H, W, 3] RGB, issame bool [N]).

  Raises:
    safe_pickle.PickleFileError (a ValueError): for a disallowed global or a file that is not
      a readable pickle.
    ValueError: for a wrong layout or an image that cannot be decoded (naming its index).
  """
  path = os.fspath(path)
  obj = _unpickle_pack(path)
  if not isinstance(obj, (tuple, list)) or len(obj) != 2:
    raise ValueError(f'{path}: expected a pickled (images, issame) pair, got '
                     f'{type(obj).__name__}')
  bins, issame_list = obj
  if not isinstance(bins, (list, tuple)) or not isinstance(issame_list, (list, tuple, np.ndarray)):
    raise ValueError(f'{path}: expected lists of images and of issame flags')
  if len(bins) != 2 * len(issame_list):
    raise ValueError(f'{path}: {len(bins)} images for {len(issame_list)} pairs; expected '
                     f'{2 * len(issame_list)}')
  if len(issame_list) == 0:
    raise ValueError(f'{path}: the pack holds no pairs')
  issame = np.array([_as_flag(x, path, i) for i, x in enumerate(issame_list)], dtype=bool)
  items = enumerate(bins)
  if progress:
    from synface_jax import progress as progress_lib  # pylint: disable=g-import-not-at-top
    items = progress_lib.iterate(items, f'decode {path}', len(bins), unit='images')
  images = [decode_image(_as_jpeg_bytes(item, path, i), f'{path} image {i}') for i, item in items]
  return _stack_images(images, path), issame


# ----------------------------------------------------------------------------------------------
# LFW pairs.txt.
# ----------------------------------------------------------------------------------------------


def _lfw_image_path(root: str, name: str, index: int) -> str:
  """``root/name/name_%04d.jpg``, or the ``.png`` sibling when only that exists."""
  stem = os.path.join(root, name, f'{name}_{index:04d}')
  if not os.path.isfile(stem + '.jpg') and os.path.isfile(stem + '.png'):
    return stem + '.png'
  return stem + '.jpg'


def _parse_header(line: str, pairs_txt: str) -> int:
  """Number of pair lines announced by the first line ("10 300" or a single count)."""
  fields = line.split()
  try:
    values = [int(v) for v in fields]
  except ValueError:
    values = []
  if len(values) not in (1, 2) or min(values) <= 0:
    raise ValueError(f'{pairs_txt}:1: malformed header {line.strip()!r}; expected '
                     f'"<folds> <pairs per fold>" or "<pairs per class>"')
  return 2 * int(np.prod(values))


def _parse_pair_line(line: str) -> Tuple[str, int, str, int]:
  """Splits ``name i j`` or ``name1 i name2 j`` into (name1, i, name2, j); raises ValueError."""
  fields = line.split()
  if len(fields) == 3:
    name1, i, j = fields
    name2 = name1
  elif len(fields) == 4:
    name1, i, name2, j = fields
  else:
    raise ValueError(f'expected 3 or 4 fields, got {len(fields)}')
  return name1, int(i), name2, int(j)


def load_pairs_txt(root, pairs_txt) -> Tuple[List[str], List[str], np.ndarray]:
  """Parses LFW's ``pairs.txt``.

  Args:
    root: the image folder holding ``name/name_%04d.jpg`` (or ``.png``).
    pairs_txt: the pairs file; its first line is ``"<folds>\\t<pairs per fold>"`` or one count,
      then ``name idx1 idx2`` (same person) or ``name1 idx1 name2 idx2`` (different).

  Returns:
    (paths1, paths2, issame bool [N]) in file order.

  Raises:
    ValueError: naming the pairs file, the line number and the offending line or image file.
  """
  root = os.fspath(root)
  pairs_txt = os.fspath(pairs_txt)
  with open(pairs_txt, encoding='utf-8') as f:
    lines = f.read().splitlines()
  if not lines:
    raise ValueError(f'{pairs_txt}: empty pairs file')
  expected = _parse_header(lines[0], pairs_txt)
  paths1, paths2, issame = [], [], []
  for line_no, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    try:
      name1, i, name2, j = _parse_pair_line(line)
    except ValueError as e:
      raise ValueError(f'{pairs_txt}:{line_no}: malformed pair line {line.strip()!r} '
                       f'({e})') from None
    for name, index, out in ((name1, i, paths1), (name2, j, paths2)):
      path = _lfw_image_path(root, name, index)
      if not os.path.isfile(path):
        raise ValueError(f'{pairs_txt}:{line_no}: image file {path} does not exist')
      out.append(path)
    issame.append(name1 == name2)
  if len(issame) != expected:
    raise ValueError(f'{pairs_txt}: header announces {expected} pairs, found {len(issame)}')
  return paths1, paths2, np.array(issame, dtype=bool)


def load_pair_images(paths1: Sequence[str],
                     paths2: Sequence[str],
                     issame=None,
                     progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
  """Decodes pair images into the interleaved ``.bin`` layout.

  Args:
    paths1: first image of every pair.
    paths2: second image of every pair.
    issame: optional [N] ground truth; by default a pair is "same" when both files sit in folders
      of the same name (the LFW layout).
    progress: log progress lines (synface_jax.progress) while decoding.

  Returns:
    (images uint8 [2N, H, W, 3] RGB, rows 2k and 2k + 1 are pair k; issame bool [N]).
  """
  if len(paths1) != len(paths2):
    raise ValueError(f'paths1 and paths2 differ in length: {len(paths1)} and {len(paths2)}')
  if issame is None:
    issame = [
        os.path.basename(os.path.dirname(os.fspath(a))) ==
        os.path.basename(os.path.dirname(os.fspath(b))) for a, b in zip(paths1, paths2)
    ]
  issame = np.asarray(issame, dtype=bool)
  if issame.shape != (len(paths1),):
    raise ValueError(f'issame must have shape ({len(paths1)},), got {issame.shape}')
  images = []
  pairs = zip(paths1, paths2)
  if progress:
    from synface_jax import progress as progress_lib  # pylint: disable=g-import-not-at-top
    pairs = progress_lib.iterate(pairs, 'decode pair images', len(paths1), unit='pairs')
  from synface_jax.data.images import BadImage, read_file  # pylint: disable=g-import-not-at-top
  for a, b in pairs:
    for path in (a, b):
      try:
        data = read_file(os.fspath(path))  # Never waits on a FIFO named like an image.
      except BadImage as e:
        raise ValueError(f'{os.fspath(path)}: {e}') from None
      images.append(decode_image(data, os.fspath(path)))
  return _stack_images(images, 'pair images'), issame


# ----------------------------------------------------------------------------------------------
# Embedding + protocol.
# ----------------------------------------------------------------------------------------------


def normalize_images(images: np.ndarray) -> np.ndarray:
  """uint8 pixels to float32 ``(x / 255 - 0.5) / 0.5``; float images are taken as normalised."""
  if images.dtype != np.uint8:
    return images.astype(np.float32)
  return ((images.astype(np.float32) / 255.0) - 0.5) / 0.5


def embed_images(embed_fn: Callable[[np.ndarray], Any],
                 images: np.ndarray,
                 batch_size: int = 64,
                 flip: bool = False) -> np.ndarray:
  """Embeds uint8 NHWC images (or float ones, already normalised) in fixed-size batches.

  The last batch is padded (with copies of its first image) to ``batch_size`` so that a jitted
  ``embed_fn`` sees one shape; the padding rows are dropped.

  Args:
    embed_fn: normalised float32 [B, H, W, 3] -> embeddings [B, D] (numpy or jax).
    images: uint8 [M, H, W, 3].
    batch_size: batch size passed to ``embed_fn``.
    flip: when True, returns ``embed(x) + embed(x flipped along the width)``.

  Returns:
    float32/float64 embeddings [M, D] as a numpy array.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  outputs = []
  for start in range(0, images.shape[0], batch_size):
    batch = images[start:start + batch_size]
    real = batch.shape[0]
    if real < batch_size:
      pad = np.repeat(batch[:1], batch_size - real, axis=0)
      batch = np.concatenate([batch, pad], axis=0)
    x = normalize_images(batch)
    emb = np.asarray(embed_fn(x))
    if flip:
      emb = emb + np.asarray(embed_fn(np.ascontiguousarray(x[:, :, ::-1])))
    if emb.ndim != 2 or emb.shape[0] != batch_size:
      raise ValueError(f'embed_fn must return [{batch_size}, D] embeddings, got {emb.shape}')
    outputs.append(emb[:real])
  return np.concatenate(outputs, axis=0)


def evaluate_pairs(embed_fn: Callable[[np.ndarray], Any],
                   images: np.ndarray,
                   issame,
                   protocol: str,
                   batch_size: int = 64) -> Dict[str, Any]:
  """Embeds interleaved pair images and runs a verification protocol.

  Args:
    embed_fn: normalised float32 [B, H, W, 3] -> embeddings [B, D].
    images: uint8 [2N, H, W, 3]; rows 2k and 2k + 1 are pair k.
    issame: [N] ground truth.
    protocol: 'insightface' (flip-sum embeddings) or 'synface' (no flip).
    batch_size: batch size passed to ``embed_fn``.

  Returns:
    The protocol's result dict (see :func:`verify`).
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f'unknown verification protocol {protocol!r}; expected one of {PROTOCOLS}')
  images = np.asarray(images)
  issame = np.asarray(issame)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be [2N, H, W, 3], got shape {images.shape}')
  if images.shape[0] != 2 * issame.shape[0]:
    raise ValueError(f'{images.shape[0]} images for {issame.shape[0]} pairs; expected '
                     f'{2 * issame.shape[0]}')
  embeddings = embed_images(embed_fn, images, batch_size, flip=protocol == 'insightface')
  return verify(embeddings[0::2], embeddings[1::2], issame, protocol)


def load_pair_source(source: str, progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
  """Interleaved pair images and issame from a '.bin' pack or an 'IMAGE_ROOT:pairs.txt' source."""
  if source.endswith('.bin'):
    return load_bin(source, progress)
  root, sep, pairs_txt = source.rpartition(':')
  if not sep or not root:
    raise ValueError(f'eval.pairs entry {source!r}: expected a .bin file or IMAGE_ROOT:pairs.txt')
  paths1, paths2, issame = load_pairs_txt(root, pairs_txt)
  return load_pair_images(paths1, paths2, issame, progress)


def fit_to_size(images: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
  """Centre-crops uint8 [N, H, W, 3] images to the aspect of size=(h, w), then resizes (bilinear)."""
  h, w = size
  n, ih, iw, _ = images.shape
  if (ih, iw) == (h, w):
    return images
  crop_h, crop_w = min(ih, iw * h // w), min(iw, ih * w // h)
  top, left = (ih - crop_h) // 2, (iw - crop_w) // 2
  images = images[:, top:top + crop_h, left:left + crop_w]
  if (crop_h, crop_w) == (h, w):
    return images
  from PIL import Image
  return np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR)) for im in images])


class PairEvaluator:
  """Verification of the backbone being trained on the pair sets named in config.eval.pairs.

  A source is a '.bin' pack, 'IMAGE_ROOT:pairs.txt', an '.npz' (images, issame) or
  'synthetic[:N]': N pairs (default 6,000) rendered by the run's generator from identities outside
  its training pool ("Syn-LFW"). The pair images are loaded once (files at construction, so a bad
one stops the run before training; rendered pairs at the first call); each call embeds them in eval
  mode and returns {'eval/NAME/PROTOCOL/accuracy': ..., '.../std': ..., for insightface
  '.../val', and the all-pairs '.../auc', '.../eer', '.../tar@far=0.001', ...}
  (`synface_jax.eval.report.verification_figures`). After a call, `images()` draws its ROC curves
  and score histograms and `scores()` holds the genuine and impostor pair scores.
  """

  def __init__(self, config, model, generator=None, gen_params=None):
    import jax
    self.protocols = tuple(config.eval.protocols)
    self.batch_size = config.eval.batch_size
    self.size = size = tuple(config.model.input_size)
    self.sets, self._to_render = {}, {}
    for source in config.eval.pairs:
      kind, _, count = source.partition(':')
      if kind == 'synthetic':
        if generator is None:
          raise ValueError(f'eval.pairs entry {source!r}: synthetic pairs need a generator '
                           '(the synthetic or mixed regime)')
        from synface_jax.generators.pairs import NUM_FOLDS  # pylint: disable=g-import-not-at-top
        num_pairs = int(count or 6000)
        if num_pairs <= 0 or num_pairs % (2 * NUM_FOLDS):
          raise ValueError(f'eval.pairs entry {source!r}: rendered pairs come in positive '
                           f'multiples of {2 * NUM_FOLDS} (10 folds, half same, half different)')
        # Rendered at the first evaluation, not before the first step (nothing to check here).
        from synface_jax import seeds  # pylint: disable=g-import-not-at-top
        self._to_render['synthetic'] = (generator, gen_params,
                                        seeds.key(config.seed, 'eval_pairs'), num_pairs)
        continue
      else:
        from synface_jax.eval.sets import load_pairs, set_name
        images, issame = load_pairs(source, progress=True)
        name = set_name(source)
      if len(issame) < 10:
        raise ValueError(f'eval.pairs entry {source!r} holds {len(issame)} pairs; the '
                         f'verification protocols need at least 10 (10 folds)')
      self.sets[name] = (fit_to_size(images, size), issame)
    self._embed = jax.jit(lambda variables, x: model.apply(variables, x, train=False))
    self._last = {}  # name -> (figures by protocol, {protocol: (genuine, impostor) scores}).

  def __call__(self, params, batch_stats) -> Dict[str, float]:
    from synface_jax.eval.report import pair_scores, verification_figures  # pylint: disable=g-import-not-at-top
    from synface_jax.generators.pairs import synthetic_pairs  # pylint: disable=g-import-not-at-top
    for name, args in self._to_render.items():
      images, issame = synthetic_pairs(*args)
      self.sets[name] = (fit_to_size(images, self.size), issame)
    self._to_render = {}
    variables = {'params': params, 'batch_stats': batch_stats}
    embed_fn = lambda x: self._embed(variables, x)
    results = {}
    for name, (images, issame) in self.sets.items():
      plain = embed_images(embed_fn, images, self.batch_size)
      flipped = None
      if 'insightface' in self.protocols:  # embed(x) + embed(flipped x), as evaluate_pairs sums.
        flipped = plain + embed_images(embed_fn, np.ascontiguousarray(images[:, :, ::-1]),
                                       self.batch_size)
      figures = verification_figures(plain, flipped, issame, self.protocols)
      scores = {p: pair_scores(plain, flipped, p) for p in self.protocols}
      self._last[name] = (figures, {p: (s[issame], s[~issame]) for p, s in scores.items()})
      for protocol, r in figures.items():
        prefix = f'eval/{name}/{protocol}'
        for key in ('accuracy', 'std', 'val', 'auc', 'eer'):
          if key in r:
            results[f'{prefix}/{key}'] = float(r[key])
        for far, at in r['tar_at_far'].items():
          results[f'{prefix}/tar@far={far}'] = float(at['tar'])
    return results

  def scores(self) -> Dict[str, np.ndarray]:
    """{'eval/NAME/PROTOCOL/genuine' and '.../impostor': pair scores} of the last call."""
    out = {}
    for name, (_, by_protocol) in self._last.items():
      for protocol, (genuine, impostor) in by_protocol.items():
        out[f'eval/{name}/{protocol}/genuine'] = genuine
        out[f'eval/{name}/{protocol}/impostor'] = impostor
    return out

  def images(self) -> Dict[str, np.ndarray]:
    """uint8 [H, W, 3] pictures of the last call: 'eval/roc/PROTOCOL' (one curve per set) and
    'eval/NAME/PROTOCOL/histogram' (genuine and impostor cosine similarities)."""
    from synface_jax.eval import plots  # pylint: disable=g-import-not-at-top
    out = {}
    for protocol in self.protocols:
      curves = {f"{name} (AUC = {figures[protocol]['auc']:.3f})":
                (figures[protocol]['roc']['far'], figures[protocol]['roc']['tar'])
                for name, (figures, _) in self._last.items()}
      if curves:
        out[f'eval/roc/{protocol}'] = np.asarray(
            plots.roc_png(None, curves, title=f'ROC, {protocol} protocol'))
    for name, (_, by_protocol) in self._last.items():
      for protocol, (genuine, impostor) in by_protocol.items():
        out[f'eval/{name}/{protocol}/histogram'] = np.asarray(plots.histogram_png(
            None, genuine, impostor, title=f'{name}, {protocol}: cosine similarity', bins=50,
            label='cosine'))
    return out


# ----------------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------------


class UserError(Exception):
  """An error caused by the command-line input; reported in one line without a traceback."""


def _load_npz_keys(path: str, keys: Sequence[str]) -> Dict[str, np.ndarray]:
  """Loads ``keys`` from an ``.npz``, naming the file and key on failure."""
  try:
    with np.load(path, allow_pickle=False) as data:
      if not hasattr(data, 'files'):
        raise UserError(f'{path}: not an .npz archive')
      missing = [k for k in keys if k not in data.files]
      if missing:
        raise UserError(f'{path}: missing key {missing[0]!r} (has {sorted(data.files)})')
      return {k: data[k] for k in keys}
  except (OSError, ValueError, EOFError) as e:
    raise UserError(f'{path}: cannot read .npz ({e})') from e


def _summary(result: Dict[str, Any], protocol: str) -> Dict[str, Any]:
  """The JSON-ready subset of a protocol result."""
  out = {
      'accuracy': result['accuracy'],
      'std': result['std'],
      'thresholds': [float(t) for t in result['thresholds']],
  }
  if protocol == 'insightface':
    out.update(val=result['val'], val_std=result['val_std'], far=result['far'])
  return out


def _load_issame(path: str) -> np.ndarray:
  """issame [N] from an .npz (key `issame`, e.g. what ``bin`` writes) or a .npy."""
  if path.endswith('.npz'):
    return _load_npz_keys(path, ('issame',))['issame']
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise UserError(f'{path}: cannot read issame ({e})') from e


def load_pair_embeddings(path: str, issame_path: str = '') -> Dict[str, np.ndarray]:
  """embeddings1, embeddings2 and issame from any of the layouts ``pairs`` reads.

  * .npz with ``embeddings1`` [N, D], ``embeddings2`` [N, D], ``issame`` [N];
  * .npz with ``embeddings`` [2N, D] interleaved (rows 2k and 2k + 1 are pair k) and ``issame``
    (what ``python -m synface_jax.embed --out X.npz`` writes for a pair set);
  * .npy [2N, D] interleaved (what ``embed --out X.npy`` writes), with ``issame_path``.
  ``issame_path`` (an .npz with ``issame`` or a .npy) overrides the issame stored beside them.
  """
  if path.endswith('.npy'):
    try:
      interleaved = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise UserError(f'{path}: cannot read .npy ({e})') from e
    data = {}
  else:
    try:
      with np.load(path, allow_pickle=False) as archive:
        files = archive.files if hasattr(archive, 'files') else ()
    except (OSError, ValueError, EOFError) as e:
      raise UserError(f'{path}: cannot read .npz ({e})') from e
    if 'embeddings' not in files:
      keys = ('embeddings1', 'embeddings2') + (() if issame_path else ('issame',))
      data = _load_npz_keys(path, keys)
      if issame_path:
        data['issame'] = _load_issame(issame_path)
      return data
    data = _load_npz_keys(path, ('embeddings',) + (('issame',) if 'issame' in files else ()))
    interleaved = data.pop('embeddings')
  if issame_path:
    data['issame'] = _load_issame(issame_path)
  if 'issame' not in data:
    raise UserError(f'{path}: interleaved embeddings without issame: give --issame FILE (the pair '
                    'pack .npz) or embed an .npz that holds issame')
  try:
    issame = checked_issame(data['issame'], issame_path or path)
  except ValueError as e:
    raise UserError(str(e)) from None
  if interleaved.ndim != 2 or interleaved.shape[0] != 2 * issame.size:
    raise UserError(f'{path}: {interleaved.shape} embeddings for {issame.size} pairs; expected '
                    f'[{2 * issame.size}, D], rows 2k and 2k + 1 forming pair k')
  return {'embeddings1': interleaved[0::2], 'embeddings2': interleaved[1::2], 'issame': issame}


def _cmd_pairs(args) -> None:
  """``pairs``: runs a protocol on stored embeddings and prints one JSON line."""
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.embeddings):  # --issame's errors name it.
      data = load_pair_embeddings(args.embeddings, args.issame)
  except UserError:
    raise
  except file_errors.FILE_ERRORS as e:
    raise UserError(str(e)) from e
  try:
    result = verify(data['embeddings1'], data['embeddings2'], data['issame'], args.protocol)
  except ValueError as e:
    raise UserError(f'{args.embeddings}: {e}') from e
  print(json.dumps(_summary(result, args.protocol)))


def _cmd_bin(args) -> None:
  """``bin``: decodes a ``.bin`` pack to an ``.npz`` with ``images`` and ``issame``."""
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.bin):
      images, issame = load_bin(args.bin, progress=True)
  except file_errors.FILE_ERRORS as e:
    raise UserError(str(e)) from e
  try:
    np.savez(args.out, images=images, issame=issame)
  except OSError as e:
    raise UserError(f'{args.out}: cannot write ({e})') from e
  print(json.dumps({'out': args.out, 'pairs': int(issame.size), 'image_shape':
                    list(images.shape[1:])}))


def _report_augment(config, spec: str):
  """--augment: '' (clean renders), 'config' (the config's synthetic.augment as it is) or OP[,OP]
  (only those ops, each always on, at the config's strengths)."""
  from synface_jax.generators import augment  # pylint: disable=g-import-not-at-top
  import dataclasses  # pylint: disable=g-import-not-at-top
  block = config.synthetic.augment if 'synthetic' in config else {}
  options = augment.Augment.from_config(block)
  if not spec:
    return None
  if spec == 'config':
    return options
  ops = [op.strip() for op in spec.split(',') if op.strip()]
  known = augment.Augment.OPS
  for op in ops:
    if op not in known:
      raise ValueError(f'--augment {op!r}: not an augmentation op; one of {", ".join(known)}')
  return dataclasses.replace(options, **{op: float(op in ops) for op in known})


def _cmd_generator(args) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from synface_jax import generate, generator_report  # pylint: disable=g-import-not-at-top
  from synface_jax.generators import get_generator  # pylint: disable=g-import-not-at-top
  try:
    config = generate.with_generator(generate.load_config(args.config, args.config_overrides),
                                     args.generator, args.option)
    generator = get_generator(config.generator)
    options = _report_augment(config, args.augment)
    judge = generator_report.DlibJudge()
    report = generator_report.run(
        generator, generator.init(jax.random.key(args.seed)), args.out, judge,
        identities=args.identities, per_identity=args.per_identity, seed=args.seed,
        name=config.generator.name, augment_options=options)
  except (OSError, ValueError, RuntimeError) as e:
    raise UserError(str(e)) from None
  print(generator_report.summary_line(report))
  print(f'report: {os.path.join(args.out, "report.md")}')


def _floats(text: str) -> List[float]:
  try:
    return [float(v) for v in text.split(',') if v]
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected comma-separated numbers, got {text!r}') from None


def _sources(text: str) -> List[str]:
  return [v for v in text.split(',') if v]


def _cmd_run(args) -> None:
  """``run``: every verification and identification figure of one checkpoint (eval/report.py)."""
  from synface_jax.embedder import load_embedder  # pylint: disable=g-import-not-at-top
  from synface_jax.eval import report, sets  # pylint: disable=g-import-not-at-top
  if not args.sets and not args.identification:
    raise UserError('run: give --sets and/or --identification')
  unknown = [p for p in args.protocols if p not in PROTOCOLS]
  if unknown or not args.protocols:
    raise UserError(f'run: --protocols {",".join(args.protocols)}: expected some of {PROTOCOLS}')
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.checkpoint):
      embedder = load_embedder(args.checkpoint, step=args.step, batch_size=args.batch,
                               normalize=False, arch=args.arch, width=args.width)
    renderer = None
    if any(s.split(':')[0] == 'synthetic' for s in args.sets + args.identification):
      config, origin = report.generator_config(args.checkpoint, args.config,
                                               embedder.spec.input_size, args.config_overrides)
      renderer = sets.renderer_from_config(config, args.seed)
      print(f'synthetic sets: rendered by the {renderer.name!r} generator of {origin}, held-out '
            f'identities from {renderer.first_identity}', flush=True)
    print(f'evaluating {embedder!r} from {args.checkpoint}', flush=True)
    report.run(embedder, args.sets, args.out, identification_sources=args.identification,
               renderer=renderer, protocols=tuple(args.protocols), far_targets=args.far,
               fpir_targets=args.fpir, distractor_fraction=args.distractors, seed=args.seed,
               checkpoint=args.checkpoint, log=lambda line: print(line, flush=True))
  except (OSError, ValueError, pickle.UnpicklingError) as e:  # Set files: named by sets.py.
    raise UserError(str(e)) from None
  print(f'report: {os.path.join(args.out, "report.md")}')


def _cmd_variation(args) -> None:
  """``variation``: intra-class variation of labelled sets under one model (eval/variation.py)."""
  from synface_jax.embedder import load_embedder  # pylint: disable=g-import-not-at-top
  from synface_jax.eval import report, sets, variation  # pylint: disable=g-import-not-at-top
  try:
    settings = [variation.parse_im(s) for s in args.im] if args.im else variation.IM_SETTINGS
    embedder = load_embedder(args.checkpoint, step=args.step, batch_size=args.batch,
                             normalize=False, arch=args.arch, width=args.width)
    renderer = None
    if any(s.split(':')[0] == 'synthetic' for s in args.sets):
      config, origin = report.generator_config(args.checkpoint, args.config,
                                               embedder.spec.input_size, args.config_overrides)
      renderer = sets.renderer_from_config(config, args.seed)
      print(f'synthetic sets: rendered by the {renderer.name!r} generator of {origin}', flush=True)
    variation.run(embedder, args.sets, args.out, renderer=renderer, im_settings=settings,
                  shown_identities=args.show, checkpoint=args.checkpoint,
                  log=lambda line: print(line, flush=True))
  except (OSError, ValueError, pickle.UnpicklingError) as e:
    raise UserError(str(e)) from None
  print(f'report: {os.path.join(args.out, "variation.md")}')


def _embedder_arguments(parser) -> None:
  """The flags that pick and run a checkpoint's embedder (--step, --batch, --arch, --width)."""
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--batch', type=int, default=64, help='images per forward pass')
  parser.add_argument('--arch', default=None, help='only for checkpoints without model.json')
  parser.add_argument('--width', type=float, default=None, help='only for checkpoints without model.json')


def build_parser() -> argparse.ArgumentParser:
  """The ``python -m synface_jax.evaluate`` argument parser."""
  parser = argparse.ArgumentParser(prog='python -m synface_jax.evaluate',
                                   description='Face verification protocols and pair packs.')
  sub = parser.add_subparsers(dest='command', required=True)
  pairs = sub.add_parser('pairs', help='verification accuracy from stored pair embeddings')
  pairs.add_argument('--embeddings', required=True,
                     help='.npz with embeddings1 [N, D], embeddings2 [N, D], issame [N]; or what '
                     'embed writes for a pair set: .npz with embeddings [2N, D] and issame, or '
                     '.npy [2N, D] with --issame')
  pairs.add_argument('--issame', default='',
                     help='issame [N]: an .npz holding it (e.g. from `bin`) or a .npy')
  pairs.add_argument('--protocol', required=True, choices=PROTOCOLS)
  pairs.set_defaults(func=_cmd_pairs)
  pack = sub.add_parser('bin', help='decode an insightface .bin pack to .npz')
  pack.add_argument('--bin', required=True, help='the .bin verification pack')
  pack.add_argument('--out', required=True, help='output .npz (images, issame)')
  pack.set_defaults(func=_cmd_bin)
  report = sub.add_parser(
      'generator', help="how a real-face recogniser sees a generator's faces (the generator report)")
  report.add_argument('--config', default='', help='config file (path[:arg]) with a generator field')
  report.add_argument('--generator', default='', help="backend, overriding the config's")
  report.add_argument('--option', action='append', default=[], metavar='KEY=VALUE',
                      help="the backend's own option, e.g. checkpoint=DIR")
  report.add_argument('--identities', type=int, default=100, help='held-out identities')
  report.add_argument('--per-identity', type=int, default=8, help='nuisance draws of each')
  report.add_argument('--seed', type=int, default=0)
  report.add_argument('--judge', default='dlib', choices=('dlib',))
  report.add_argument('--augment', default='',
                      help="degrade the draws as training does: 'config' (the config's "
                           "synthetic.augment) or OP[,OP] (only those, always on)")
  report.add_argument('--out', required=True, help='folder for report.json, report.md and PNGs')
  report.set_defaults(func=_cmd_generator)
  run = sub.add_parser('run', help="a checkpoint on pair and labelled sets: results.json, "
                       'report.md, ROC / histogram / CMC PNGs')
  run.add_argument('--checkpoint', required=True, help='training workdir or checkpoint folder')
  run.add_argument('--sets', type=_sources, default=[],
                   help='pair sets, comma-separated: X.bin, ROOT:pairs.txt, X.npz (images, '
                   'issame), synthetic[:N]')
  run.add_argument('--identification', type=_sources, default=[],
                   help='labelled sets, comma-separated: identity folder, RecordIO folder, '
                   'X.npz (images, labels), synthetic:NxM')
  run.add_argument('--out', required=True, help='folder for results.json, report.md and PNGs')
  run.add_argument('--protocols', type=_sources, default=list(PROTOCOLS))
  run.add_argument('--far', type=_floats, default=[1e-4, 1e-3, 1e-2], help='TAR@FAR targets')
  run.add_argument('--fpir', type=_floats, default=[1e-2, 1e-1], help='DIR@FPIR targets')
  run.add_argument('--distractors', type=float, default=0.2,
                   help='open set: share of identities held out as distractors')
  run.add_argument('--seed', type=int, default=0,
                   help='gallery choice, distractor identities, synthetic faces')
  run.add_argument('--config', default='',
                   help="config file (path[:arg]) whose generator renders the synthetic sets "
                   "(default: the run's stored config.json, else the procedural default)")
  _embedder_arguments(run)
  run.set_defaults(func=_cmd_run)
  var = sub.add_parser('variation', help='intra-class variation of labelled sets (spread, '
                       'within / between-class variance, PCA projection)')
  var.add_argument('--checkpoint', required=True, help='training workdir or checkpoint folder')
  var.add_argument('--sets', type=_sources, required=True,
                   help='labelled sets, comma-separated: identity folder, RecordIO folder, '
                   'X.npz (images, labels), synthetic:NxM (rendered once per --im)')
  var.add_argument('--im', action='append', default=[], metavar='[NAME=]SPEC',
                   help='identity mixup setting of the synthetic sets, repeatable (off, '
                   'fixed:0.8, linspace:0.6,1.0,11, ...); default Syn1=off, Syn2=fixed:0.8, '
                   'Syn3=linspace:0.6,1.0,11')
  var.add_argument('--show', type=int, default=8, help='identities per set in projection.png')
  var.add_argument('--out', required=True, help='folder for variation.json, variation.md, PNG')
  var.add_argument('--seed', type=int, default=0, help='synthetic faces, partners and phi')
  var.add_argument('--config', default='', help='config file whose generator renders the '
                   "synthetic sets (default: the run's config.json, else the procedural default)")
  _embedder_arguments(var)
  var.set_defaults(func=_cmd_variation)
  return parser


def main(argv=None) -> int:
  """Command-line entry point; returns the exit status. --config.FIELD=VALUE arguments override
  the fields of --config's file, as for main."""
  from synface_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  overrides, argv = config_lib.split_overrides(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
  args.config_overrides = overrides
  if overrides and not getattr(args, 'config', ''):
    print(f'error: --config.{overrides[0]} needs --config FILE', file=sys.stderr)
    return 2
  try:
    args.func(args)
  except UserError as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
