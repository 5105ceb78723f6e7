"""Extensions named in a config as module:callable (synface_jax/extensions.py): checked against
their interface before any compute, and used by the step where the config says."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synface_jax import config as config_lib, experiment, generators, sharding, train_step
from toy_generator import ToyGenerator


def real_only_mixup(key, x_syn, label_syn, x_real, label_real, psi):
  """A domain mixup that keeps only the real side (the test can tell it ran)."""
  del key, x_syn, label_syn, psi
  return x_real, label_real


def constant_loss(cos, label, *, scale, m1, m2, m3, fallback, offset=3.0):
  """A loss of `offset` for every example, whatever the cosines (with config.loss.offset)."""
  del label, scale, m1, m2, m3, fallback
  return jnp.full(cos.shape[:1], offset, jnp.float32) + 0.0 * cos.sum(-1), cos


def _config(field, value, regime='synthetic'):
  c = config_lib.base_config()
  c.regime = regime
  c.real.path = '/unused'
  block, name = field.split('.')
  c[block][name] = value
  return c


@pytest.mark.parametrize('field, value, says', [
    ('im.fn', 'no_such_package.mixups:mix', "cannot import 'no_such_package.mixups'"),
    ('im.fn', 'synface_jax.mixup:no_such_mixup', "has no 'no_such_mixup'"),
    ('dm.fn', 'synface_jax.mixup', 'expected module:callable'),
    ('im.fn', 'synface_jax.mixup:make_sampler', 'not a types.Mixup'),
    ('loss.fn', 'synface_jax.losses:cosine', 'not a types.Loss'),
    ('loss.fn', 'synface_jax.losses:ARCFACE', 'is not callable'),
    ('generator.name', 'synface_jax.types:SoftLabel', 'not a types.Generator: it lacks init'),
])
def test_a_bad_extension_is_named_by_field_and_value(field, value, says):
  with pytest.raises(ValueError) as e:
    config_lib.validate(_config(field, value))
  message = str(e.value)
  assert f'config field {field}={value!r}' in message and says in message, message
  assert '\n' not in message


def truncating_mixup(key, a, label_a, b, label_b, weight):
  """Right signature, wrong output: drops most identity coefficients."""
  del key, b, label_b, weight
  return a._replace(identity=a.identity[:, :10]), label_a


def ids_only_mixup(key, a, label_a, b, label_b, weight):
  del key, b, label_b, weight
  return a, label_a.ids


def per_class_loss(cos, label, **hyper):
  """Returns [B, C] where the loss must be [B]."""
  del label, hyper
  return cos, cos


def typo_mixup(key, a, label_a, b, label_b, weight):
  del key, b, label_b, weight
  return a.identiti, label_a


@pytest.mark.parametrize('field, value, says', [
    ('im.fn', 'test_extensions:truncating_mixup',
     "shaped like its first side Factors(identity='float32[2, 160]'"),
    ('dm.fn', 'test_extensions:ids_only_mixup', 'the label it returns is not a SoftLabel'),
    ('loss.fn', 'test_extensions:per_class_loss', "must return (loss float [B], logits float [B, C])"),
    ('im.fn', 'test_extensions:typo_mixup',
     "fails on inputs of the configured shapes (batch 2): AttributeError"),
])
def test_an_extension_with_the_wrong_outputs_is_named_before_any_compute(field, value, says):
  c = _config(field, value, 'mixed' if field == 'dm.fn' else 'synthetic')
  with pytest.raises(ValueError) as e:
    config_lib.validate(c)
  message = str(e.value)
  assert message.startswith(f'config field {field}={value!r}: ') and says in message, message
  assert '\n' not in message


def test_the_builtin_identity_mixup_with_two_partners_is_refused_by_validate():
  c = _config('im.enabled', True)
  c.im.partners = 2  # SynFace's mixup mixes one partner; the Dirichlet example takes more.
  with pytest.raises(ValueError, match=r"im.fn='synface_jax.mixup:mix_identities'.*one partner"):
    config_lib.validate(c)


def test_defaults_and_user_extensions_pass_validation():
  config_lib.validate(_config('im.enabled', True))
  c = _config('dm.fn', 'test_extensions:real_only_mixup', 'mixed')
  c.loss.fn = 'test_extensions:constant_loss'
  c.generator.name = 'toy_generator:ToyGenerator'
  config_lib.validate(c)


def test_a_generator_of_ones_own_is_built_from_the_shared_fields_and_checked():
  c = _config('generator.name', 'toy_generator:ToyGenerator')
  c.model.input_size = (48, 32)
  c.synthetic.num_identities = 7
  generator = generators.get_generator(c.generator)
  assert isinstance(generator, ToyGenerator)
  assert generator.image_size == (48, 32) and generator.num_identities == 7
  c.generator.name = 'synface_jax.types:Factors'  # Callable, but takes none of the fields.
  with pytest.raises(ValueError, match=r"generator.name='synface_jax.types:Factors': cannot be built"):
    generators.get_generator(c.generator)


def test_the_step_inputs_use_the_configured_domain_mixup():
  c = _config('dm.fn', 'test_extensions:real_only_mixup', 'mixed')
  c.dm.enabled = True
  c.model.input_size = (32, 32)
  c.optim.batch_size = 4
  c.synthetic.num_identities = 4
  mesh = sharding.make_mesh(1, 1, devices=jax.devices()[:1])
  inputs = train_step.make_inputs(c, mesh, generator=ToyGenerator((32, 32)), num_real_images=8)
  real = {'image': np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32),
          'label': np.arange(4, dtype=np.int32)}
  gen_params = ToyGenerator((32, 32)).init(jax.random.key(1))
  x, y, _, _ = jax.jit(inputs)(gen_params, real, jax.random.key(2), 0)
  np.testing.assert_array_equal(x, real['image'])
  np.testing.assert_array_equal(y.ids, np.arange(4)[:, None] + 4)  # Past the synthetic classes.


@pytest.mark.slow
def test_the_step_uses_the_configured_loss_with_the_loss_fields():
  c = _config('loss.fn', 'test_extensions:constant_loss', 'real')
  c.loss.offset = 2.5  # A field of the config's own, passed to the loss.
  c.model.input_size = (32, 32)
  c.optim.batch_size = 4
  mesh = sharding.make_mesh(1, 1, devices=jax.devices()[:1])
  exp = experiment.Experiment.from_config(_tiny(c), mesh, real=experiment.RealCounts(4, 40))
  real = {'image': np.zeros((4, 32, 32, 3), np.float32), 'label': np.arange(4, dtype=np.int32)}
  _, metrics = exp.step(exp.init_state(), None, sharding.host_local_to_global(real, mesh),
                        exp.key('step'))
  assert float(metrics.compute()['loss']) == pytest.approx(2.5)


def _tiny(c):
  c.model.arch, c.model.width, c.model.num_features = 'r18', 1 / 16, 32
  return c

