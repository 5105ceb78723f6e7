"""One run built from its config (Experiment.from_config) and its named random streams (seeds)."""
import hashlib

import jax
import numpy as np
import pytest

from conftest import NUM_REAL, NUM_SYN, tiny_config, tiny_experiment
from synface_jax import seeds


def test_a_named_seed_is_the_documented_hash_of_the_run_seed_and_the_name():
  def expected(text):
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], 'little') >> 1
  assert seeds.seed(0, 'draws') == expected('0/draws') == 1550834030  # Exported sets rely on it.
  assert seeds.seed(7, 'data', 3) == expected('7/data/3')
  values = {seeds.seed(s, name) for s in (0, 1) for name in seeds.NAMES}
  assert len(values) == 2 * len(seeds.NAMES)  # No two streams share a seed.
  assert all(0 <= v < 2 ** 31 for v in values)
  np.testing.assert_array_equal(jax.random.key_data(seeds.key(3, 'step')),
                                jax.random.key_data(jax.random.key(expected('3/step'))))
  with pytest.raises(ValueError, match=r"unknown random stream 'drawz'; valid: params, "):
    seeds.seed(0, 'drawz')


@pytest.mark.parametrize('regime, classes, per_epoch', [
    ('mixed', NUM_SYN + NUM_REAL, 32 // 8),   # Epochs count the synthetic set: 8 ids x 4 images.
    ('synthetic', NUM_SYN, 32 // 8),
    ('real', NUM_REAL, NUM_REAL * 8 // 8),   # The real set's 8 ids x 8 images.
])
def test_the_run_derives_classes_epochs_and_the_state_from_the_config(regime, classes, per_epoch):
  config = tiny_config(regime)
  config.optim.num_epochs = 3
  exp = tiny_experiment(config)
  assert exp.num_classes == classes and exp.steps_per_epoch == per_epoch
  assert exp.num_steps == 3 * per_epoch
  assert (exp.generator is None) == (regime == 'real')
  assert (exp.real is None) == (regime == 'synthetic')
  assert exp.abstract_state.params['head'].shape == (classes, 32)
  config.num_train_steps = 5
  assert tiny_experiment(config).num_steps == 5


def test_the_run_seed_names_the_initial_state_and_the_step_key():
  config = tiny_config('real')
  a, b = tiny_experiment(config).init_state(), tiny_experiment(config).init_state()
  config.seed = 1
  other = tiny_experiment(config)
  c = other.init_state()
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  assert not np.array_equal(a.params['head'], c.params['head'])
  abstract = jax.tree.map(lambda s: (s.shape, s.dtype, s.sharding), other.abstract_state)
  assert jax.tree.map(lambda x: (x.shape, x.dtype, x.sharding), c) == abstract
  np.testing.assert_array_equal(jax.random.key_data(other.key('step')),
                                jax.random.key_data(seeds.key(1, 'step')))


def test_the_initial_state_is_flax_init_of_the_params_key(monkeypatch):
  # init_state compiles its initialiser at a lower XLA:CPU optimisation level (it runs once); the
  # values must be those of flax's init under a plain jax.jit: the same draws, to float32 rounding.
  # (The suite's XLA_FLAGS set a level, which init_state then keeps; here it must use its own.)
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  config = tiny_config('synthetic')
  exp = tiny_experiment(config)
  state = exp.init_state()
  k_model, _ = jax.random.split(exp.key('params'))
  x = jax.numpy.zeros((1, *config.model.input_size, 3), jax.numpy.float32)
  want = jax.jit(lambda k: exp.model.init(k, x, train=False))(k_model)
  same = lambda got, w: np.testing.assert_allclose(got, w, rtol=1e-6, atol=1e-7)
  jax.tree.map(same, jax.device_get(state.params['backbone']), jax.device_get(want['params']))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.batch_stats),
               jax.device_get(want['batch_stats']))
  assert int(state.step) == 0
