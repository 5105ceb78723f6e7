"""Augmentations: normalisation, flip, zoom-crop and random erasing, keyed by per-example seeds."""
import numpy as np
import tensorflow as tf

from synface_jax.data import augment

H, W = 24, 20


def _image():
  return tf.constant(np.random.default_rng(0).integers(1, 120, (H, W, 3)), tf.uint8)


def _run(aug, seed):
  return augment.apply(_image(), (H, W), aug, tf.constant([seed, 7], tf.int64)).numpy()


def test_no_augmentation_is_the_normalisation():
  expected = (_image().numpy().astype(np.float32) / np.float32(255) - 0.5) / 0.5
  np.testing.assert_array_equal(_run(None, 0), expected)


def test_fit_to_size_centre_crops_to_the_aspect_then_resizes():
  image = tf.constant(np.arange(40 * 20 * 3).reshape(40, 20, 3) % 251, tf.uint8)
  out = augment.fit_to_size(image, (20, 20)).numpy()
  np.testing.assert_array_equal(out, image.numpy()[10:30].astype(np.float32))
  assert augment.fit_to_size(image, (10, 8)).shape == (10, 8, 3)


def test_flip_is_a_coin_per_seed():
  plain = _run(None, 0)
  outs = [_run(augment.Augment(flip=True), s) for s in range(16)]
  flipped = [np.array_equal(o, plain[:, ::-1]) for o in outs]
  assert all(f or np.array_equal(o, plain) for f, o in zip(flipped, outs))
  assert 0 < sum(flipped) < 16
  np.testing.assert_array_equal(outs[3], _run(augment.Augment(flip=True), 3))


def test_zoom_crop_keeps_the_size_and_moves_with_the_seed():
  aug = augment.Augment(flip=False, zoom_crop=1.0, zoom=1.5)
  outs = [_run(aug, s) for s in range(6)]
  assert all(o.shape == (H, W, 3) for o in outs)
  assert len({o.tobytes() for o in outs}) > 1
  assert not np.array_equal(outs[0], _run(None, 0))
  half = augment.Augment(flip=False, zoom_crop=0.5, zoom=1.5)
  plain = _run(None, 0)
  assert 0 < sum(np.array_equal(_run(half, s), plain) for s in range(16)) < 16


def test_random_erasing_blanks_one_box_of_the_allowed_area():
  aug = augment.Augment(flip=False, random_erasing=1.0)
  for seed in range(8):
    out = _run(aug, seed)
    erased = np.all(out == 0.0, axis=-1)
    rows, cols = np.flatnonzero(erased.any(1)), np.flatnonzero(erased.any(0))
    box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # One rectangle.
    assert 0.02 * H * W * 0.5 <= erased.sum() <= 0.33 * H * W * 1.5
    np.testing.assert_array_equal(out[~erased], _run(None, 0)[~erased])


def test_decode_matches_pillow_for_jpeg():
  from synface_jax.data import images
  pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
  data = images.encode_jpeg(pixels)
  np.testing.assert_array_equal(augment.decode(tf.constant(data)).numpy(), images.decode(data))
