"""Verification pair sets as examples: LFW (image folder + pairs.txt) and insightface `.bin` packs.

Both read their files with `pair_files`, the one parser of each format, which the evaluator uses
too: a pairs.txt that names a missing image, a damaged image or a malformed pack stops with an error
naming the file (evaluation sets are not thinned).
"""
import os
from typing import Iterator

import numpy as np

from synface_jax.data import pair_files

CHUNK = 256  # Pairs decoded at a time.


def locate_lfw(path: str) -> tuple[str, str]:
  """(image root, pairs.txt) for 'ROOT:PAIRS' or a folder holding pairs.txt.

  In a folder, the images are in its sub-folder `lfw` when there is one, else in the folder itself.
  """
  path = os.fspath(path)
  if not os.path.exists(path) and ':' in path:
    root, pairs = path.rsplit(':', 1)
  elif os.path.isfile(path):
    root, pairs = os.path.dirname(path), path
  else:
    root, pairs = path, os.path.join(path, 'pairs.txt')
    if os.path.isdir(os.path.join(path, 'lfw')):
      root = os.path.join(path, 'lfw')
  if not os.path.isfile(pairs):
    raise ValueError(f'{path}: no pairs file {pairs}')
  if not os.path.isdir(root):
    raise ValueError(f'{path}: no image folder {root}')
  return root, pairs


def lfw_examples(path: str, limit: int = 0) -> Iterator[tuple[str, dict]]:
  """Yields (key, {'image1', 'image2': uint8 [H, W, 3], 'issame': bool}) in pairs.txt order.

  pairs.txt is checked completely (every named file must exist) before the first pair.
  """
  root, pairs = locate_lfw(path)
  paths1, paths2, issame = pair_files.load_pairs_txt(root, pairs)
  n = min(limit, len(issame)) if limit else len(issame)
  for start in range(0, n, CHUNK):
    stop = min(start + CHUNK, n)
    pixels, same = pair_files.load_pair_images(paths1[start:stop], paths2[start:stop],
                                               issame[start:stop])
    for k in range(stop - start):
      yield f'{start + k:06d}', {'image1': pixels[2 * k], 'image2': pixels[2 * k + 1],
                                 'issame': bool(same[k])}


def lfw_identities(path: str) -> tuple[int, int]:
  """(distinct identities, distinct image files) that LFW's pairs.txt names."""
  root, pairs = locate_lfw(path)
  paths1, paths2, _ = pair_files.load_pairs_txt(root, pairs)
  files = set(paths1) | set(paths2)
  return len({os.path.basename(os.path.dirname(p)) for p in files}), len(files)


def bin_files(path: str) -> list[str]:
  """The `.bin` packs at `path`: the file itself, or every `.bin` in the folder (sorted)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith('.bin'))
    if not files:
      raise ValueError(f'{path}: no .bin verification packs')
    return files
  if not os.path.isfile(path):
    raise ValueError(f'{path}: no such .bin verification pack')
  return [path]


def split_name(bin_path: str) -> str:
  """The split of a pack: its file name without `.bin`, as a TFDS split name."""
  stem = os.path.splitext(os.path.basename(bin_path))[0]
  return ''.join(c if c.isalnum() else '_' for c in stem).lower()


def bin_examples(bin_path: str, limit: int = 0) -> Iterator[tuple[str, dict]]:
  """Yields (key, {'image1', 'image2': uint8 [H, W, 3], 'issame': bool}) of one `.bin` pack."""
  pixels, issame = pair_files.load_bin(bin_path, progress=True)
  n = min(limit, len(issame)) if limit else len(issame)
  for k in range(n):
    yield f'{k:06d}', {'image1': pixels[2 * k], 'image2': pixels[2 * k + 1],
                       'issame': bool(issame[k])}


def interleave(examples) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [2N, H, W, 3] with pair k at rows 2k and 2k + 1, issame bool [N])."""
  pixels, same = [], []
  for _, e in examples:
    pixels += [e['image1'], e['image2']]
    same.append(e['issame'])
  return np.stack(pixels), np.asarray(same, bool)
