"""What a data path holds (`stats`) and its decoded images in dataset order (`dump`).

Both read the source itself (no prepared dataset is written), through the same example iterators
the TFDS builders use, so they report exactly what a build would keep and skip.
"""
import os

import numpy as np

from synface_jax import progress
from synface_jax.data import (detect, images, pair_files, source_folder, source_pairs,
                              source_rec)


def _train_set(path: str, kind: str):
  if kind == 'rec':
    return source_rec.open_set(path), source_rec.examples
  return source_folder.list_folders(path, soft=kind == 'synface'), source_folder.examples


def stats(path: str, kind: str = 'auto') -> dict:
  """Kind, identities, images (or pairs), and skipped / converted files with reasons."""
  path = os.fspath(path)
  kind = detect.resolve(path, kind)
  out = {'kind': kind, 'path': path}
  if kind in ('folder', 'synface', 'rec'):
    src, examples = _train_set(path, kind)
    labels, soft = [], 0
    for _, example in progress.iterate(examples(src), f'stats {path}', src.expected_images(),
                                       unit='images'):
      labels.append(example['label'])
      soft += 'label_ids' in example and example['label_ids'][1] >= 0
    out.update(identities=len(set(labels)), images=len(labels), num_classes=src.num_classes,
               image_size=list(src.size) if src.size else None)
    if kind == 'synface':
      out['mixed_images'] = int(soft)
    out.update(src.report.to_json())
  elif kind == 'tfds':
    out.update(_tfds_stats(path))
  elif kind == 'lfw':
    out.update(_lfw_stats(path))
  else:
    out.update(_bin_stats(path))
  return out


def _tfds_stats(path: str) -> dict:
  from synface_jax.data import prepare
  builder, _ = prepare.builder_for(path, 'tfds')
  info = builder.info
  meta = dict(info.metadata or {})
  splits = {name: split.num_examples for name, split in info.splits.items()}
  out = {'name': info.full_name, 'splits': splits}
  if 'labels' in meta:
    out.update(identities=len(set(meta['labels'])), images=len(meta['labels']),
               num_classes=meta.get('num_classes'), image_size=meta.get('image_size'))
    for key in ('skipped', 'skipped_reasons', 'skipped_files', 'converted', 'converted_files'):
      if key in meta:
        out[key] = meta[key]
  else:
    out['images'] = sum(splits.values())
  return out


def _lfw_stats(path: str) -> dict:
  root, pairs = source_pairs.locate_lfw(path)
  paths1, paths2, issame = pair_files.load_pairs_txt(root, pairs)
  files = sorted(set(paths1) | set(paths2))
  report = images.Report(path)
  for f in progress.iterate(files, f'stats {path}', len(files), unit='images'):
    try:
      images.check_image(images.read_file(f))
    except images.BadImage as e:
      report.skip(os.path.relpath(f, root), str(e))
  identities = {os.path.basename(os.path.dirname(f)) for f in files}
  return {'pairs': int(len(issame)), 'same': int(issame.sum()), 'identities': len(identities),
          'images': len(files), **report.to_json()}


def _bin_stats(path: str) -> dict:
  packs = {}
  for f in source_pairs.bin_files(path):
    pixels, issame = pair_files.load_bin(f, progress=True)
    packs[source_pairs.split_name(f)] = {'pairs': int(len(issame)), 'same': int(issame.sum()),
                                         'images': int(len(pixels)),
                                         'image_size': list(pixels.shape[1:3])}
  out = {'pairs': sum(p['pairs'] for p in packs.values()),
         'images': sum(p['images'] for p in packs.values()), 'skipped': 0}
  if len(packs) > 1 or os.path.isdir(path):
    out['packs'] = packs
  else:
    out.update(next(iter(packs.values())))
  return out


def dump(path: str, out: str, limit: int = 0, kind: str = 'auto') -> dict:
  """Writes `out` (.npz): images uint8 [N, H, W, 3] RGB with labels (or issame), in dataset order.

  Identity sets also get `keys` (file or record of each image) and, with soft labels, `label_ids`
  and `label_weights` [N, 2]. Pair sets get images [2N, ...] (pair k at rows 2k, 2k + 1) and
  issame [N]. Returns what was written (shapes) with the kind.
  """
  path = os.fspath(path)
  kind = detect.resolve(path, kind)
  if kind in ('folder', 'synface', 'rec'):
    src, examples = _train_set(path, kind)
    arrays = _identity_arrays(list(examples(src, limit=limit)))
    src.report.warn()
  elif kind == 'tfds':
    arrays = _tfds_arrays(path, limit)
  elif kind == 'lfw':
    pixels, issame = source_pairs.interleave(source_pairs.lfw_examples(path, limit))
    arrays = {'images': pixels, 'issame': issame}
  else:
    files = source_pairs.bin_files(path)
    if len(files) > 1:
      raise ValueError(f'{path} holds {len(files)} .bin packs; dump one file at a time')
    pixels, issame = source_pairs.interleave(source_pairs.bin_examples(files[0], limit))
    arrays = {'images': pixels, 'issame': issame}
  np.savez(out, **arrays)
  return {'kind': kind, 'path': path, 'out': out,
          **{k: list(v.shape) for k, v in arrays.items()}}


def _identity_arrays(items) -> dict:
  if not items:
    raise ValueError('no usable images to dump')
  decoded = [images.decode(e['image']) for _, e in items]
  shapes = {d.shape for d in decoded}
  if len(shapes) > 1:
    raise ValueError(f'images of different sizes {sorted(shapes)}; cannot stack them')
  arrays = {'images': np.stack(decoded),
            'labels': np.asarray([e['label'] for _, e in items], np.int64),
            'keys': np.asarray([k for k, _ in items])}
  if 'label_ids' in items[0][1]:
    arrays['label_ids'] = np.asarray([e['label_ids'] for _, e in items], np.int64)
    arrays['label_weights'] = np.asarray([e['label_weights'] for _, e in items], np.float32)
  return arrays


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _tfds_arrays(path: str, limit: int) -> dict:
  import tensorflow_datasets as tfds
  from synface_jax.data import prepare
  builder, _ = prepare.builder_for(path, 'tfds')
  split = 'train' if 'train' in builder.info.splits else next(iter(builder.info.splits))
  features = builder.info.features
  image_keys = [k for k in ('image', 'image1', 'image2') if k in features]
  source = builder.as_data_source(split, decoders={k: tfds.decode.SkipDecoding()
                                                   for k in image_keys})
  n = min(limit, len(source)) if limit else len(source)
  items = [source[i] for i in range(n)]
  if 'image' in features:
    return _identity_arrays([(_text(e.get('key', i)), e) for i, e in enumerate(items)])
  pixels = [images.decode(e[k]) for e in items for k in ('image1', 'image2')]
  return {'images': np.stack(pixels), 'issame': np.asarray([e['issame'] for e in items], bool)}
