"""Training augmentations of SynFace and insightface, as stateless tf.data ops.

Every random choice is keyed by a per-example seed, so a stream is reproducible from its seed.
Order (SynFace's): fit to the input size, random zoom-crop, horizontal flip, normalisation
(x / 255 - 0.5) / 0.5, random erasing (torchvision's RandomErasing, erased pixels set to 0).
"""
import dataclasses
import math

import tensorflow as tf

from synface_jax.data import images

ERASE_ATTEMPTS = 10


@dataclasses.dataclass(frozen=True)
class Augment:
  """Which augmentations run, with their probabilities.

  flip: horizontal flip with probability 0.5.
  zoom_crop: probability of zooming in by `zoom` and cropping back at a random position (SynFace:
    0.5, with Resize(112) + RandomCrop(112x96), i.e. a zoom of 112/96).
  random_erasing: probability of erasing a random rectangle of 2%..33% of the image with aspect
    ratio 0.3..3.3 (SynFace: 0.5, torchvision's defaults).
  """
  flip: bool = True
  zoom_crop: float = 0.0
  zoom: float = 112 / 96
  random_erasing: float = 0.0
  erase_scale: tuple = (0.02, 0.33)
  erase_ratio: tuple = (0.3, 3.3)


def decode(data):
  """uint8 [H, W, 3] RGB from JPEG (libjpeg's accurate integer IDCT, as Pillow) or PNG bytes.

  A graph op; `images.decode` (Pillow) gives the same pixels where TensorFlow is not imported.
  """
  image = tf.cond(
      tf.io.is_jpeg(data),
      lambda: tf.io.decode_jpeg(data, channels=3, dct_method='INTEGER_ACCURATE'),
      lambda: tf.io.decode_png(data, channels=3))
  return tf.ensure_shape(image, (None, None, 3))


def fit_to_size(image, size):
  """Centre-crops [H, W, 3] to the aspect of size=(h, w), resizes to it; float32 in [0, 255].

  A graph op; `images.fit_to_size` is its Pillow twin for the evaluator (see there).
  """
  h, w = size
  shape = tf.shape(image)
  ih, iw = shape[0], shape[1]
  crop_h = tf.minimum(ih, iw * h // w)
  crop_w = tf.minimum(iw, ih * w // h)
  image = tf.image.crop_to_bounding_box(image, (ih - crop_h) // 2, (iw - crop_w) // 2, crop_h,
                                        crop_w)
  image = tf.cond(
      tf.logical_and(crop_h == h, crop_w == w),
      lambda: tf.cast(image, tf.float32),
      lambda: tf.image.resize(image, (h, w), antialias=True))
  return tf.ensure_shape(image, (h, w, 3))


def normalize(image):
  """[0, 255] -> [-1, 1]: `images.normalize`, the evaluator's formula, on a float32 tensor."""
  return images.normalize(tf.cast(image, tf.float32))


def zoom_crop(image, zoom: float, seed):
  """Enlarges [H, W, 3] by `zoom` (bilinear) and crops H x W back at a random position."""
  h, w = image.shape[0], image.shape[1]
  big = tf.image.resize(image, (int(h * zoom), int(w * zoom)), method='bilinear')
  return tf.image.stateless_random_crop(big, (h, w, 3), seed=seed)


def random_erasing(image, seed, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0):
  """torchvision's RandomErasing (applied): up to 10 tries of a box that fits, else unchanged."""
  h, w = image.shape[0], image.shape[1]
  seeds = tf.random.experimental.stateless_split(seed, 4)
  area = h * w * tf.random.stateless_uniform((ERASE_ATTEMPTS,), seeds[0], scale[0], scale[1])
  log_ratio = tf.random.stateless_uniform((ERASE_ATTEMPTS,), seeds[1], math.log(ratio[0]),
                                          math.log(ratio[1]))
  aspect = tf.exp(log_ratio)
  eh = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
  ew = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
  fits = (eh < h) & (ew < w)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
  eh, ew = eh[first], ew[first]
  top = tf.random.stateless_uniform((), seeds[2], 0, tf.maximum(h - eh + 1, 1), tf.int32)
  left = tf.random.stateless_uniform((), seeds[3], 0, tf.maximum(w - ew + 1, 1), tf.int32)
  rows = tf.range(h)[:, None, None]
  cols = tf.range(w)[None, :, None]
  box = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
  box &= tf.reduce_any(fits)
  return tf.where(box, tf.cast(value, image.dtype), image)


def _coin(seed, p: float):
  return tf.random.stateless_uniform((), seed) < p


def apply(image, size, aug: Augment | None, seed):
  """Decoded uint8 [H, W, 3] -> augmented, normalised float32 [h, w, 3] for size=(h, w).

  aug=None: fit and normalise only (evaluation, dumps).
  """
  image = fit_to_size(image, size)
  if aug is not None:
    seeds = tf.random.experimental.stateless_split(seed, 5)
    if aug.zoom_crop > 0:
      image = tf.cond(_coin(seeds[0], aug.zoom_crop),
                      lambda: zoom_crop(image, aug.zoom, seeds[1]), lambda: image)
    if aug.flip:
      image = tf.image.stateless_random_flip_left_right(image, seed=seeds[2])
  image = normalize(image)
  if aug is not None and aug.random_erasing > 0:
    image = tf.cond(_coin(seeds[3], aug.random_erasing),
                    lambda: random_erasing(image, seeds[4], aug.erase_scale, aug.erase_ratio),
                    lambda: image)
  return image
