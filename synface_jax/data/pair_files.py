"""The readers of verification pair files: insightface `.bin` packs and LFW's pairs.txt.

Each format has exactly one parser, here. The TFDS pair builders (`builders.LfwPairs`,
`builders.VerificationBins`, through `source_pairs`), `python -m synface_jax.data stats` and the
evaluator (`synface_jax.eval.sets`) all call it. The evaluator does not read the sets through the
builders: preparing a TFDS dataset needs TensorFlow, which the core (training on synthetic faces,
embedding, evaluation) runs without, and it would write a second copy of every set to evaluate.

Images are decoded by `images.decode` (Pillow), the same pixels as training's tf.data decoder.
A file that cannot be read stops with a ValueError naming it (evaluation sets are not thinned).
"""
import os
from typing import Any, List, Sequence, Tuple

import numpy as np

from synface_jax import safe_pickle
from synface_jax.data import images as image_io


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
  pixels = [image_io.decode(_as_jpeg_bytes(item, path, i), f'{path} image {i}')
            for i, item in items]
  return image_io.stack(pixels, path), issame


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
  pixels = []
  pairs = zip(paths1, paths2)
  if progress:
    from synface_jax import progress as progress_lib  # pylint: disable=g-import-not-at-top
    pairs = progress_lib.iterate(pairs, 'decode pair images', len(paths1), unit='pairs')
  for a, b in pairs:
    for path in (a, b):
      path = os.fspath(path)
      try:
        data = image_io.read_file(path)  # Never waits on a FIFO named like an image.
      except image_io.BadImage as e:
        raise ValueError(f'{path}: {e}') from None
      pixels.append(image_io.decode(data, path))
  return image_io.stack(pixels, 'pair images'), issame


def load_pair_source(source: str, progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
  """Interleaved pair images and issame from a '.bin' pack or an 'IMAGE_ROOT:pairs.txt' source."""
  if source.endswith('.bin'):
    return load_bin(source, progress)
  root, sep, pairs_txt = source.rpartition(':')
  if not sep or not root:
    raise ValueError(f'eval.pairs entry {source!r}: expected a .bin file or IMAGE_ROOT:pairs.txt')
  paths1, paths2, issame = load_pairs_txt(root, pairs_txt)
  return load_pair_images(paths1, paths2, issame, progress)
