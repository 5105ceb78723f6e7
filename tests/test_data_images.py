"""data/images.py's decode, stack, normalisation and resize, the ones the evaluator and the embedder
share with training (its tf.data twins are compared where TensorFlow is installed)."""
import io

import numpy as np
import pytest
from PIL import Image

from synface_jax.data import images


def _smooth(h, w, seed=0):
  """A smooth uint8 [h, w, 3] picture: resizing it does not alias."""
  coarse = np.random.default_rng(seed).integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
  return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC))


def test_decode_names_the_source_of_damaged_bytes():
  data = images.encode_jpeg(_smooth(16, 16))
  np.testing.assert_array_equal(images.decode(data), np.asarray(Image.open(io.BytesIO(data))))
  with pytest.raises(images.BadImage, match=r'^cannot decode lfw\.bin image 3: '):
    images.decode(data[:40] + b'\0' * 64, 'lfw.bin image 3')


def test_stack_names_the_first_image_of_another_size():
  a, b = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)
  assert images.stack([a, a], 'set').shape == (2, 4, 4, 3)
  with pytest.raises(ValueError, match=r'^set: image 2 has shape \(4, 5, 3\)'):
    images.stack([a, a, b], 'set')


def test_model_input_is_the_training_normalisation():
  pixels = np.array([[[[0, 128, 255]]]], np.uint8)
  x = images.model_input(pixels)
  assert x.dtype == np.float32
  np.testing.assert_allclose(x.ravel(), [-1.0, 128 / 127.5 - 1.0, 1.0], rtol=0, atol=1e-6)
  already = np.full((1, 2, 2, 3), 0.25, np.float64)
  np.testing.assert_array_equal(images.model_input(already), already.astype(np.float32))


def test_fit_to_size_crops_to_the_aspect_before_it_resizes():
  batch = np.stack([_smooth(40, 20), _smooth(40, 20, 1)])
  assert images.fit_to_size(batch, (40, 20)) is batch
  np.testing.assert_array_equal(images.fit_to_size(batch, (20, 20)), batch[:, 10:30])
  out = images.fit_to_size(batch, (10, 8))
  assert out.shape == (2, 10, 8, 3) and out.dtype == np.uint8
  # 10:8 at the full width of 20 is 25 rows, centred: rows 7 to 31.
  expected = Image.fromarray(batch[1, 7:32]).resize((8, 10), Image.BILINEAR)
  np.testing.assert_array_equal(out[1], np.asarray(expected))


def test_the_evaluator_resize_agrees_with_training_within_one_level():
  tf = pytest.importorskip('tensorflow')
  from synface_jax.data import augment
  for (ih, iw), size in (((112, 112), (64, 64)), ((60, 50), (112, 96)), ((112, 96), (56, 48))):
    image = _smooth(ih, iw)
    ours = images.fit_to_size(image[None], size)[0].astype(np.float32)
    theirs = augment.fit_to_size(tf.constant(image), size).numpy()
    assert np.abs(ours - theirs).max() <= 1.0, (ih, iw, size)
    np.testing.assert_allclose(images.model_input(ours[None].astype(np.uint8))[0],
                               augment.normalize(tf.constant(ours)).numpy(), rtol=0, atol=0)
