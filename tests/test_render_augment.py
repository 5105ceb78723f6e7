"""Augmentation of rendered faces inside the step, each op against an independent computation."""
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from synface_jax import config as config_lib
from synface_jax.generators import augment as A, sampling
from toy_generator import ToyGenerator

SIZE = (32, 32)


def _smooth_image(seed, size=SIZE):
  """A photograph-like [H, W, 3] image in [0, 1]: smooth shading plus some edges."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0.1, 0.9, (size[0] // 8, size[1] // 8, 3))
  image = scipy.ndimage.zoom(coarse, (8, 8, 1), order=1)
  image[size[0] // 3:size[0] // 2, size[1] // 4:3 * size[1] // 4] *= 0.5
  return np.clip(image, 0, 1).astype(np.float32)


def _batch(n, seed=0):
  return jnp.asarray(np.stack([_smooth_image(seed + i) for i in range(n)]) * 2 - 1)


_jitted = {}


def _augment(options, key, images):
  """augment() jitted once per options (the options are static)."""
  if options not in _jitted:
    _jitted[options] = jax.jit(lambda k, x: A.augment(k, x, options))
  return np.asarray(_jitted[options](key, images))


def test_all_off_returns_the_renders_untouched():
  images = _batch(2)
  assert A.augment(jax.random.key(0), images, A.Augment()) is images


def test_flip_alone_mirrors_exactly():
  images = _batch(8)
  out = _augment(A.Augment(flip=1.0), jax.random.key(0), images)
  np.testing.assert_array_equal(out, np.asarray(images)[:, :, ::-1])


def test_bilinear_sample_matches_scipy():
  x = _smooth_image(3)
  rng = np.random.default_rng(0)
  ys, xs = rng.uniform(-3, 35, (2, 20, 20)).astype(np.float32)
  got = np.asarray(jax.jit(A.bilinear_sample)(x, xs, ys))
  want = np.stack([scipy.ndimage.map_coordinates(
      x[..., c], [np.clip(ys, 0, 31), np.clip(xs, 0, 31)], order=1, mode='nearest')
      for c in range(3)], -1)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_blur_kernels_and_filter():
  g = np.asarray(A.blur_kernel(0, 1.2, 0.0))
  yy, xx = np.mgrid[-3:4, -3:4]
  want = np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.2 ** 2))
  np.testing.assert_allclose(g, want / want.sum(), rtol=1e-5)
  disk = np.asarray(A.blur_kernel(1, 2.0, 0.0))
  assert disk[3, 3] == disk.max() and disk[0, 0] == 0 and abs(disk.sum() - 1) < 1e-6
  np.testing.assert_allclose(disk, disk.T, atol=1e-7)
  motion = np.asarray(A.blur_kernel(2, 2.0, 0.0))  # Horizontal line through the centre.
  assert np.all(motion[[0, 1, 2, 4, 5, 6]] == 0) and motion[3].sum() == pytest.approx(1.0)
  x = _smooth_image(5)
  got = np.asarray(jax.jit(A._filter2d)(x, jnp.asarray(g)))
  want = np.stack([scipy.ndimage.correlate(x[..., c], g, mode='nearest') for c in range(3)], -1)
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize('choice', range(len(A._LOW_RES_FACTORS)))
def test_low_resolution_is_resize_down_then_up(choice):
  x = jnp.asarray(_smooth_image(4, (32, 48)))
  f = A._LOW_RES_FACTORS[choice]
  small = jax.image.resize(x, (max(round(32 / f), 4), max(round(48 / f), 4), 3), 'linear',
                           antialias=True)
  want = jax.image.resize(small, x.shape, 'linear', antialias=False)
  np.testing.assert_allclose(np.asarray(A.low_resolution(x, choice)), np.asarray(want), atol=1e-5)


def test_dct_matrix_is_orthonormal_dct2():
  d = A.dct_matrix()
  np.testing.assert_allclose(d @ d.T, np.eye(8), atol=1e-6)
  block = np.random.default_rng(0).normal(size=8)
  want = np.array([np.sum(block * np.cos(np.pi * (2 * np.arange(8) + 1) * k / 16))
                   for k in range(8)]) * np.sqrt(2 / 8)
  want[0] /= np.sqrt(2)
  np.testing.assert_allclose(d @ block, want, atol=1e-5)


@pytest.mark.parametrize('quality', [15, 40, 75])
def test_jpeg_like_close_to_libjpeg(quality):
  """Our block quantisation lands much nearer libjpeg's output than the clean image is."""
  x = _smooth_image(7, (64, 64))
  x = np.clip(x + 0.05 * np.random.default_rng(1).normal(size=x.shape), 0, 1).astype(np.float32)
  buf = io.BytesIO()
  Image.fromarray(np.uint8(np.round(x * 255))).save(buf, 'JPEG', quality=quality, subsampling=2)
  libjpeg = np.asarray(Image.open(buf), np.float32) / 255
  ours = np.asarray(jax.jit(A.jpeg_like)(x, float(quality)))
  gap_clean = np.abs(x - libjpeg).mean()
  gap_ours = np.abs(ours - libjpeg).mean()
  assert gap_ours < 0.6 * gap_clean, (gap_ours, gap_clean)


def test_grayscale_is_luma():
  images = _batch(4)
  out = _augment(A.Augment(grayscale=1.0), jax.random.key(0), images)
  x = (np.asarray(images) + 1) / 2
  luma = x @ np.array([0.299, 0.587, 0.114])
  np.testing.assert_allclose(out, np.repeat(luma[..., None], 3, -1) * 2 - 1, atol=1e-5)


def test_each_op_fires_at_its_rate_and_is_keyed():
  images = jnp.repeat(_batch(1), 400, axis=0)
  options = A.Augment(occlude=0.3)
  out = _augment(options, jax.random.key(0), images)
  changed = np.any(np.abs(out - np.asarray(images)) > 1e-6, axis=(1, 2, 3))
  assert 0.22 < changed.mean() < 0.38
  np.testing.assert_array_equal(out, _augment(options, jax.random.key(0), images))
  assert not np.array_equal(out, _augment(options, jax.random.key(1), images))


def test_noise_strength():
  images = jnp.zeros((64, *SIZE, 3))  # Mid grey.
  out = _augment(A.Augment(noise=1.0, noise_sigma=0.04), jax.random.key(0), images)
  std = ((out + 1) / 2).reshape(64, -1).std(1)
  # Read noise in [0.1, 1] x sigma, shot noise up to sigma x sqrt(0.5): std within those bounds.
  assert std.min() > 0.1 * 0.04 * 0.9 and std.max() < 0.04 * np.sqrt(1.5) * 1.1
  assert std.max() > 0.5 * 0.04


def test_everything_on_keeps_range_and_shape():
  options = A.Augment(flip=0.5, align=1.0, low_res=1.0, blur=1.0, colour=1.0, grayscale=0.5,
                      occlude=1.0, noise=1.0, jpeg=1.0)
  out = _augment(options, jax.random.key(3), _batch(4))
  assert out.shape == (4, *SIZE, 3) and np.all(np.isfinite(out))
  assert out.min() >= -1 and out.max() <= 1


def test_config_block_is_checked():
  c = config_lib.base_config()
  c.regime = 'synthetic'
  config_lib.validate(c)
  c.synthetic.augment.blur = 1.5
  with pytest.raises(ValueError, match='synthetic.augment.blur'):
    config_lib.validate(c)
  c.synthetic.augment.blur = 0.5
  c.synthetic.augment.jpeg_quality = (90, 20)
  with pytest.raises(ValueError, match='synthetic.augment.jpeg_quality'):
    config_lib.validate(c)
  for bad in (('a', 'b'), (50,), (10, 20, 30)):
    c.synthetic.augment.jpeg_quality = bad
    with pytest.raises(ValueError, match='synthetic.augment.jpeg_quality'):
      config_lib.validate(c)
  with pytest.raises(ValueError, match='synthetic.augment.sharpen'):
    A.Augment.from_config({'sharpen': 0.5})


def test_synthetic_batch_augments_without_changing_labels():
  gen = ToyGenerator(SIZE)
  params = gen.init(jax.random.key(1))
  options = A.Augment(align=1.0, noise=1.0)

  @jax.jit
  def both(key):
    plain = sampling.synthetic_batch(gen, params, key, 16, 4, 2, None, draw_seed=5)
    augmented = sampling.synthetic_batch(gen, params, key, 16, 4, 2, None, draw_seed=5,
                                         augment_options=options)
    return plain, augmented

  (x, y), (xa, ya) = both(jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(y.ids), np.asarray(ya.ids))
  assert np.all(np.abs(np.asarray(x) - np.asarray(xa)).reshape(16, -1).max(1) > 1e-3)
