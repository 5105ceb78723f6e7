"""Verification accuracy and TAR@FAR binned by what the renderer drew: pose, lighting, expression.

Synthetic pairs know each face's factors (`synface_jax.generators.Factors`: pose = (pitch, yaw,
roll) in radians, lighting = 3 colours x 9 spherical-harmonics bands, expression coefficients).
Per face this module reads

  yaw, pitch            degrees
  light strength        length of the band-1 (directional) SH term, colours averaged: the s of
                        s * dot(n, d) added to the irradiance (`procedural.lighting.directional`)
  light azimuth         horizontal angle of that direction d from the camera axis, degrees
  expression            L2 norm of the expression coefficients

and per pair (the harder face decides): |yaw| = max |yaw|, |delta yaw| = |yaw_a - yaw_b|,
|pitch| = max |pitch|, light strength = max, light |azimuth| = max |azimuth|, expression = max.

Each pair attribute is cut into quantile bins (equal pair counts). In every bin:
  accuracy    out-of-fold: each pair decided by its fold's threshold, trained on the other nine
              folds exactly as the 10-fold protocol does (`pair_decisions`), so the bins' accuracies
              weighted by their pair counts give back the protocol's accuracy (equal folds);
  TAR@FAR=f   the share of the bin's genuine pairs accepted at the threshold where the whole set
              reaches FAR f (one operating point for all bins), with the bin's own FAR beside it.
Pure numpy.
"""
import math
from typing import Dict, Sequence

import numpy as np

from synface_jax.eval import metrics
from synface_jax.eval import protocols as protocols_lib

BAND1 = math.sqrt(math.pi)  # Scale of a band-1 SH basis function (= procedural.lighting.BAND1).
ATTRIBUTES = ('|yaw|', '|delta yaw|', '|pitch|', 'light strength', 'light |azimuth|',
              'expression')
DEFAULT_BINS = 4


def face_attributes(factors: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Per-face yaw, pitch (degrees), light strength, light azimuth (degrees), expression norm.

  factors: {'pose': [M, 3], 'lighting': [M, 27], 'expression': [M, E]}.
  """
  pose = np.asarray(factors['pose'], np.float64)
  light = np.asarray(factors['lighting'], np.float64).reshape(-1, 3, 9).mean(axis=1)
  # directional() stores s * (0, -d_y, d_z, -d_x) / BAND1 in bands 0..3.
  vector = BAND1 * np.stack([-light[:, 3], -light[:, 1], light[:, 2]], axis=-1)
  return {
      'pitch': np.degrees(pose[:, 0]),
      'yaw': np.degrees(pose[:, 1]),
      'light_strength': np.linalg.norm(vector, axis=-1),
      'light_azimuth': np.degrees(np.arctan2(vector[:, 0], vector[:, 2])),
      'expression': np.linalg.norm(np.asarray(factors['expression'], np.float64), axis=-1),
  }


def pair_attributes(factors: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """{attribute: [N]} of interleaved pairs (faces 2k and 2k + 1 form pair k); see the docstring."""
  f = face_attributes(factors)
  a = {k: v[0::2] for k, v in f.items()}
  b = {k: v[1::2] for k, v in f.items()}
  pair_max = lambda k: np.maximum(np.abs(a[k]), np.abs(b[k]))
  return {
      '|yaw|': pair_max('yaw'),
      '|delta yaw|': np.abs(a['yaw'] - b['yaw']),
      '|pitch|': pair_max('pitch'),
      'light strength': np.maximum(a['light_strength'], b['light_strength']),
      'light |azimuth|': pair_max('light_azimuth'),
      'expression': np.maximum(a['expression'], b['expression']),
  }


def quantile_edges(values, bins: int = DEFAULT_BINS) -> np.ndarray:
  """Bin edges at the quantiles 0, 1/bins, .., 1 of values (repeated edges merged)."""
  values = np.asarray(values, np.float64)
  if bins < 1:
    raise ValueError(f'bins must be >= 1, got {bins}')
  return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))


def assign_bins(values, edges) -> np.ndarray:
  """Bin index of each value: bin k holds edges[k] <= v < edges[k + 1], the last bin also its
  right edge; values outside [edges[0], edges[-1]] go to the first or last bin."""
  edges = np.asarray(edges, np.float64)
  if edges.size < 2:
    return np.zeros(np.asarray(values).shape, np.int64)
  return np.searchsorted(edges[1:-1], np.asarray(values, np.float64), side='right')


def pair_decisions(plain, flipped, issame, protocol: str) -> np.ndarray:
  """bool [N]: whether each pair is decided correctly by its fold's threshold, the threshold the
  protocol trains on the other nine folds (`protocols`)."""
  issame = np.asarray(issame, bool)
  if protocol == 'insightface':
    e = np.asarray(flipped, np.float64)
    result = protocols_lib.insightface_protocol(e[0::2], e[1::2], issame)
    dist = protocols_lib.squared_l2(protocols_lib.l2_normalize(e[0::2]),
                                  protocols_lib.l2_normalize(e[1::2]))
    bounds = protocols_lib.insightface_fold_bounds(issame.size)
    same = lambda lo, hi, t: dist[lo:hi] < t
  elif protocol == 'synface':
    e = np.asarray(plain, np.float64)
    result = protocols_lib.synface_protocol(e[0::2], e[1::2], issame)
    similarity = result['similarity']
    bounds = protocols_lib.synface_fold_bounds(issame.size)
    same = lambda lo, hi, t: similarity[lo:hi] > t
  else:
    raise ValueError(f'unknown protocol {protocol!r}')
  correct = np.zeros(issame.size, bool)
  for (lo, hi), threshold in zip(bounds, result['thresholds']):
    correct[lo:hi] = same(lo, hi, threshold) == issame[lo:hi]
  return correct


def binned_figures(values, edges, correct, scores, issame,
                   far_targets: Sequence[float] = metrics.DEFAULT_FAR_TARGETS) -> list:
  """One dict per bin: lo, hi, pairs, genuine, impostor, accuracy (mean of `correct`) and, per
  FAR target f, 'tar@far=f' and 'far@far=f': the bin's shares of genuine and impostor pairs with
  score >= the threshold at which all pairs reach FAR f (`metrics.tar_at_far`). A share of no
  pairs is None."""
  scores = np.asarray(scores, np.float64)
  issame = np.asarray(issame, bool)
  correct = np.asarray(correct, bool)
  edges = np.asarray(edges, np.float64)
  overall = metrics.tar_at_far(scores[issame], scores[~issame], far_targets)
  index = assign_bins(values, edges)
  share = lambda mask: float(np.mean(mask)) if mask.size else None
  rows = []
  for k in range(max(edges.size - 1, 1)):
    inside = index == k
    genuine, impostor = inside & issame, inside & ~issame
    row = {'lo': float(edges[k]), 'hi': float(edges[min(k + 1, edges.size - 1)]),
           'pairs': int(inside.sum()), 'genuine': int(genuine.sum()),
           'impostor': int(impostor.sum()), 'accuracy': share(correct[inside])}
    for target, at in overall.items():
      key = metrics.far_key(target)
      row[f'tar@far={key}'] = share(scores[genuine] >= at['threshold'])
      row[f'far@far={key}'] = share(scores[impostor] >= at['threshold'])
    rows.append(row)
  return rows


def attribute_figures(plain, flipped, issame, factors, protocols=('insightface', 'synface'),
                      far_targets: Sequence[float] = metrics.DEFAULT_FAR_TARGETS,
                      bins: int = DEFAULT_BINS) -> dict:
  """{protocol: {attribute: [bin rows]}} of interleaved pair embeddings [2N, D] and their
  renderer factors; the scores are those of `report.pair_scores`."""
  from synface_jax.eval.report import pair_scores  # pylint: disable=g-import-not-at-top
  issame = np.asarray(issame, bool)
  attributes = pair_attributes(factors)
  out = {}
  for protocol in protocols:
    correct = pair_decisions(plain, flipped, issame, protocol)
    scores = pair_scores(plain, flipped, protocol)
    out[protocol] = {name: binned_figures(values, quantile_edges(values, bins), correct, scores,
                                          issame, far_targets)
                     for name, values in attributes.items()}
  return out


def markdown_rows(name: str, protocol: str, by_attribute: dict, far_targets) -> list:
  """Table lines (no header) of one set and protocol."""
  keys = [metrics.far_key(f) for f in far_targets]
  fmt = lambda v: '-' if v is None else f'{v:.4f}'
  lines = []
  for attribute, rows in by_attribute.items():
    cell = attribute.replace('|', '\\|')  # A bare | would end the table cell.
    for row in rows:
      lines.append(
          f"| {name} | {protocol} | {cell} | {row['lo']:.3g} - {row['hi']:.3g} | "
          f"{row['pairs']} ({row['genuine']} / {row['impostor']}) | {fmt(row['accuracy'])} | " +
          ' | '.join(f"{fmt(row[f'tar@far={k}'])} ({fmt(row[f'far@far={k}'])})" for k in keys) +
          ' |')
  return lines


def markdown_header(far_targets) -> list:
  keys = [metrics.far_key(f) for f in far_targets]
  return ['| set | protocol | attribute | bin | pairs (genuine / impostor) | accuracy | ' +
          ' | '.join(f'TAR@FAR={k} (bin FAR)' for k in keys) + ' |',
          '|---|---|---|---|---|---|' + '---|' * len(keys)]
