"""DiscoFaceGAN backend: VAE decoders, import of the official pickle, truncation, the generator."""
import copy
import os
import pickle

from conftest import reference_file
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from synface_jax import generators, mixup
from synface_jax.generators.discofacegan import align, arch as arch_lib, checkpoint, convert
from synface_jax.generators.discofacegan import layers, mean_w, network, snapshot, truncation
from synface_jax.generators.discofacegan import vae, vae_checkpoint
from synface_jax.generators.discofacegan.generator import DiscoFaceGAN

REF = 'discofacegan'
NUISANCE = ('exp', 'gamma', 'rot')


def _pkl():
  return reference_file(REF, 'generator_small', 'network_snapshot_small.pkl')


def _io():
  return np.load(reference_file(REF, 'generator_small', 'io.npz'))


def _vae_dir():
  return reference_file(REF, 'vae')


# --- factor VAE decoders ------------------------------------------------------------------------

@pytest.fixture(scope='module')
def decoders():
  return vae_checkpoint.read_decoders(_vae_dir(), NUISANCE)


def test_vae_decoders_reproduce_reference(decoders):
  ref = np.load(reference_file(REF, 'vae', 'vae_decoder_io.npz'))
  outs = {}
  for factor in NUISANCE:
    outs[factor] = np.asarray(vae.decode(decoders[factor], factor,
                                         jnp.asarray(ref[f'{factor}_z'], jnp.float32)))
    np.testing.assert_allclose(outs[factor], ref[f'{factor}_out'], rtol=0, atol=1e-5)
  # z order id, exp, gamma, rot; lambda order exp, rot, gamma.
  np.testing.assert_allclose(np.concatenate([outs['exp'], outs['rot'], outs['gamma']], -1),
                             ref['lambda_exp_rot_gamma'], rtol=0, atol=1e-5)


def test_missing_vae_factor_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="factor 'id'"):
    vae_checkpoint.read_decoders(_vae_dir(), ('id',))
  (tmp_path / 'id').mkdir()
  for suffix in ('.index', '.meta'):  # Our mirror's id folder: no .data file.
    src = _vae_dir() / 'exp' / f'{vae_checkpoint.DEFAULT_PREFIX}{suffix}'
    (tmp_path / 'id' / src.name).write_bytes(src.read_bytes())
  with pytest.raises(ValueError, match="factor 'id'"):
    vae_checkpoint.read_decoders(tmp_path, ('id',))


# --- the small generator imported from the pickle -----------------------------------------------

@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  io = _io()
  tmp = tmp_path_factory.mktemp('dfg')
  mean_file = tmp / 'w_avg_id.txt'
  with open(mean_file, 'w') as f:  # The official file's nesting: [1, L, D].
    f.write(str(io['trunc_w_avg_id'].tolist()))
  out = tmp / 'ckpt'
  convert.main(['--pkl', str(_pkl()), '--vae-dir', str(_vae_dir()), '--out', str(out),
                '--mean-w-id', str(mean_file), '--without-id-vae'])
  return out


def test_converted_generator_reproduces_golden(converted, decoders):
  io = _io()
  arch, factors = checkpoint.read_info(converted)
  assert arch == arch_lib.PRESETS['small'] and sorted(factors) == sorted(NUISANCE)
  params = checkpoint.load(converted)
  for factor in NUISANCE:
    jax.tree.map(np.testing.assert_array_equal, params['vae'][factor], decoders[factor])
  np.testing.assert_array_equal(params['mean_w_id'], io['trunc_w_avg_id'][0])

  @jax.jit
  def forward(params, latents, dlatents):
    w = network.mapping(params, arch, latents)
    w_trunc = network.truncated_dlatents(params, arch, latents)
    return w, w_trunc, network.synthesis(params, arch, jnp.concatenate([dlatents, w_trunc]))

  w, w_trunc, images = forward(params, io['latents'], io['dlatents'])
  np.testing.assert_allclose(w, io['dlatents'], rtol=0, atol=1e-4)
  np.testing.assert_allclose(w_trunc, io['trunc_dlatents'], rtol=0, atol=1e-4)
  nchw = np.asarray(images).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(nchw[:3], io['images'], rtol=0, atol=1e-3)
  np.testing.assert_allclose(nchw[3:], io['trunc_images'], rtol=0, atol=1e-3)


def test_bfloat16_synthesis_stays_close(converted):
  io = _io()
  arch, _ = checkpoint.read_info(converted)
  params = checkpoint.load(converted)
  images = jax.jit(lambda p, l: network.generate(p, arch, l, dtype=jnp.bfloat16))(
      params, io['latents'])
  assert images.dtype == jnp.float32
  ref = np.clip(io['trunc_images'].transpose(0, 2, 3, 1), -1, 1)
  assert float(np.abs(np.clip(images, -1, 1) - ref).mean()) < 0.03


def test_truncation_example():
  io = _io()
  np.testing.assert_array_equal(truncation.identity_latents(io['latents']),
                                io['trunc_latents_id'])
  w = truncation.truncate(io['dlatents'], io['trunc_dlatents_id'], io['trunc_w_avg_id'],
                          float(io['trunc_psi']), int(io['trunc_cutoff']))
  np.testing.assert_allclose(w, io['trunc_dlatents'], rtol=0, atol=1e-6)


def test_checkpoint_without_identity_vae_cannot_draw_identities(converted):
  generator = DiscoFaceGAN(checkpoint=str(converted))
  with pytest.raises(ValueError, match='identity VAE'):
    generator.init(jax.random.key(0))


def test_converter_requires_identity_vae(tmp_path):
  with pytest.raises(FileNotFoundError, match="factor 'id'"):
    convert.convert(_pkl(), _vae_dir(), tmp_path / 'out')
  assert not (tmp_path / 'out').exists()


# --- snapshot checks ----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def gs():
  return snapshot.load_gs(_pkl())


def test_reads_gs_not_g(gs):
  g = snapshot.load_networks(_pkl())[0]
  assert gs.name == 'Gs' and g.name == 'G'
  ref = np.load(reference_file(REF, 'generator_small', 'variables.npz'))
  flat = snapshot.flat_variables(gs)
  names = {k.replace('G_synthesis/', 'synthesis/').replace('G_mapping/', 'mapping/'): k
           for k in ref}
  assert set(flat) == set(names)
  for name, ref_name in names.items():
    np.testing.assert_array_equal(flat[name], ref[ref_name])


@pytest.mark.parametrize('edit, message', [
    (lambda g: g.components['synthesis'].variables.pop('4x4/Conv/weight'),
     'missing variable G_synthesis/4x4/Conv/weight'),
    (lambda g: g.components['mapping'].variables.update({'Dense8/weight': np.zeros((64, 64))}),
     'unexpected variable G_mapping/Dense8/weight'),
    (lambda g: g.components['mapping'].variables.update({'Dense3/bias': np.zeros((63,))}),
     'variable G_mapping/Dense3/bias has shape'),
    (lambda g: g.components['synthesis'].variables.update({'lod': np.float32(1.0)}),
     'variable G_synthesis/lod is 1.0'),
    (lambda g: g.variables.update({'lod': np.float32(2.0)}), 'variable Gs/lod is 2.0'),
    (lambda g: g.variables.pop('dlatent_avg'), 'missing variable Gs/dlatent_avg'),
    (lambda g: g.components.pop('mapping'), "no component 'mapping'"),
    (lambda g: g.static_kwargs.update({'use_noise': False}), 'use_noise'),
])
def test_variable_errors_are_named(gs, edit, message):
  broken = copy.deepcopy(gs)
  edit(broken)
  with pytest.raises(ValueError, match=message):
    convert.generator_params(broken)


class _CreatesFile:
  def __init__(self, path, how):
    self.path, self.how = path, how

  def __reduce__(self):
    if self.how == 'open':
      return open, (self.path, 'w')
    return os.system, (f'touch {self.path}',)


@pytest.mark.parametrize('how, refused',
                         [('open', r'io\.open'), ('system', r'(posix|os)\.system')])
def test_malicious_pickle_is_refused(tmp_path, how, refused):
  target = tmp_path / 'created'
  path = tmp_path / 'evil.pkl'
  with open(path, 'wb') as f:
    pickle.dump(({'variables': [('x', _CreatesFile(str(target), how))]},), f)
  with pytest.raises(pickle.UnpicklingError, match=refused):
    snapshot.load_networks(path)
  assert not target.exists()


def test_object_arrays_are_refused(tmp_path):
  path = tmp_path / 'objects.pkl'
  with open(path, 'wb') as f:
    pickle.dump(np.array([1, 'a'], dtype=object), f)
  with pytest.raises(pickle.UnpicklingError, match='object dtype'):
    snapshot.load_networks(path)


# --- mean identity w ----------------------------------------------------------------------------

def test_mean_w_id_over_batches():
  arch = arch_lib.PRESETS['small']
  params = network.random_params(0, arch)
  key = jax.random.key(3)
  # Compiled: op by op, each of the mapping's many small operations would be compiled on its own.
  latents_of = jax.jit(mean_w.identity_only_latents, static_argnums=2)
  mapping = jax.jit(network.mapping, static_argnums=1)
  latents = latents_of(params, key, 4)
  assert np.all(np.asarray(latents[:, 160:254]) == 0) and np.all(latents[:, 254:] != 0)
  mean = mean_w.compute_mean_w_id(params, arch, key, num_samples=6, batch_size=4)
  parts = [mapping(params, arch, latents_of(params, jax.random.fold_in(key, i), n))[:, 0]
           for i, n in enumerate((4, 2))]
  expected = np.concatenate(parts).mean(0)
  assert mean.shape == (arch.num_layers, arch.dlatent_size)
  np.testing.assert_allclose(mean, np.broadcast_to(expected, mean.shape), rtol=1e-5, atol=1e-5)


def test_mean_w_id_text_round_trip(tmp_path):
  arch = arch_lib.PRESETS['small']
  value = np.random.default_rng(0).normal(size=(arch.num_layers, arch.dlatent_size))
  mean_w.save_text(tmp_path / 'm.txt', value)
  np.testing.assert_allclose(mean_w.load_text(tmp_path / 'm.txt', arch), value, rtol=1e-6)
  with pytest.raises(ValueError, match='768 numbers, expected 640'):
    mean_w.load_text(tmp_path / 'm.txt', arch_lib.Arch(resolution=64, dlatent_size=64))


# --- operations ---------------------------------------------------------------------------------

def test_upsample_conv_is_nearest_upsample_then_conv():
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
  np.testing.assert_allclose(layers.upsample_conv(x, k), layers.conv(layers.nearest_upsample(x), k),
                             rtol=0, atol=1e-4)


def test_crop_puts_source_landmarks_on_the_template():
  dst = align.template('arcface', (112, 112))
  crop = align.Crop(256, (112, 112), dst)
  yy, xx = np.mgrid[:256, :256]
  src = align.source_landmarks(256)
  # A smooth bump centred on each landmark lands centred on its template point.
  for (sx, sy), (tx, ty) in zip(src, dst):
    bump = np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * 4.0 ** 2)).astype(np.float32)
    out = np.asarray(crop(bump[None, :, :, None]))[0, :, :, 0]
    oy, ox = np.mgrid[:112, :112]
    centre = np.array([(out * ox).sum(), (out * oy).sum()]) / out.sum()
    np.testing.assert_allclose(centre, crop.scale * np.array([sx, sy]) + crop.translation,
                               atol=0.05)
    np.testing.assert_allclose(centre, [tx, ty], atol=1.0)
  synface = align.Crop(256, (112, 96), align.template('synface', (112, 96)))
  assert synface.scale == pytest.approx(crop.scale)
  assert synface(jnp.zeros((1, 256, 256, 3))).shape == (1, 112, 96, 3)


# --- the generator interface --------------------------------------------------------------------

def test_no_checkpoint_is_an_error_naming_the_field():
  config = ml_collections.ConfigDict({'name': 'discofacegan', 'image_size': (112, 112)})
  with pytest.raises(ValueError, match='generator.checkpoint'):
    generators.get_generator(config)


@pytest.fixture(scope='module')
def small_generator():
  config = ml_collections.ConfigDict(
      {'name': 'discofacegan', 'image_size': (112, 112), 'preset': 'small'})
  generator = generators.get_generator(config)
  return generator, generator.init(jax.random.key(0))


def test_identity_is_deterministic_per_id(small_generator):
  generator, params = small_generator
  ids = jnp.array([0, 1, 2, 1])
  coeffs = jax.jit(jax.vmap(generator.identity, (None, 0)))(params, ids)
  assert coeffs.shape == (4, 160)
  np.testing.assert_allclose(coeffs[1], coeffs[3], rtol=0, atol=1e-6)
  np.testing.assert_allclose(generator.identity(params, 2), coeffs[2], rtol=0, atol=1e-6)
  assert not np.allclose(coeffs[0], coeffs[1])
  other_pool = DiscoFaceGAN(seed=1, params=params, arch='small')
  assert not np.allclose(other_pool.identity(params, 0), coeffs[0])


def test_sample_and_render(small_generator):
  generator, params = small_generator
  ids = jnp.arange(3)
  identity = jax.jit(jax.vmap(generator.identity, (None, 0)))(params, ids)
  factors = jax.jit(jax.vmap(generator.sample))(jax.random.split(jax.random.key(1), 3), identity)
  assert [x.shape for x in factors] == [(3, 160), (3, 64), (3, 3), (3, 27), (3, 32)]
  np.testing.assert_array_equal(factors.identity, identity)
  assert not np.allclose(factors.expression[0], factors.expression[1])
  images, landmarks = jax.jit(generator.render)(params, factors)
  assert images.shape == (3, 112, 112, 3) and images.dtype == jnp.float32
  assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
  assert float(images.std()) > 0.01
  np.testing.assert_allclose(landmarks, np.broadcast_to(align.ARCFACE_TEMPLATE, (3, 5, 2)),
                             rtol=0, atol=1e-4)


def test_identity_mixup_with_phi_one_keeps_a(small_generator):
  generator, params = small_generator
  a = jax.vmap(generator.identity, (None, 0))(params, jnp.array([4, 5]))
  b = jax.vmap(generator.identity, (None, 0))(params, jnp.array([6, 7]))
  mixed, label = mixup.identity_mixup(a, b, jnp.array([4, 5]), jnp.array([6, 7]),
                                      jnp.ones((2,)))
  np.testing.assert_array_equal(mixed, a)
  np.testing.assert_array_equal(label.weights, [[1.0, 0.0], [1.0, 0.0]])


def test_generate_cli_with_this_backend(tmp_path, capsys):
  from synface_jax import generate
  out = tmp_path / 'faces.npz'
  generate.main(['--generator', 'discofacegan', '--option', 'preset=small', '--npz', str(out),
                 '--identities', '2', '--per-identity', '2'])
  faces = np.load(out)
  assert faces['images'].shape == (4, 112, 112, 3) and faces['images'].dtype == np.uint8
  np.testing.assert_array_equal(faces['labels'], [0, 0, 1, 1])
  with pytest.raises(SystemExit) as e:  # One line naming the option and the known ones; exit 2.
    generate.main(['--generator', 'discofacegan', '--option', 'nope=1', '--npz', str(out)])
  assert e.value.code == 2 and "--option 'nope=1'" in capsys.readouterr().err
