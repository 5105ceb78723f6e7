"""An identity image folder (CASIA-WebFace layout: one sub-folder per identity) as a tf.data stream.

TensorFlow is imported inside the functions that build the pipeline, so importing this module
(and scanning a folder) does not need it.
"""
import dataclasses
import os
import warnings

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


@dataclasses.dataclass(frozen=True)
class IdentityFolder:
  files: tuple[str, ...]
  labels: tuple[int, ...]
  identities: tuple[str, ...]  # folder name of each class id

  @property
  def num_classes(self) -> int:
    return len(self.identities)


def scan(root: str, num_identities: int = 0, images_per_identity: int = 0) -> IdentityFolder:
  """The first N identity folders (sorted by name) and the first S images (sorted) of each.

  N = 0 or S = 0 means all. Empty identity folders are skipped with a warning that names them.
  """
  if not os.path.isdir(root):
    raise ValueError(f'real.path={root!r} is not a directory')
  folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  files, labels, identities, empty = [], [], [], []
  for folder in folders:
    if num_identities and len(identities) == num_identities:
      break
    names = sorted(f for f in os.listdir(os.path.join(root, folder))
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if images_per_identity:
      names = names[:images_per_identity]
    if not names:
      empty.append(folder)
      continue
    files += [os.path.join(root, folder, n) for n in names]
    labels += [len(identities)] * len(names)
    identities.append(folder)
  if empty:
    warnings.warn(f'{root}: skipped {len(empty)} identity folders without images: {empty[:10]}')
  if len(identities) < 2:
    raise ValueError(f'real.path={root!r} has {len(identities)} identity folders with images; '
                     'need at least 2 (one sub-folder of images per identity)')
  if num_identities and len(identities) < num_identities:
    warnings.warn(f'{root}: asked for {num_identities} identities, found {len(identities)}')
  return IdentityFolder(tuple(files), tuple(labels), tuple(identities))


def fit_to_size(image, size):
  """Centre-crops a [H, W, 3] image tensor to the aspect of size=(h, w), then resizes to it."""
  import tensorflow as tf
  h, w = size
  shape = tf.shape(image)
  ih, iw = shape[0], shape[1]
  # Crop the larger relative side: keep ih/iw == h/w.
  crop_h = tf.minimum(ih, iw * h // w)
  crop_w = tf.minimum(iw, ih * w // h)
  image = tf.image.crop_to_bounding_box(image, (ih - crop_h) // 2, (iw - crop_w) // 2, crop_h, crop_w)
  return tf.cond(
      tf.logical_and(crop_h == h, crop_w == w),
      lambda: tf.cast(image, tf.float32),
      lambda: tf.image.resize(image, (h, w), antialias=True))


def make_dataset(folder: IdentityFolder, *, batch_size: int, image_size, seed: int, flip: bool,
                 shuffle_buffer: int, process_index: int = 0, process_count: int = 1):
  """Infinite, shuffled, augmented batches {'image': float32 in [-1, 1], 'label': int32} for this host."""
  import tensorflow as tf
  ds = tf.data.Dataset.from_tensor_slices((list(folder.files), list(folder.labels)))
  ds = ds.shard(process_count, process_index)
  ds = ds.shuffle(min(shuffle_buffer, len(folder.files)), seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().enumerate()  # The running example index seeds the random augmentation.

  def load(index, example):
    path, label = example
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = fit_to_size(image, image_size)
    if flip:
      image = tf.image.stateless_random_flip_left_right(
          image, seed=tf.stack([tf.cast(seed, tf.int64), index]))
    image = (image / 255.0 - 0.5) / 0.5
    return {'image': tf.ensure_shape(image, (*image_size, 3)), 'label': tf.cast(label, tf.int32)}

  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)
