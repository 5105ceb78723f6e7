"""tf.data streams over a prepared (ArrayRecord) TFDS identity dataset.

    example indices (this host's share of the selection)
      -> shuffle (seeded, a new order every epoch) -> repeat
      -> read serialized examples by index (TFDS data source, in chunks)
      -> parse -> decode -> augment -> normalise -> batch -> prefetch

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


def _reader(builder, split: str):
  """A tf function: int64 [n] example indices -> tf.string [n] serialized examples."""
  source = builder.as_data_source(
      split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)

  def read(indices):
    return np.array(source.__getitems__([int(i) for i in indices]), dtype=object)

  def read_tf(indices):
    records = tf.numpy_function(read, [indices], tf.string, stateful=False)
    return tf.ensure_shape(records, indices.shape)
  return read_tf


def examples(builder, indices, *, image_size, split: str = 'train', augment=None, seed: int = 0,
             shuffle: bool = False, shuffle_buffer: int = 0, repeat: bool = False):
  """Unbatched stream of the examples at `indices` (see the module docstring)."""
  indices = np.asarray(indices, np.int64)
  if not len(indices):
    raise ValueError(f'{builder.info.full_name}: no examples to read')
  features = builder.info.features
  soft = is_soft(builder)
  ds = tf.data.Dataset.from_tensor_slices(indices)
  if shuffle:
    ds = ds.shuffle(min(shuffle_buffer, len(indices)) if shuffle_buffer else len(indices),
                    seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(READ_CHUNK).map(_reader(builder, split)).unbatch()
  ds = ds.enumerate()  # The running example number keys the example's random augmentation.
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
                  shuffle_buffer: int = 0):
  """Infinite, shuffled, augmented batches of this host's examples."""
  ds = examples(builder, indices, image_size=image_size, augment=augment, seed=seed, shuffle=True,
                shuffle_buffer=shuffle_buffer, repeat=True)
  ds = ds.batch(batch_size, drop_remainder=True)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
