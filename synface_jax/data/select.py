"""Which examples of a prepared identity dataset are trained on, and which host reads which.

SynFace's Mix_N_S (and Real_N_S) take the first N identities and the first S images of each, in
the dataset's order; the stream repeats, which oversamples them to the synthetic set's length.
Images whose soft label names a class outside the first N cannot be trained on and are left out
(counted, with a warning). Hosts then take every process_count-th selected example.
"""
import dataclasses
import warnings

import numpy as np


@dataclasses.dataclass(frozen=True)
class Selection:
  """Example indices (in dataset order) and the number of classes they are labelled with."""
  indices: np.ndarray
  num_classes: int
  excluded: int = 0  # Images of the chosen identities whose partner class is not chosen.


def rank_in_class(labels: np.ndarray) -> np.ndarray:
  """For each example, how many examples of its class come before it."""
  labels = np.asarray(labels, np.int64)
  order = np.argsort(labels, kind='stable')
  sorted_labels = labels[order]
  first = np.searchsorted(sorted_labels, sorted_labels, side='left')
  rank = np.empty_like(labels)
  rank[order] = np.arange(labels.size) - first
  return rank


def select(labels, num_classes: int, num_identities: int = 0, images_per_identity: int = 0,
           partners=None, source: str = 'data') -> Selection:
  """The first N classes x first S images of each (0 = all).

  Args:
    labels: [M] class of each example, in dataset order.
    num_classes: classes of the whole set.
    num_identities: N; 0 = all classes.
    images_per_identity: S; 0 = all images of each chosen class.
    partners: optional [M] second class of soft-labelled examples (-1 = none).
    source: named in warnings.
  """
  labels = np.asarray(labels, np.int64)
  outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if len(outside):
    warnings.warn(f'{source}: left out {len(outside)} images whose label is outside '
                  f'[0, {num_classes}) (examples {outside[:10].tolist()})')
  n = num_classes
  if num_identities:
    if num_identities > num_classes:
      warnings.warn(f'{source}: asked for {num_identities} identities, the set has {num_classes}')
    n = min(num_identities, num_classes)
  keep = (labels >= 0) & (labels < n)
  excluded = 0
  if partners is not None and len(partners):
    partners = np.asarray(partners, np.int64)
    outside = keep & (partners >= n)
    excluded = int(outside.sum())
    if excluded:
      warnings.warn(f'{source}: left out {excluded} images of the first {n} identities whose '
                    f'mixup partner is not among them')
    keep &= ~outside
  if images_per_identity:
    ranks = np.zeros_like(labels)
    ranks[keep] = rank_in_class(labels[keep])
    keep &= ranks < images_per_identity
  return Selection(np.flatnonzero(keep), n, excluded)


def host_shard(indices: np.ndarray, process_index: int, process_count: int) -> np.ndarray:
  """The examples host `process_index` reads: every process_count-th, starting at its index."""
  if len(indices) < process_count:
    raise ValueError(f'{len(indices)} training examples cannot be split over {process_count} '
                     'hosts')
  return np.asarray(indices)[process_index::process_count]
