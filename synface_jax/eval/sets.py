"""Evaluation sets as arrays: verification pairs and labelled (identification) sets.

Pair sources (images uint8 [2N, H, W, 3], rows 2k and 2k + 1 are pair k, issame bool [N]):
  lfw.bin             an insightface verification pack
  ROOT:pairs.txt      LFW's layout
  pairs.npz           `images` and `issame` (what `python -m synface_jax.evaluate bin` writes),
                      optionally `factor_pose`, `factor_lighting`, `factor_expression`
  synthetic[:N]       N pairs (default 6,000) rendered from held-out identities of a generator

Labelled sources (images uint8 [M, H, W, 3], labels int [M]):
  DIR                 one sub-folder per identity (CASIA-WebFace layout)
  DIR/train.rec, DIR  an insightface RecordIO set (train.rec + train.idx + property)
  faces.npz           `images` and `labels`
  synthetic:NxM       N held-out identities x M faces each

.bin packs and pairs.txt are read by `synface_jax.data.pair_files`, the parsers the TFDS pair
builders use too.

Synthetic sources need a `Renderer`: a generator, its params, the first held-out identity id and a
seed (`renderer_from_config`).
"""
import dataclasses
import os
import zipfile
from typing import Any, Tuple

import numpy as np

from synface_jax.eval import protocols

DEFAULT_SYNTHETIC_PAIRS = 6000


@dataclasses.dataclass
class Renderer:
  """What synthetic sets are rendered with."""
  generator: Any
  params: Any
  first_identity: int   # Held-out identities start here (the training pool is 0 .. this - 1).
  seed: int = 0
  name: str = ''


def renderer_from_config(config, seed: int = 0) -> Renderer:
  """A Renderer for `config.generator` (held-out ids after `config.synthetic.num_identities`)."""
  import jax
  from synface_jax.generators import get_generator
  generator = get_generator(config.generator)
  first = getattr(generator, 'num_identities', None)
  if 'synthetic' in config and 'num_identities' in config.synthetic:
    first = int(config.synthetic.num_identities)
  params = generator.init(jax.random.key(config.get('seed', 0) + 2))
  return Renderer(generator, params, int(first or 10_000), seed, str(config.generator.name))


def set_name(source: str) -> str:
  """'lfw' for lfw.bin or /data/lfw:pairs.txt, 'synthetic' for synthetic:600, 'synthetic_100x10'
  for synthetic:100x10, 'casia' for /data/casia."""
  kind, _, spec = source.partition(':')
  if kind == 'synthetic':
    return f'synthetic_{spec.lower()}' if 'x' in spec.lower() else 'synthetic'
  root, sep, _ = source.rpartition(':')
  path = root if sep and root else source
  path = path.rstrip('/\\')
  if os.path.basename(path) == 'train.rec':
    path = os.path.dirname(path)
  return os.path.splitext(os.path.basename(path))[0] or path


def _load_npz(path: str, keys) -> dict:
  try:
    with np.load(path, allow_pickle=False) as data:
      missing = [k for k in keys if k not in data.files]
      if missing:
        raise ValueError(f'{path}: missing key {missing[0]!r} (has {sorted(data.files)})')
      return {k: data[k] for k in keys}
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path}: cannot read .npz ({e})') from None


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


def _need_renderer(renderer, source):
  if renderer is None:
    raise ValueError(f'{source}: synthetic sets need a generator')


FACTOR_KEYS = ('pose', 'lighting', 'expression')  # What the attribute analysis reads.


def load_pairs(source: str, renderer: Renderer | None = None,
               progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
  """(images uint8 [2N, H, W, 3], issame bool [N]) of a pair source (module docstring).

  progress: log progress lines while decoding a .bin pack or pairs.txt images.
  Raises ValueError naming the source for any file that cannot be read.
  """
  return load_pairs_with_factors(source, renderer, progress)[:2]


def load_pairs_with_factors(source: str, renderer: Renderer | None = None,
                            progress: bool = False):
  """(images, issame, factors) of a pair source: factors is {'pose': [2N, 3], 'lighting':
  [2N, 27], 'expression': [2N, 64]} (numpy) for rendered pairs, and for an .npz holding
  `factor_pose`, `factor_lighting` and `factor_expression`; None for real pairs.

  Raises ValueError naming the source for any file that cannot be read.
  """
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  with file_errors.reading(source):
    return _load_pairs_with_factors(source, renderer, progress)


def _load_pairs_with_factors(source, renderer, progress):
  loaded = _load_pair_arrays(source, renderer, progress)
  warning = unmixed_folds(loaded[1], source)
  if warning:
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.warning('%s', warning)
  return loaded


def unmixed_folds(issame, source: str) -> str | None:
  """A one-line warning when one of the 10-fold protocols' contiguous folds
  (`protocols.insightface_fold_bounds`; SynFace's differ by at most one pair) holds only same or
  only different pairs, as in a file that lists every same pair first; None when each fold mixes
  both.

  The 10-fold accuracy then picks each threshold on folds of another kind and says little (below
  50% is possible); AUC, EER and TAR@FAR use all pairs at once and are unaffected.
  """
  issame = np.asarray(issame, bool)
  bounds = protocols.insightface_fold_bounds(issame.size)
  if issame.size < len(bounds) or issame.all() or not issame.any():
    return None
  for k, (start, stop) in enumerate(bounds):
    block = issame[start:stop]
    if block.all() or not block.any():
      kind = 'same' if block.all() else 'different'
      return (f'{source}: fold {k + 1} of {len(bounds)} (pairs in file order) holds only {kind} '
              f'pairs; the 10-fold accuracy expects every fold to mix both, as LFW\'s pairs do, so '
              f'it will mislead (AUC and EER are not affected): shuffle the pairs')
  return None


def _load_pair_arrays(source, renderer, progress):
  kind, _, count = source.partition(':')
  if kind == 'synthetic':
    _need_renderer(renderer, source)
    import jax
    from synface_jax.generators.pairs import synthetic_pairs
    try:
      num = int(count) if count else DEFAULT_SYNTHETIC_PAIRS
    except ValueError:
      raise ValueError(f'{source}: expected synthetic:N with N pairs, a multiple of 20') from None
    images, issame, factors = synthetic_pairs(
        renderer.generator, renderer.params, jax.random.key(renderer.seed), num,
        first_identity=renderer.first_identity, return_factors=True)
    return images, issame, {k: np.asarray(getattr(factors, k)) for k in FACTOR_KEYS}
  if source.endswith('.npz'):
    data = _load_npz(source, ('images', 'issame'))
    images, issame = data['images'], checked_issame(data['issame'], source)
    if images.ndim != 4 or images.shape[0] != 2 * issame.size:
      raise ValueError(f'{source}: {images.shape[0]} images for {issame.size} pairs; expected '
                       f'{2 * issame.size} images [2N, H, W, 3]')
    factors = None
    with np.load(source, allow_pickle=False) as archive:
      if all(f'factor_{k}' in archive.files for k in FACTOR_KEYS):
        factors = {k: archive[f'factor_{k}'] for k in FACTOR_KEYS}
    if factors is not None and any(v.shape[0] != images.shape[0] for v in factors.values()):
      raise ValueError(f'{source}: factor_* arrays must have one row per image '
                       f'({images.shape[0]})')
    return images, issame, factors
  from synface_jax.data import pair_files  # pylint: disable=g-import-not-at-top
  return (*pair_files.load_pair_source(source, progress), None)


def _parse_grid(source: str) -> Tuple[int, int]:
  spec = source.partition(':')[2].lower()
  try:
    n, m = (int(v) for v in spec.split('x'))
  except ValueError:
    raise ValueError(f'{source}: expected synthetic:NxM (N identities x M faces)') from None
  if n < 2 or m < 2:
    raise ValueError(f'{source}: identification needs at least 2 identities x 2 faces')
  return n, m


def render_labelled(renderer: Renderer, num_identities: int, per_identity: int,
                    batch_size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
  """N held-out identities x M faces (fresh nuisance each), labels 0 .. N - 1."""
  import jax
  from synface_jax.generators.pairs import render_identities
  labels = np.repeat(np.arange(num_identities), per_identity)
  images = render_identities(renderer.generator, renderer.params,
                             jax.random.fold_in(jax.random.key(renderer.seed), 7),
                             renderer.first_identity + labels, batch_size)
  return images, labels


def _decode_examples(examples, report, source) -> Tuple[np.ndarray, np.ndarray]:
  from synface_jax.data import images as image_io
  pixels, labels = [], []
  for _, example in examples:
    pixels.append(image_io.decode(example['image']))
    labels.append(int(example['label']))
  report.warn()
  if not pixels:
    raise ValueError(f'{source}: no usable images')
  return image_io.stack(pixels, source), np.array(labels, np.int64)


def load_labelled(source: str, renderer: Renderer | None = None) -> Tuple[np.ndarray, np.ndarray]:
  """Images and labels of a labelled source (see _load_labelled); ValueError naming it for any
  file that cannot be read."""
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  with file_errors.reading(source):
    return _load_labelled(source, renderer)


def _load_labelled(source: str, renderer: Renderer | None = None) -> Tuple[np.ndarray, np.ndarray]:
  """(images uint8 [M, H, W, 3], labels int64 [M]) of a labelled source (module docstring)."""
  if source.split(':')[0] == 'synthetic':
    _need_renderer(renderer, source)
    return render_labelled(renderer, *_parse_grid(source))
  if source.endswith('.npz'):
    data = _load_npz(source, ('images', 'labels'))
    images, labels = data['images'], data['labels'].reshape(-1)
    if images.ndim != 4 or images.shape[0] != labels.size:
      raise ValueError(f'{source}: {images.shape} images for {labels.size} labels')
    return images, labels
  is_rec = source.endswith('.rec') or os.path.isfile(os.path.join(source, 'train.rec'))
  if is_rec:
    from synface_jax.data import source_rec
    rs = source_rec.open_set(source)
    return _decode_examples(source_rec.examples(rs), rs.report, source)
  if os.path.isdir(source):
    from synface_jax.data import source_folder
    fs = source_folder.list_folders(source)
    return _decode_examples(source_folder.examples(fs), fs.report, source)
  raise ValueError(f'{source}: not an identity folder, a RecordIO set, an .npz with images and '
                   'labels, or synthetic:NxM')
