"""synface_jax.eval.evaluator: embedding interleaved pair images and running a protocol."""
import numpy as np
import pytest

from synface_jax.data import images as image_io
from synface_jax.eval import evaluator as ev
from synface_jax.eval import protocols


# ------------------------------------------------------------------------------------------------
# evaluate_pairs.
# ------------------------------------------------------------------------------------------------


RED, BLUE = (255, 0, 0), (0, 0, 255)


def _half_images(n_pairs=20, width=8):
  """Pair images whose left and right halves have solid colours.

  Same pairs are mirror images of each other (left/right swapped); different pairs use unrelated
  colours.
  """
  rng = np.random.default_rng(1)
  issame = np.arange(n_pairs) % 2 == 0
  images = np.zeros((2 * n_pairs, 4, width, 3), np.uint8)
  half = width // 2
  for k in range(n_pairs):
    if issame[k]:
      left, right = rng.integers(0, 256, size=(2, 3))
      images[2 * k, :, :half], images[2 * k, :, half:] = left, right
      images[2 * k + 1, :, :half], images[2 * k + 1, :, half:] = right, left
    else:
      images[2 * k, :, :half], images[2 * k, :, half:] = RED, RED
      images[2 * k + 1, :, :half], images[2 * k + 1, :, half:] = BLUE, BLUE
  return images, issame


class _LeftHalfMean:
  """A flip-sensitive fake embedder (mean of the left half) that records batch shapes."""

  def __init__(self):
    self.shapes = []

  def __call__(self, x):
    self.shapes.append(x.shape)
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    return x[:, :, :x.shape[2] // 2].mean(axis=(1, 2))


def _left_mean(images):
  x = image_io.model_input(images)
  return x[:, :, :x.shape[2] // 2].mean(axis=(1, 2))


def test_evaluate_pairs_insightface_uses_flip_sum():
  images, issame = _half_images()
  embed = _LeftHalfMean()
  result = ev.evaluate_pairs(embed, images, issame, 'insightface', batch_size=16)
  # 40 images in batches of 16 (padded 8 -> 16), each embedded plain and flipped.
  assert embed.shapes == [(16, 4, 8, 3)] * 6
  flipped = _left_mean(images) + _left_mean(images[:, :, ::-1])
  expected = protocols.insightface_protocol(flipped[0::2], flipped[1::2], issame)
  np.testing.assert_array_equal(result['fold_accuracy'], expected['fold_accuracy'])
  np.testing.assert_array_equal(result['thresholds'], expected['thresholds'])
  assert result['val'] == expected['val']
  # Mirror-image same pairs coincide only under the flip sum.
  assert result['accuracy'] == 1.0
  plain = _left_mean(images)
  assert protocols.insightface_protocol(plain[0::2], plain[1::2], issame)['accuracy'] < 1.0


def test_evaluate_pairs_synface_has_no_flip():
  images, issame = _half_images()
  embed = _LeftHalfMean()
  result = ev.evaluate_pairs(embed, images, issame, 'synface', batch_size=16)
  assert embed.shapes == [(16, 4, 8, 3)] * 3
  plain = _left_mean(images)
  expected = protocols.synface_protocol(plain[0::2], plain[1::2], issame)
  np.testing.assert_array_equal(result['fold_accuracy'], expected['fold_accuracy'])
  np.testing.assert_array_equal(result['thresholds'], expected['thresholds'])
  np.testing.assert_array_equal(result['similarity'], expected['similarity'])


def test_evaluate_pairs_accepts_jax_outputs():
  jnp = pytest.importorskip('jax.numpy')
  images, issame = _half_images()
  result = ev.evaluate_pairs(lambda x: jnp.asarray(x).mean(axis=(1, 2)), images, issame,
                             'synface', batch_size=64)
  assert 0.0 <= result['accuracy'] <= 1.0


def test_evaluate_pairs_validates():
  images, issame = _half_images()
  with pytest.raises(ValueError, match='images for'):
    ev.evaluate_pairs(_LeftHalfMean(), images[:-2], issame, 'synface')
  with pytest.raises(ValueError, match="'cosine'"):
    ev.evaluate_pairs(_LeftHalfMean(), images, issame, 'cosine')
