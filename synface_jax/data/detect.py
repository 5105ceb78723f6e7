"""What a data path holds: the kinds of sources this package reads.

  folder   identity image folders (CASIA-WebFace layout)
  synface  SynFace's released synthetic set (identity folders, mixup labels in the file names)
  rec      insightface RecordIO: train.rec + train.idx + property (a folder or the .rec file)
  lfw      LFW: an image folder + pairs.txt (a folder holding pairs.txt, or 'ROOT:PAIRS')
  bin      insightface verification packs (a .bin file, or a folder of them)
  tfds     a prepared TFDS dataset (its version folder, holding dataset_info.json)
"""
import os

from synface_jax.data import images, synface_names

KINDS = ('folder', 'synface', 'rec', 'lfw', 'bin', 'tfds')
PAIR_KINDS = ('lfw', 'bin')


def detect(path: str) -> str:
  """The kind of source at `path`; ValueError when it is none of them."""
  path = os.fspath(path)
  if not os.path.exists(path):
    if ':' in path and os.path.isfile(path.rsplit(':', 1)[1]):
      return 'lfw'
    raise ValueError(f'{path} does not exist')
  if os.path.isfile(path):
    name = os.path.basename(path)
    if name.endswith('.bin'):
      return 'bin'
    if name.endswith('.rec'):
      return 'rec'
    if name == 'pairs.txt':
      return 'lfw'
    raise ValueError(f'{path}: not a .rec, .bin or pairs.txt file')
  entries = os.listdir(path)
  if 'dataset_info.json' in entries:
    return 'tfds'
  if 'train.rec' in entries:
    return 'rec'
  if 'pairs.txt' in entries:
    return 'lfw'
  subdirs = sorted(e for e in entries
                   if not e.startswith('.') and os.path.isdir(os.path.join(path, e)))
  if not subdirs and any(e.endswith('.bin') for e in entries):
    return 'bin'
  if not subdirs:
    raise ValueError(f'{path}: no identity sub-folders, train.rec, pairs.txt, .bin packs or '
                     'prepared TFDS dataset')
  for sub in subdirs:
    names = sorted(n for n in os.listdir(os.path.join(path, sub))
                   if n.lower().endswith(images.IMAGE_EXTENSIONS))
    if names:
      return 'synface' if synface_names.parse(names[0]) else 'folder'
  return 'folder'


def resolve(path: str, kind: str = 'auto') -> str:
  """`kind` checked against KINDS, or detected when 'auto'."""
  if kind == 'auto':
    return detect(path)
  if kind not in KINDS:
    raise ValueError(f'unknown data kind {kind!r}; one of {KINDS} or auto')
  return kind
