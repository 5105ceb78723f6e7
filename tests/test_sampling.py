"""The one synthetic sampling path (generators/sampling.py): the train step and data export render
the same face for the same (identity, draw); identity mixup on Factors is the formula."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synface_jax import mixup
from synface_jax.data import export, images as image_lib
from synface_jax.generators import sampling
from toy_generator import ToyGenerator

SIZE = (32, 32)
BATCH = 16


@pytest.fixture(scope='module')
def toy():
  generator = ToyGenerator(SIZE, num_identities=4)
  return generator, generator.init(jax.random.key(1))


def test_export_writes_what_the_step_renders(toy, tmp_path):
  generator, params = toy
  export.export_folder(generator, params, str(tmp_path), num_identities=4, images_per_identity=2,
                       draw_seed=5, batch_size=BATCH)
  written = {}  # identity -> the JPEG bytes of its files
  for path in sorted(tmp_path.glob('*/*.jpg')):
    written.setdefault(int(path.parent.name) - 1, []).append(path.read_bytes())
  assert sorted(written) == [0, 1, 2, 3]
  assert all(len(set(files)) == 2 for files in written.values())  # Two different draws each.

  step_batch = jax.jit(lambda key: sampling.synthetic_batch(
      generator, params, key, BATCH, 4, 2, None, draw_seed=5))
  images, label = step_batch(jax.random.key(0))
  pixels = np.asarray(sampling.to_uint8(images))
  seen = set()
  for b in range(BATCH):
    identity = int(label.ids[b, 0])
    jpeg = image_lib.encode_jpeg(pixels[b], 95)
    assert jpeg in written[identity], f'face {b} (identity {identity}) is in no exported file'
    seen.add((identity, written[identity].index(jpeg)))
  assert len(seen) > 4  # The batch met several (identity, draw) pairs, not one over and over.


def test_faces_mix_identity_coefficients_and_keep_the_anchor_nuisance(toy):
  generator, params = toy
  ids = jnp.array([0, 1, 2, 3], jnp.int32)
  partners = sampling.partner_ids(jax.random.key(3), ids, 4)
  phi = jnp.array([1.0, 0.75, 0.5, 0.0], jnp.float32)
  draws = jax.random.split(jax.random.key(4), 4)
  images, label, factors = sampling.faces(generator, params, jax.random.key(5), ids, draws,
                                          partners=partners, phi=phi)
  plain_images, plain_label, plain = sampling.faces(generator, params, None, ids, draws)

  np.testing.assert_array_equal(partners[:, 0], mixup.sample_partners(jax.random.key(3), ids, 4))
  assert np.all(np.asarray(partners[:, 0]) != np.asarray(ids))
  a = np.stack([np.asarray(generator.identity(params, i)) for i in ids])
  b = np.stack([np.asarray(generator.identity(params, p)) for p in partners[:, 0]])
  want = np.asarray(phi)[:, None] * a + (1 - np.asarray(phi)[:, None]) * b
  np.testing.assert_allclose(factors.identity, want, rtol=1e-6, atol=1e-6)
  for name in ('expression', 'pose', 'lighting', 'noise'):  # The anchors' own draws.
    np.testing.assert_array_equal(getattr(factors, name), getattr(plain, name))
  np.testing.assert_array_equal(label.ids, np.stack([ids, partners[:, 0]], -1))
  np.testing.assert_allclose(label.weights, np.stack([phi, 1 - phi], -1))
  np.testing.assert_array_equal(plain_label.ids, np.asarray(ids)[:, None])
  np.testing.assert_allclose(images, generator.render(params, factors)[0], atol=1e-6)
  np.testing.assert_allclose(images[0], plain_images[0], atol=1e-6)  # phi = 1: the anchor.


def test_faces_in_batches_do_not_depend_on_the_batch_size(toy):
  generator, params = toy
  ids = np.arange(5) % 4
  draws = jax.random.split(jax.random.key(6), 5)
  got = [sampling.faces_in_batches(generator, params, None, ids, draws, batch_size=n)
         for n in (2, 5)]
  np.testing.assert_array_equal(got[0][0], got[1][0])
  assert got[0][0].shape == (5, *SIZE, 3) and got[0][0].dtype == np.uint8
  np.testing.assert_array_equal(got[0][2].pose, got[1][2].pose)


def test_data_export_of_a_run_seed_writes_the_faces_that_run_trains_on(tmp_path):
  """`data export --seed S` takes the generator params and nuisance draws of a run with
  config.seed = S (seeds 'generator' and 'draws'): every face of that run's step is a file."""
  from conftest import tiny_config, tiny_experiment
  from synface_jax import train_step
  from synface_jax.data import __main__ as data_cli
  assert data_cli.main(['export', '--out', str(tmp_path), '--identities', '4', '--images', '2',
                        '--generator', 'toy_generator:ToyGenerator', '--size', '32x32',
                        '--im', 'off', '--seed', '3', '--batch', '8']) == 0
  written = {}
  for path in sorted(tmp_path.glob('*/*.jpg')):
    written.setdefault(int(path.parent.name) - 1, []).append(path.read_bytes())
  config = tiny_config('synthetic')
  config.seed, config.im.enabled = 3, False
  config.synthetic.num_identities, config.synthetic.images_per_identity = 4, 2
  config.optim.batch_size = BATCH
  run = tiny_experiment(config)
  inputs = jax.jit(train_step.make_inputs(config, run.mesh, generator=run.generator))
  x, y, _, _ = inputs(run.gen_params, None, run.key('step'), 0)
  pixels = np.asarray(sampling.to_uint8(x))
  seen = {(int(y.ids[b, 0]), written[int(y.ids[b, 0])].index(image_lib.encode_jpeg(pixels[b], 95)))
          for b in range(BATCH)}  # .index: a face that is in no file fails here.
  assert len(seen) > 4
