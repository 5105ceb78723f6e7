"""The procedural face generator: shapes, alignment, determinism, identity mixup, gradients, BFM
loading, verification pairs and the generate CLI. Small images and meshes keep it fast."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_bfm, write_mat
from synface_jax import mixup
from synface_jax.generators import get_generator
from synface_jax.types import Factors
from synface_jax.generators.pairs import pair_identities, synthetic_pairs
from synface_jax.generators.procedural import ProceduralGenerator, bfm

SIZE = (32, 32)
BATCH = 4


@pytest.fixture(scope='module')
def gen():
  return ProceduralGenerator(image_size=SIZE, resolution=0.3, num_identities=50, seed=3)


@pytest.fixture(scope='module')
def params(gen):
  return gen.init(jax.random.PRNGKey(0))


@pytest.fixture(scope='module')
def render(gen):
  return jax.jit(gen.render)


# Factors are drawn by compiled functions: op by op, every small operation would compile anew.
@functools.partial(jax.jit, static_argnums=0)
def _identities(gen, params, ids):
  return jax.vmap(gen.identity, in_axes=(None, 0))(params, ids)


@functools.partial(jax.jit, static_argnums=0)
def _draws(gen, keys, coeffs):
  """One draw of nuisance factors per key, for coefficients [B, 160] (or one [160] for all)."""
  return jax.vmap(gen.sample, in_axes=(0, 0 if coeffs.ndim == 2 else None))(keys, coeffs)


def _factors(gen, params, ids, seed=0):
  coeffs = _identities(gen, params, jnp.asarray(ids))
  return _draws(gen, jax.random.split(jax.random.PRNGKey(seed), len(ids)), coeffs)


def _neutral(batch=1):
  z = lambda n: jnp.zeros((batch, n))
  return Factors(z(160), z(64), z(3), z(27), z(32))


def test_registered_and_built_from_config():
  from ml_collections import ConfigDict
  g = get_generator(ConfigDict({'name': 'procedural', 'image_size': SIZE, 'resolution': 0.3}))
  assert isinstance(g, ProceduralGenerator) and g.image_size == SIZE


def test_shapes_dtypes_ranges(gen, params, render):
  factors = _factors(gen, params, [0, 1, 2, 3])
  assert factors.identity.shape == (BATCH, 160) and factors.expression.shape == (BATCH, 64)
  assert factors.pose.shape == (BATCH, 3) and factors.lighting.shape == (BATCH, 27)
  assert factors.noise.shape == (BATCH, 32)
  images, landmarks = render(params, factors)
  assert images.shape == (BATCH,) + SIZE + (3,) and images.dtype == jnp.float32
  assert landmarks.shape == (BATCH, 5, 2) and landmarks.dtype == jnp.float32
  assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
  assert np.isfinite(np.asarray(landmarks)).all()
  assert float(jnp.std(images)) > 0.05


def test_landmarks_on_template(gen, params, render):
  _, landmarks = render(params, _neutral())
  np.testing.assert_array_less(np.abs(np.asarray(landmarks[0]) - gen.template), 1.0)
  # Any face: landmarks are the exact images of the landmark vertices, centred on the template.
  _, landmarks = render(params, _factors(gen, params, [5, 6, 7, 8]))
  np.testing.assert_allclose(np.asarray(landmarks).mean(1), np.broadcast_to(gen.template.mean(0), (BATCH, 2)),
                             atol=1e-3)


def test_full_size_mean_face_lands_on_arcface_template():
  # The landmarks alone: compiling only them leaves the rasteriser out of the program.
  g = ProceduralGenerator(resolution=0.3)
  assert g.image_size == (112, 112)
  landmarks = jax.jit(lambda p, f: g.render(p, f)[1])(g.init(), _neutral())
  np.testing.assert_array_less(np.abs(np.asarray(landmarks[0]) - g.template), 1.0)


def test_synface_template_size():
  g = ProceduralGenerator(template='synface', resolution=0.3)
  assert g.image_size == (112, 96)
  np.testing.assert_allclose(g.template[0], [38.2946 - 8, 51.6963], atol=1e-4)
  # A 112 x 96 image defaults to SynFace's template.
  g = ProceduralGenerator(image_size=(112, 96), resolution=0.3)
  np.testing.assert_allclose(g.template[0], [38.2946 - 8, 51.6963], atol=1e-4)


def test_identity_deterministic_and_distinct(gen, params):
  a = gen.identity(params, 7)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(gen.identity(params, 7)))
  assert a.shape == (160,)
  assert float(jnp.abs(a - gen.identity(params, 8)).max()) > 0.1
  other_seed = ProceduralGenerator(image_size=SIZE, resolution=0.3, seed=4)
  assert float(jnp.abs(a - other_seed.identity(params, 7)).max()) > 0.1


def test_morphology_moves_shape_and_texture_together(gen, params):
  from synface_jax.generators.procedural import generator as generator_lib, shape_basis, texture
  sex = 80 + texture.NAMES.index('sex')
  # Sex is bimodal over the pool: almost every identity near -1.1 or +1.1, both about equally often.
  values = np.asarray(_identities(gen, params, jnp.arange(400)))[:, sex]
  assert np.mean(np.abs(values) > 0.8) > 0.75 and 0.35 < np.mean(values > 0) < 0.65
  # One unit of sex moves the vertices by the weighted sum of the named fields it lists.
  model = gen._model
  surface_fields = dict(zip(shape_basis.IDENTITY_NAMES, _named_fields(gen)))
  want = sum(w * surface_fields[name] for name, w in shape_basis.MORPHOLOGY['sex'].items())
  one = _neutral()._replace(identity=jnp.zeros((1, 160)).at[0, sex].set(1.0))
  moved = np.stack(generator_lib._deform(params, one), -1)[0]
  rest = np.stack(generator_lib._deform(params, _neutral()), -1)[0]
  np.testing.assert_allclose(moved - rest, want, atol=2e-4 * np.abs(want).max() + 1e-6)
  # Facial hair only on men: the same beard coefficient, both sexes.
  coeffs = np.zeros((2, 80), np.float32)
  coeffs[:, texture.NAMES.index('beard')] = 2.5
  coeffs[:, texture.NAMES.index('sex')] = [1.1, -1.1]
  beard = np.asarray(texture.decode(jnp.asarray(coeffs))['beard'])[:, 0]
  assert beard[0] > 0.8 and beard[1] < 0.05


def test_glasses_frame_the_eyes_of_those_who_wear_them():
  from synface_jax.generators.procedural import fields, shader, texture
  coeffs = np.zeros((2, 80), np.float32)
  coeffs[:, texture.NAMES.index('glasses')] = [3.0, -3.0]
  p = texture.decode(jnp.asarray(coeffs))
  u = jnp.asarray(np.array([[fields.EYE_U, fields.EYE_U + 0.155, 0.0, 1.0, 0.0]]), jnp.float32)
  v = jnp.asarray(np.array([[fields.EYE_V, fields.EYE_V + 0.01, fields.EYE_V + 0.045, 0.04 - 0.03 * 0.53,
                             -0.7]]), jnp.float32)
  frame = np.asarray(shader._glasses(jnp.repeat(u, 2, 0), jnp.repeat(v, 2, 0), p))
  # Wearer: clear through the lens, frame on the rim, the bridge and the arm, none on the mouth.
  np.testing.assert_allclose(frame[0], [0.0, 1.0, 1.0, 1.0, 0.0], atol=0.05)
  assert frame[1].max() < 0.01  # Not a wearer.
  share = np.asarray(texture.decode(jax.random.normal(jax.random.PRNGKey(0), (4000, 80)))['glasses'])
  assert 0.05 < np.mean(share > 0.5) < 0.2


def test_hair_styles_fringe_and_hair_beside_the_face():
  from synface_jax.generators.procedural import shader, texture
  coeffs = np.zeros((2, 80), np.float32)
  name = lambda n: texture.NAMES.index(n)
  coeffs[:, name('sex')] = -1.1  # Women: long hair.
  coeffs[:, name('hair_length')] = 2.0
  coeffs[:, name('fringe')] = [3.0, -3.0]
  coeffs[:, name('hair_side')] = [3.0, -3.0]
  p = texture.decode(jnp.asarray(coeffs))
  # Mid-forehead, between the brows, beside the cheek (in front of the ear at mouth level), the nose.
  u = jnp.asarray(np.array([[0.0, 0.0, 1.05, 0.0]] * 2), jnp.float32)
  v = jnp.asarray(np.array([[0.47, 0.2, -0.6, -0.3]] * 2), jnp.float32)
  hair = np.asarray(shader._hair(u, v, p)[0])
  # With a fringe and long side hair: hair on the forehead and beside the face; never between the
  # brows or on the nose. Without: bare forehead and cheek.
  np.testing.assert_allclose(hair[0], [1.0, 0.0, 1.0, 0.0], atol=0.05)
  np.testing.assert_allclose(hair[1], [0.0, 0.0, 0.0, 0.0], atol=0.05)


def _named_fields(gen):
  from synface_jax.generators.procedural import grid as grid_lib, shape_basis, skull, features
  g = grid_lib.make_grid(gen.resolution)
  points, normals = skull.base_surface(g)
  mouth = np.repeat(g.mouth, g.cols)
  surface = shape_basis.Surface(g.uv(), mouth, points, normals)
  return shape_basis._identity_named(surface)


def test_nuisance_changes_image_not_identity(gen, params, render):
  coeffs = gen.identity(params, 2)
  draws = _draws(gen, jax.random.split(jax.random.PRNGKey(1), 2), coeffs)
  np.testing.assert_array_equal(np.asarray(draws.identity[0]), np.asarray(coeffs))
  np.testing.assert_array_equal(np.asarray(draws.identity[1]), np.asarray(coeffs))
  assert float(jnp.abs(draws.pose[0] - draws.pose[1]).max()) > 0
  assert float(jnp.abs(draws.lighting[0] - draws.lighting[1]).max()) > 0
  images, _ = render(params, jax.tree.map(lambda a: jnp.concatenate([a, a]), draws))
  assert float(jnp.abs(images[0] - images[1]).mean()) > 0.02


def test_pose_prior_ranges(gen):
  draws = jax.jit(jax.vmap(gen.sample, in_axes=(0, None)))(
      jax.random.split(jax.random.PRNGKey(2), 2000), jnp.zeros(160))
  pitch, yaw, roll = np.abs(np.asarray(draws.pose)).T
  assert np.mean(yaw < np.radians(45)) > 0.9 and yaw.max() < np.radians(50)
  assert pitch.max() < np.radians(21) and roll.max() < np.radians(11)


def test_mixup_endpoints(gen, params, render):
  # Batches of BATCH faces, so the renderer compiled for the other tests is reused.
  ids_a, ids_b = jnp.full((BATCH,), 1), jnp.full((BATCH,), 9)
  ca, cb = _identities(gen, params, ids_a), _identities(gen, params, ids_b)
  phi = jnp.array([1.0, 0.0] * (BATCH // 2))
  mixed, label = jax.jit(mixup.identity_mixup)(ca, cb, ids_a, ids_b, phi)
  np.testing.assert_array_equal(np.asarray(mixed[0]), np.asarray(ca[0]))
  np.testing.assert_array_equal(np.asarray(mixed[1]), np.asarray(cb[1]))
  nuisance = _draws(gen, jnp.stack([jax.random.PRNGKey(5)] * BATCH), ca[0])
  batch = lambda coeffs: nuisance._replace(identity=coeffs)
  got, _ = render(params, batch(mixed))
  want_a, _ = render(params, batch(jnp.stack([ca[0]] * BATCH)))
  want_b, _ = render(params, batch(jnp.stack([cb[0]] * BATCH)))
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want_a[0]))
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want_b[1]))
  np.testing.assert_allclose(np.asarray(label.weights)[:2], [[1, 0], [0, 1]])


def test_deterministic_for_a_key(gen, params, render):
  one = render(params, _factors(gen, params, [0, 1, 2, 3], seed=11))[0]
  two = render(params, _factors(gen, params, [0, 1, 2, 3], seed=11))[0]
  np.testing.assert_array_equal(np.asarray(one), np.asarray(two))


def test_batch_equals_single_renders(gen, params, render):
  factors = _factors(gen, params, [4, 5, 6, 7], seed=2)
  images, landmarks = render(params, factors)
  for i in (0, 3):
    single, lm = render(params, jax.tree.map(lambda a: a[i:i + 1], factors))
    # The albedo layers are stored as float16: equal to a fraction of one 8-bit level (2 / 255).
    np.testing.assert_allclose(np.asarray(single[0]), np.asarray(images[i]), atol=1e-3)
    np.testing.assert_allclose(np.asarray(lm[0]), np.asarray(landmarks[i]), atol=1e-3)


def test_gradient_wrt_factors(gen, params):
  # BATCH faces, so the factor draws compiled for the other tests are reused.
  factors = _factors(gen, params, [0, 1, 2, 3], seed=4)
  loss = lambda f: jnp.mean(jnp.square(gen.render(params, f)[0]))
  grads = jax.jit(jax.grad(loss))(factors)
  for name in ('identity', 'expression', 'pose', 'lighting'):
    g = np.asarray(getattr(grads, name))
    assert np.isfinite(g).all(), name
    assert np.abs(g).max() > 0, name


def test_pair_identities_layout():
  ids, issame = pair_identities(0, 60, 1000, 100)
  assert ids.shape == (120,) and issame.shape == (60,) and issame.dtype == bool
  assert issame.sum() == 30
  a, b = ids[0::2], ids[1::2]
  np.testing.assert_array_equal(a == b, issame)
  assert ids.min() >= 1000 and ids.max() < 1100
  folds = issame.reshape(10, 6)
  assert (folds.sum(1) == 3).all()
  with pytest.raises(ValueError):
    pair_identities(0, 30, 0, 100)


def test_synthetic_pairs(gen, params):
  images, issame = synthetic_pairs(gen, params, jax.random.PRNGKey(0), num_pairs=20, batch_size=BATCH * 4)
  assert images.shape == (40,) + SIZE + (3,) and images.dtype == np.uint8
  assert issame.shape == (20,) and issame.sum() == 10
  # Defaults draw identities from beyond the training pool.
  seed = int(jax.random.randint(jax.random.PRNGKey(0), (), 0, 2 ** 31 - 1))
  ids, _ = pair_identities(seed, 20, gen.num_identities, 20)
  assert ids.min() >= gen.num_identities


def test_bfm_loader_and_render(tmp_path):
  path = str(tmp_path / 'BFM_model_front.mat')
  fields = tiny_bfm()
  write_mat(path, fields, compress=('idBase', 'tri'))
  model = bfm.load_bfm(path)
  assert model.mean.shape == (3, 28 * 28) and model.identity_basis.shape == (80, 3 * 28 * 28)
  assert model.expression_basis.shape == (64, 3 * 28 * 28) and model.texture_basis.shape == (80, 3 * 28 * 28)
  np.testing.assert_allclose(model.mean_texture[:, 0], [200 / 255, 150 / 255, 130 / 255], rtol=1e-6)
  assert model.mesh.triangles.min() == 0
  # Bases keep their values (interleaved x, y, z rows become planes) and are zero-padded.
  np.testing.assert_allclose(model.identity_basis[2, 28 * 28 + 5], fields['idBase'][3 * 5 + 1, 2], rtol=1e-6)
  assert not model.identity_basis[6:].any()
  g = ProceduralGenerator(image_size=SIZE, bfm_path=path)
  p = g.init()
  images, landmarks = jax.jit(g.render)(p, _factors(g, p, [0, 1]))
  assert images.shape == (2,) + SIZE + (3,) and np.isfinite(np.asarray(images)).all()
  assert float(images.min()) >= -1 and float(images.max()) <= 1
  assert float(jnp.std(images)) > 0.02 and landmarks.shape == (2, 5, 2)


def test_bfm_missing_field(tmp_path):
  path = str(tmp_path / 'broken.mat')
  fields = tiny_bfm(6, 6)
  del fields['tri']
  write_mat(path, fields)
  with pytest.raises(bfm.MatFileError, match=r"broken.mat.*'tri'"):
    bfm.load_bfm(path)
  with open(tmp_path / 'junk.mat', 'wb') as f:
    f.write(b'x' * 200)
  with pytest.raises(bfm.MatFileError, match='junk.mat'):
    bfm.load_bfm(str(tmp_path / 'junk.mat'))


def test_generate_cli(tmp_path):
  # In this process: the model built for the other tests is reused (its build is cached).
  from synface_jax import generate
  config = tmp_path / 'tiny.py'
  config.write_text(
      'from ml_collections import ConfigDict\n'
      'def get_config():\n'
      "  return ConfigDict({'generator': {'name': 'procedural', 'image_size': (32, 32), 'resolution': 0.3},\n"
      "                     'synthetic': {'num_identities': 20}})\n")
  out = tmp_path / 'out'
  npz = tmp_path / 'faces.npz'
  generate.main([f'--config={config}', '--out', str(out), '--npz', str(npz), '--identities', '3',
                 '--per-identity', '2', '--mixup', 'fixed:0.8'])
  for name in ('identities', 'mixup', 'pose', 'lighting', 'expression'):
    assert (out / f'{name}.png').stat().st_size > 1000
  data = np.load(npz)
  assert data['images'].shape == (6, 32, 32, 3) and data['images'].dtype == np.uint8
  assert data['labels'].tolist() == [0, 0, 1, 1, 2, 2] and data['labels'].dtype.kind == 'i'
  assert data['identity'].shape == (6, 160) and data['pose'].shape == (6, 3)
  assert data['lighting'].shape == (6, 27) and data['expression'].shape == (6, 64)
  np.testing.assert_allclose(data['mix_weights'], [[0.8, 0.2]] * 6, rtol=1e-6)
