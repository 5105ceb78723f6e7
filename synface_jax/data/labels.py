"""The labels of a prepared identity dataset, without decoding its images.

Datasets built by `synface_jax.data.builders` record every example's label (and mixup partner) in
their metadata. Other TFDS datasets with 'image' and 'label' features are read once for them.
"""
import dataclasses
import warnings

import numpy as np
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class Labels:
  """Per-example classes of a split, in dataset order."""
  labels: np.ndarray              # int64 [M]
  num_classes: int
  partners: np.ndarray | None     # int64 [M] second class of soft labels (-1 = none); None = hard


def read(builder, split: str = 'train') -> Labels:
  """The labels of `split`; ValueError when the dataset is not an identity dataset."""
  info = builder.info
  if 'image' not in info.features or 'label' not in info.features:
    raise ValueError(f'{info.full_name}: an identity dataset needs image and label features, '
                     f'found {sorted(info.features.keys())}')
  if split not in info.splits:
    raise ValueError(f'{info.full_name}: no {split!r} split (has {list(info.splits.keys())})')
  meta = info.metadata or {}
  soft = 'label_ids' in info.features
  if 'labels' in meta and len(meta['labels']) == info.splits[split].num_examples:
    labels = np.asarray(meta['labels'], np.int64)
    partners = np.asarray(meta['partners'], np.int64) if soft else None
  else:
    warnings.warn(f'{info.full_name}: no label list in its metadata; reading every example once')
    labels, partners = _scan(builder, split, soft)
  num_classes = meta.get('num_classes')
  if num_classes is None:
    feature = info.features['label']
    num_classes = getattr(feature, 'num_classes', None) or int(labels.max(initial=-1)) + 1
  return Labels(labels, int(num_classes), partners)


def _scan(builder, split: str, soft: bool):
  try:
    source = builder.as_data_source(
        split, deserialize_method=tfds.decode.DeserializeMethod.DESERIALIZE_NO_DECODE)
  except NotImplementedError as e:
    raise ValueError(f'{builder.info.full_name}: training reads ArrayRecord datasets by index; '
                     f'prepare it with file_format=array_record ({e})') from None
  labels, partners = [], []
  for example in source:
    labels.append(int(np.asarray(example['label']).reshape(-1)[0]))
    if soft:
      partners.append(int(np.asarray(example['label_ids']).reshape(-1)[1]))
  return np.asarray(labels, np.int64), (np.asarray(partners, np.int64) if soft else None)
