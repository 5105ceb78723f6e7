"""The one synthetic sampling path (generators/sampling.py): the train step and data export render
the same face for the same (identity, draw); identity mixup on Factors is the formula."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from synface_jax import mixup
from synface_jax.data import export, images as image_lib
from synface_jax.generators import sampling
from toy_generator import ToyGenerator

sys.path.insert(0, str(REPO))  # examples/ is the package `examples`.
from examples import expression_mixup  # noqa: E402

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
def partner_light(key, a, label_a, b, label_b, phi):
  """A user's identity mixup (a `types.Mixup` named as test_sampling:partner_light): identity
  mixed with phi as SynFace does, and the face lit as its partner is. Draws nothing from key."""
  del key
  mixed, label = mixup.mix_identities(None, a, label_a, b, label_b, phi)
  return mixed._replace(lighting=b.lighting[:, 0]), label


def _written(folder):
  """identity -> {draw: JPEG bytes} of an exported folder (two identities, phi 0.5)."""
  written = {}
  for path in sorted(folder.glob('*/*.jpg')):
    draw = int(path.name.split('_')[0]) - 1
    written.setdefault(int(path.parent.name) - 1, {})[draw] = path.read_bytes()
  return written


def test_data_export_uses_the_configured_mixup_as_the_step_does(toy, tmp_path):
  from synface_jax import extensions, seeds
  from synface_jax.data.__main__ import main as data_main
  generator = toy[0]
  params = generator.init(seeds.key(5, 'generator'))  # What `data export --seed 5` renders with.
  # Two identities: each face's partner is the other one, and phi is fixed, so (identity, draw)
  # names one face, in the step's batch and in the exported files alike.
  args = ['export', '--identities', '2', '--images', '2', '--generator',
          'toy_generator:ToyGenerator', '--size', '32x32', '--im', 'fixed:0.5', '--seed', '5',
          '--batch', str(BATCH)]
  assert data_main(args + ['--out', str(tmp_path / 'builtin')]) == 0
  assert data_main(args + ['--out', str(tmp_path / 'user'),
                           '--im-fn', 'test_sampling:partner_light']) == 0
  builtin, user = _written(tmp_path / 'builtin'), _written(tmp_path / 'user')
  assert sorted(user) == [0, 1] and all(sorted(files) == [0, 1] for files in user.values())
  assert all(user[i][j] != builtin[i][j] for i in (0, 1) for j in (0, 1))  # Lit differently.

  mix = extensions.mixup('im.fn', 'test_sampling:partner_light')
  step_batch = jax.jit(lambda key: sampling.synthetic_batch(
      generator, params, key, BATCH, 2, 2, mixup.make_sampler('fixed:0.5'),
      draw_seed=seeds.seed(5, 'draws'), mix=mix))
  images, label = step_batch(jax.random.key(0))
  pixels = np.asarray(sampling.to_uint8(images))
  seen = set()
  for b in range(BATCH):
    identity = int(label.ids[b, 0])
    assert int(label.ids[b, 1]) == 1 - identity
    jpeg = image_lib.encode_jpeg(pixels[b], 95)
    draws = [j for j, data in user[identity].items() if data == jpeg]
    assert draws, f'face {b} (identity {identity}) is in no exported file'
    seen.add((identity, draws[0]))
  assert len(seen) == 4  # Every (identity, draw) of the set met.


def test_export_with_a_mixup_drawing_from_its_key_does_not_depend_on_the_batch(toy, tmp_path):
  generator, params = toy
  for batch in (3, 8):
    export.export_folder(generator, params, str(tmp_path / str(batch)), num_identities=4,
                         images_per_identity=2, phi_sampler=mixup.make_sampler('synface'),
                         draw_seed=5, batch_size=batch, mix=expression_mixup.mix)
  small, large = sorted((tmp_path / '3').glob('*/*.jpg')), sorted((tmp_path / '8').glob('*/*.jpg'))
  assert [p.relative_to(tmp_path / '3') for p in small] == [
      p.relative_to(tmp_path / '8') for p in large]
  assert all(a.read_bytes() == b.read_bytes() for a, b in zip(small, large))


def test_generate_npz_mixes_with_the_configs_mixup(tmp_path):
  from synface_jax import generate
  config = tmp_path / 'config.py'
  config.write_text('from synface_jax import config as config_lib\n\n\n'
                    'def get_config():\n'
                    '  c = config_lib.base_config()\n'
                    "  c.generator.name = 'toy_generator:ToyGenerator'\n"
                    '  c.generator.image_size = (32, 32)\n'
                    '  c.synthetic.num_identities = 4\n'
                    '  return c\n')
  got = {}
  for name, fn in (('builtin', 'synface_jax.mixup:mix_identities'),
                   ('user', 'test_sampling:partner_light')):
    generate.main([f'--config={config}', f'--config.im.fn={fn}', '--npz', str(tmp_path / name),
                   '--identities', '4', '--per-identity', '2', '--mixup', 'fixed:0.5'])
    got[name] = np.load(tmp_path / f'{name}.npz')
  builtin, user = got['builtin'], got['user']
  np.testing.assert_array_equal(user['mix_ids'], builtin['mix_ids'])  # The same partners,
  for field in ('identity', 'expression', 'pose', 'noise'):             # identities and draws,
    np.testing.assert_array_equal(user[field], builtin[field])
  assert np.all(np.any(user['lighting'] != builtin['lighting'], axis=-1))  # lit as the partner,
  assert np.all(np.any(user['images'] != builtin['images'], axis=(1, 2, 3)))  # and so rendered.
