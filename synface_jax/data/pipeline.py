"""tf.data streams over a prepared (ArrayRecord) TFDS identity dataset.

    example number k = start, start + 1, ...
      -> this host's k-th example: a seeded permutation of its share of the selection, a new one
         every epoch (tf.random.experimental.index_shuffle, no shuffle buffer)
      -> read serialized examples by index (TFDS data source, in chunks)
      -> parse -> decode -> augment (keyed by k) -> normalise -> batch -> prefetch

The stream is a pure function of (indices, seed, k): a run resumed at example `start` sees exactly
what the uninterrupted run would have.

Each element is {'image': float32 [H, W, 3] in [-1, 1], 'label': int32} and, for soft-labelled
sets, 'label_ids' int32 [2] and 'label_weights' float32 [2] ('label' is then the class with the
larger weight).
"""
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from synface_jax.data import augment as augment_lib

READ_CHUNK = 64  # Examples fetched from the data source per call.


def is_soft(builder) -> bool:
  """Whether the dataset's examples carry soft labels."""
  return 'label_ids' in builder.info.features


def data_source(builder, split: str = 'train'):
  """Random access to the serialized examples of `split`; ValueError unless it is ArrayRecord."""
  try:
    return builder.as_data_source(
        split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  except NotImplementedError:
    raise ValueError(f'{builder.info.full_name} at {builder.data_dir} is stored as '
                     f'{builder.info.file_format}; training reads examples by index from '
                     'ArrayRecord: prepare it with file_format=array_record (tfds build '
                     '--file_format array_record, or python -m synface_jax.data build)') from None


def _reader(builder, split: str):
  """A tf function: int64 [n] example indices -> tf.string [n] serialized examples."""
  source = data_source(builder, split)

  def read(indices):
    return np.array(source.__getitems__([int(i) for i in indices]), dtype=object)

  def read_tf(numbers, indices):
    records = tf.numpy_function(read, [indices], tf.string, stateful=False)
    return numbers, tf.ensure_shape(records, indices.shape)
  return read_tf


def examples(builder, indices, *, image_size, split: str = 'train', augment=None, seed: int = 0,
             shuffle: bool = False, repeat: bool = False, start: int = 0):
  """Unbatched stream of the examples at `indices` (see the module docstring)."""
  indices = np.asarray(indices, np.int64)
  n = len(indices)
  if not n:
    raise ValueError(f'{builder.info.full_name}: no examples to read')
  features = builder.info.features
  soft = is_soft(builder)
  table = tf.constant(indices)

  def pick(k):
    position = k % n
    if shuffle:
      position = tf.random.experimental.index_shuffle(
          position, tf.stack([tf.constant(seed, tf.int64), k // n]), n - 1)
    return k, tf.gather(table, position)

  ds = tf.data.Dataset.range(start, 2**62 if repeat else n).map(pick)
  # The data source's readers are thread-safe: chunks are read in parallel.
  ds = ds.batch(READ_CHUNK).map(_reader(builder, split), num_parallel_calls=tf.data.AUTOTUNE,
                                deterministic=True).unbatch()
  size = tuple(image_size)

  def load(number, serialized):
    ex = features.deserialize_example(serialized, decoders={'image': tfds.decode.SkipDecoding()})
    seed_pair = tf.stack([tf.constant(seed, tf.int64), number])
    out = {'image': augment_lib.apply(augment_lib.decode(ex['image']), size, augment, seed_pair),
           'label': tf.cast(ex['label'], tf.int32)}
    if soft:
      out['label_ids'] = tf.cast(ex['label_ids'], tf.int32)
      out['label_weights'] = tf.cast(ex['label_weights'], tf.float32)
    return out

  return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def train_batches(builder, indices, *, batch_size: int, image_size, augment, seed: int,
                  start: int = 0):
  """Infinite, shuffled, augmented batches of this host's examples, from example `start`."""
  ds = examples(builder, indices, image_size=image_size, augment=augment, seed=seed, shuffle=True,
                repeat=True, start=start)
  ds = ds.batch(batch_size, drop_remainder=True)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
