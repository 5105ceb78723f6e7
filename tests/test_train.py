"""The jitted train step: sharding equivalence, learning, schedule and mixup inside the step."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import NUM_REAL, NUM_SYN, SIZE, real_batch, tiny_config, tiny_experiment
from synface_jax import config as config_lib, experiment, sharding, train_step
from synface_jax.generators import sampling
from synface_jax.models import IResNet
from toy_generator import ToyGenerator

# Step 1 at learning rate 1 makes the first update exactly -(grad + wd * p), so the gradients can be
# read back from the params; step 2 at a small rate exercises momentum.
EQUIVALENCE_SCHEDULE = optax.piecewise_constant_schedule(1.0, {1: 0.005})


def run(config, mesh_shape, steps=2, schedule=None, real_classes=NUM_REAL):
  """Runs `steps` train steps on a (data, model) mesh; returns losses and host copies of params."""
  exp = tiny_experiment(config, mesh_shape, real_classes=real_classes, schedule=schedule)
  state = exp.init_state()
  history = [jax.device_get(state.params)]
  losses, head_shards = [], [s.data.shape for s in state.params['head'].addressable_shards]
  for i in range(steps):
    batch = sharding.host_local_to_global(real_batch(i), exp.mesh)
    state, metrics = exp.step(state, exp.gen_params, batch, exp.key('step'))
    losses.append(float(metrics.compute()['loss']))
    history.append(jax.device_get(state.params))
  return losses, history, head_shards


def close(got, want):
  """Equal to 1e-5, relative to each array's largest magnitude (float32 sums differ in order)."""
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


@pytest.fixture(scope='module')
def single_device():
  return run(tiny_config(), (1, 1), schedule=EQUIVALENCE_SCHEDULE)


@pytest.mark.slow
@pytest.mark.parametrize('mesh_shape', [(8, 1), (4, 2), (2, 4), (1, 8)])
def test_sharded_step_equals_single_device(single_device, mesh_shape):
  if jax.device_count() < 8:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  config = tiny_config()
  losses, history, head_shards = run(config, mesh_shape, schedule=EQUIVALENCE_SCHEDULE)
  ref_losses, ref_history, _ = single_device
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
  for got, want in zip(history[1:], ref_history[1:]):
    jax.tree.map(close, got, want)
  wd = config.optim.weight_decay
  grads = lambda h: jax.tree.map(lambda p0, p1: (p0 - p1) - wd * p0, h[0], h[1])
  jax.tree.map(close, grads(history), grads(ref_history))
  # Each device holds 1 / (model axis) of the head's classes.
  model_axis = mesh_shape[1]
  assert all(shape == ((NUM_SYN + NUM_REAL) // model_axis, 32) for shape in head_shards)


@pytest.mark.slow
def test_head_padded_to_the_model_axis_matches_unpadded():
  if jax.device_count() < 8:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  config = tiny_config('real')
  ref_losses, ref_history, ref_shards = run(config, (1, 1), real_classes=13)
  losses, history, shards = run(config, (2, 4), real_classes=13)
  assert ref_shards == [(13, 32)] and shards == [(4, 32)] * 8  # 13 classes -> 16 rows, 4 a shard.
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
  close(history[-1]['head'][:13], ref_history[-1]['head'])
  close(history[-1]['backbone']['fc']['kernel'], ref_history[-1]['backbone']['fc']['kernel'])


@pytest.mark.slow
def test_grad_accumulation_equals_per_device_batch_norm():
  """Two micro-batches of 4 and two BN groups of 4 (one per data shard) see the same statistics,
  so the losses and updated params agree (only the running BN averages are updated differently)."""
  if jax.device_count() < 2:
    pytest.skip('needs 2 devices')
  accumulated = tiny_config()
  accumulated.optim.grad_accum_steps = 2
  per_device = tiny_config()
  per_device.mesh.global_batch_norm = False
  losses_a, history_a, _ = run(accumulated, (1, 1))
  losses_b, history_b, _ = run(per_device, (2, 1))
  np.testing.assert_allclose(losses_a, losses_b, rtol=1e-5, atol=1e-5)
  for got, want in zip(history_a[1:], history_b[1:]):
    jax.tree.map(close, got, want)
  # And they differ from one global BN over the whole batch.
  losses_c, _, _ = run(tiny_config(), (1, 1))
  assert abs(losses_c[0] - losses_a[0]) > 1e-4


@pytest.mark.slow
def test_partial_fc_step_touches_only_sampled_rows():
  if jax.device_count() < 8:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  config = tiny_config('real')
  config.loss.sample_rate = 0.25
  losses, history, shards = run(config, (2, 4), steps=1, schedule=EQUIVALENCE_SCHEDULE,
                                real_classes=400)
  assert np.isfinite(losses[0]) and shards == [(100, 32)] * 8
  p0, p1 = history[0]['head'], history[1]['head']
  grads = p0 - p1 - config.optim.weight_decay * p0  # Learning rate 1 on the first step.
  touched = np.abs(grads).max(axis=1) > 1e-7
  # 25 of each shard's 100 rows are scored; the batch's classes (labels < 8) always among them.
  assert touched[:NUM_REAL].sum() >= len(set(real_batch(0)['label']))
  for s in range(4):
    assert 0 < touched[s * 100:(s + 1) * 100].sum() <= 25


@pytest.mark.slow
def test_logits_are_never_gathered_whole():
  """With the head split over 'model', no device assembles the [batch, classes] logits."""
  if jax.device_count() < 8:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  exp = tiny_experiment(tiny_config('real'), (2, 4), real_classes=400)
  batch = sharding.host_local_to_global(real_batch(0), exp.mesh)
  hlo = exp.step.lower(exp.abstract_state, None, batch, exp.key('step')).compile().as_text()
  gathers = [line for line in hlo.splitlines() if 'all-gather' in line and '400' in line]
  assert not gathers, gathers[:3]


def test_step_learns_a_fixed_batch():
  config = tiny_config('real')
  config.optim.learning_rate = 0.5
  config.loss.scale = 16.0
  exp = tiny_experiment(config)
  state = exp.init_state()
  batch = sharding.host_local_to_global(real_batch(3), exp.mesh)
  losses = []
  for _ in range(15):
    state, metrics = exp.step(state, None, batch, exp.key('step'))
    losses.append(float(metrics.compute()['loss']))
  assert losses[-1] < 0.5 * losses[0], losses
  assert int(state.step) == 15
  assert float(metrics.compute()['accuracy']) == 1.0  # Every example nearest its own centre.


def test_accuracy_is_nearest_centre_by_heaviest_label():
  # Rows 0 and 1 are nearest their label's centre by less than any margin; row 2 is not; row 3's
  # heaviest of two labels (weight 0.7) is class 2, the nearest.
  cos = jnp.array([[0.30, 0.29, 0.0], [0.1, 0.5, 0.45], [0.9, 0.2, 0.1], [0.1, 0.3, 0.6]])
  y = train_step.SoftLabel(jnp.array([[0, -1], [1, -1], [1, -1], [1, 2]]),
                           jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.3, 0.7]]))
  np.testing.assert_array_equal(train_step.nearest_centre_correct(cos, y), [1.0, 1.0, 0.0, 1.0])


def test_real_soft_labels_are_offset_past_the_synthetic_classes():
  hard = train_step.real_label({'label': np.array([0, 3], np.int32)}, 10)
  np.testing.assert_array_equal(hard.ids, [[10], [13]])
  soft = train_step.real_label({'label': np.array([0, 3], np.int32),
                           'label_ids': np.array([[0, 2], [3, -1]], np.int32),
                           'label_weights': np.array([[0.8, 0.2], [1.0, 0.0]], np.float32)}, 10)
  np.testing.assert_array_equal(soft.ids, [[10, 12], [13, -1]])
  np.testing.assert_array_equal(soft.weights, np.float32([[0.8, 0.2], [1.0, 0.0]]))


def test_bfloat16_compute_keeps_float32_params():
  config = tiny_config('real')
  config.model.dtype = 'bfloat16'
  exp = tiny_experiment(config, model=IResNet(stage_sizes=(1, 1, 1, 1), width=1 / 16,
                                              num_features=32, dtype=jnp.bfloat16))
  state, metrics = exp.step(exp.init_state(), None,
                            sharding.host_local_to_global(real_batch(0), exp.mesh),
                            exp.key('step'))
  assert np.isfinite(float(metrics.compute()['loss']))
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}


def test_schedule_warmup_and_decay():
  c = config_lib.base_config()
  c.optim.batch_size = 256
  c.optim.learning_rate = 0.1
  c.optim.warmup_epochs = 1
  c.optim.decay_epochs = (3, 5)
  s = experiment.learning_rate_schedule(c, steps_per_epoch=10)
  base = 0.1 * 256 / 512
  assert float(s(0)) == 0.0
  np.testing.assert_allclose(float(s(5)), base / 2, rtol=1e-6)
  np.testing.assert_allclose([float(s(t)) for t in (10, 29, 30, 49, 50, 80)],
                             [base, base, base * 0.1, base * 0.1, base * 0.01, base * 0.01],
                             rtol=1e-6)


def test_synthetic_batch_fixed_draws_and_identity_mixup():
  gen = ToyGenerator(SIZE)
  params = gen.init(jax.random.key(1))
  from synface_jax import mixup
  fn = jax.jit(lambda key: sampling.synthetic_batch(gen, params, key, 64, 4, 2,
                                                    mixup.make_sampler('synface'), draw_seed=5))
  images, label = fn(jax.random.key(0))
  assert images.shape == (64, *SIZE, 3) and label.ids.shape == (64, 2)
  np.testing.assert_allclose(np.asarray(label.weights).sum(1), 1.0, atol=1e-6)
  assert np.all(np.asarray(label.ids[:, 0]) != np.asarray(label.ids[:, 1]))
  # Without mixup, S = 2 fixed draws per identity give at most 4 x 2 distinct images.
  fn = jax.jit(lambda key: sampling.synthetic_batch(gen, params, key, 64, 4, 2, None, draw_seed=5))
  images, label = fn(jax.random.key(1))
  distinct = {np.asarray(im).round(5).tobytes() for im in images}
  assert len(distinct) <= 8
  assert label.ids.shape == (64, 1)
