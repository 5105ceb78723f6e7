"""Real training data: the one place where the train loop gets its real batches from.

`real_dataset(config, mesh)` prepares `config.real.path` as a TFDS dataset (identity image folders,
insightface RecordIO, SynFace's released set, or an already prepared TFDS dataset; see `detect`),
selects the first N identities x first S images (`real.num_identities`, `real.images_per_identity`)
and streams this host's share of them as global batches on the mesh. Everything that can be wrong
with the data is found here, before training starts.

TensorFlow is imported inside the functions: the train step imports this package without it.
"""
import atexit
import dataclasses
from typing import Iterator
import weakref

import jax
import ml_collections
import numpy as np

from synface_jax import seeds, sharding


@dataclasses.dataclass
class RealData:
  """A real identity dataset streamed as global batches on the mesh.

  Batches are {'image': float32 [B, H, W, 3] in [-1, 1], 'label': int32 [B]} and, when the source
  carries soft labels (SynFace's released set), also 'label_ids' int32 [B, 2] and 'label_weights'
  float32 [B, 2] ('label' is then the class with the larger weight).
  """
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  builder: object          # The prepared TFDS builder.
  kind: str                # What real.path holds (see synface_jax.data.detect).
  indices: np.ndarray      # Selected example indices, in dataset order (all hosts).
  num_classes: int
  soft: bool               # Whether batches carry label_ids / label_weights.

  @property
  def num_images(self) -> int:
    return len(self.indices)

  def host_indices(self, process_index: int | None = None,
                   process_count: int | None = None) -> np.ndarray:
    from synface_jax.data import select
    return select.host_shard(
        self.indices, jax.process_index() if process_index is None else process_index,
        jax.process_count() if process_count is None else process_count)

  def iterator(self, start_step: int = 0) -> Iterator[dict]:
    """Global batches from step `start_step` on: a resumed run continues the same stream."""
    from synface_jax.data import pipeline
    c = self.config
    per_host, rest = divmod(c.optim.batch_size, jax.process_count())
    if rest:
      raise ValueError(f'optim.batch_size={c.optim.batch_size} is not divisible by the '
                       f'{jax.process_count()} processes')
    ds = pipeline.train_batches(
        self.builder, self.host_indices(), batch_size=per_host,
        image_size=tuple(c.model.input_size), augment=augmentation(c),
        seed=seeds.seed(c.seed, 'data', jax.process_index()), start=start_step * per_host)
    return GlobalBatches(ds, self.mesh)


class GlobalBatches:
  """Iterator over a host's tf.data batches, assembled into global arrays on the mesh.

  Open iterators are closed when Python exits, so that tf.data's reader threads stop first.
  """
  _open = weakref.WeakSet()

  def __init__(self, dataset, mesh):
    self._batches = dataset.as_numpy_iterator()
    self._mesh = mesh
    GlobalBatches._open.add(self)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._batches is None:
      raise StopIteration
    return sharding.host_local_to_global(next(self._batches), self._mesh)

  def close(self) -> None:
    self._batches = None

  @classmethod
  def close_all(cls) -> None:
    for it in list(cls._open):
      it.close()


atexit.register(GlobalBatches.close_all)


def augmentation(config: ml_collections.ConfigDict):
  """The training augmentation the `real` block asks for."""
  from synface_jax.data import augment
  r = config.real
  return augment.Augment(flip=bool(r.flip), zoom_crop=float(r.zoom_crop), zoom=float(r.zoom),
                         random_erasing=float(r.random_erasing))


def real_dataset(config: ml_collections.ConfigDict, mesh) -> RealData:
  """Prepares (once) and selects the real set; raises ValueError naming what is wrong."""
  from synface_jax.data import detect, labels, pipeline, prepare, select
  r = config.real
  kind = detect.resolve(r.path, r.source)
  if kind in detect.PAIR_KINDS:
    raise ValueError(f'real.path={r.path!r} is a verification pair set ({kind}); train on identity '
                     'data and list pair sets in eval.pairs')
  builder, kind = prepare.prepare(r.path, kind, r.data_dir, jax.process_index(),
                                  jax.process_count())
  pipeline.data_source(builder)  # Readable by index, or a clear error now.
  info = labels.read(builder)
  check_skipped(builder.info.metadata or {}, len(info.labels), r.path, r.max_skipped_fraction)
  chosen = select.select(info.labels, info.num_classes, r.num_identities, r.images_per_identity,
                         info.partners, source=r.path)
  classes_used = len(np.unique(info.labels[chosen.indices])) if len(chosen.indices) else 0
  if classes_used < 2:
    raise ValueError(f'real.path={r.path!r}: the selection has {len(chosen.indices)} images of '
                     f'{classes_used} identities; need at least 2 identities')
  return RealData(config, mesh, builder, kind, chosen.indices, chosen.num_classes,
                  soft=info.partners is not None)


NOT_IMAGES = ('not an image file', 'empty identity folder')  # Skipped, but never an image lost.


def check_skipped(metadata: dict, kept: int, path: str, limit: float) -> None:
  """ValueError when more than `limit` of the images the source holds could not be used (corrupt,
  truncated or unreadable files and records, per the prepared dataset's report); counts and
  reasons in the message. Files that are not images and empty folders do not count."""
  lost = [f for f in metadata.get('skipped_files', [])
          if not str(f.get('reason', '')).startswith(NOT_IMAGES)]
  total = kept + len(lost)
  if not lost or len(lost) <= limit * total:
    return
  reasons = {}
  for f in lost:
    head = str(f.get('reason', '')).split(':')[0]
    reasons[head] = reasons.get(head, 0) + 1
  why = ', '.join(f'{n} {reason}' for reason, n in sorted(reasons.items(), key=lambda x: -x[1]))
  raise ValueError(
      f'real.path={path!r}: {len(lost)} of {total} images could not be used '
      f'({len(lost) / total:.1%} > real.max_skipped_fraction={limit:g}: {why}); repair the '
      f'source (python -m synface_jax.data stats {path} lists them) or raise '
      f'real.max_skipped_fraction')
