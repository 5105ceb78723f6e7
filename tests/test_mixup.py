"""Tests for identity mixup, domain mixup, the coefficient samplers and SoftLabel helpers."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synface_jax import SoftLabel, margin_softmax_loss
from synface_jax.mixup import (domain_mixup, identity_mixup, make_sampler, sample_partners,
                               synface_grid)

SYNFACE_GRID = np.float32(np.linspace(0, 1.05, 21, endpoint=False))


@functools.lru_cache(maxsize=None)
def _compiled_sampler(spec):
  return jax.jit(make_sampler(spec), static_argnums=1)


def _draw(spec, seed=0, shape=(4000,)):
  return np.asarray(_compiled_sampler(spec)(jax.random.key(seed), shape))


# --- Samplers. ------------------------------------------------------------------------------------


def test_synface_grid():
  np.testing.assert_allclose(synface_grid(), np.arange(21) * 0.05, atol=1e-12)
  assert synface_grid()[-1] == pytest.approx(1.0)


def test_synface_sampler_covers_its_grid():
  values = _draw('synface')
  assert values.dtype == np.float32
  assert np.isin(values, SYNFACE_GRID).all()
  np.testing.assert_array_equal(np.unique(values), SYNFACE_GRID)
  counts = np.unique(values, return_counts=True)[1]
  assert counts.min() > 0.5 * len(values) / 21  # roughly uniform


def test_linspace_sampler():
  values = _draw('linspace:0.6,1.0,11')
  grid = np.float32(np.linspace(0.6, 1.0, 11))
  np.testing.assert_array_equal(np.unique(values), grid)


@pytest.mark.parametrize('spec,low,high', [('uniform:0.2,0.9', 0.2, 0.9), ('beta:0.2', 0.0, 1.0),
                                           ('beta:2', 0.0, 1.0), ('fixed:0.8', 0.8, 0.8)])
def test_continuous_samplers_stay_in_support(spec, low, high):
  values = _draw(spec)
  assert values.dtype == np.float32 and values.shape == (4000,)
  assert np.all(np.isfinite(values))
  assert values.min() >= np.float32(low) and values.max() <= np.float32(high)
  if low < high:
    assert values.std() > 0.05


def test_fixed_sampler_is_constant():
  np.testing.assert_array_equal(_draw('fixed:0.8', shape=(3, 2)), np.full((3, 2), 0.8, np.float32))
  assert make_sampler(' fixed : 1 ')(jax.random.key(0)).shape == ()


def test_beta_mean_is_one_half():
  assert abs(_draw('beta:2').mean() - 0.5) < 0.03


# The specs and shape of the tests above: their compiled samplers serve here too.
@pytest.mark.parametrize('spec', ['synface', 'linspace:0.6,1.0,11', 'uniform:0.2,0.9', 'beta:2'])
def test_samplers_are_reproducible(spec):
  a = _draw(spec, seed=3)
  np.testing.assert_array_equal(a, _draw(spec, seed=3))
  assert not np.array_equal(a, _draw(spec, seed=4))


@pytest.mark.parametrize('spec', [
    '', 'gauss:0.5', 'fixed', 'fixed:1.5', 'fixed:-0.1', 'fixed:abc', 'fixed:0.1,0.2', 'fixed:nan',
    'synface:3', 'linspace:0,1', 'linspace:0,1,2.5', 'linspace:0,1,0', 'linspace:0,2,5',
    'uniform:0.5,0.2', 'uniform:-0.1,0.5', 'uniform:0,1.1', 'beta:0', 'beta:-1', 'beta:1,2', None,
    0.8
])
def test_bad_specs_raise(spec):
  with pytest.raises(ValueError) as error:
    make_sampler(spec)
  message = str(error.value)
  assert repr(spec) in message
  for form in ('fixed:', 'synface', 'linspace:', 'uniform:', 'beta:'):
    assert form in message


# --- Partners. --------------------------------------------------------------------------------


def test_partners_differ_and_cover_the_others():
  ids = jnp.asarray(np.repeat(np.arange(5), 400), jnp.int32)
  partners = np.asarray(jax.jit(sample_partners, static_argnums=2)(jax.random.key(0), ids, 5))
  ids = np.asarray(ids)
  assert partners.dtype == np.int32
  assert np.all(partners != ids)
  assert partners.min() >= 0 and partners.max() < 5
  for i in range(5):
    assert set(partners[ids == i]) == set(range(5)) - {i}
  again = np.asarray(sample_partners(jax.random.key(0), ids, 5))
  np.testing.assert_array_equal(partners, again)


def test_partners_need_two_identities():
  with pytest.raises(ValueError):
    sample_partners(jax.random.key(0), jnp.zeros(3, jnp.int32), 1)


# --- Identity mixup. ---------------------------------------------------------------------------


def _coeffs(seed, batch=6):
  rng = np.random.default_rng(seed)
  return {'shape': jnp.asarray(rng.normal(size=(batch, 80)), jnp.float32),
          'texture': jnp.asarray(rng.normal(size=(batch, 80)), jnp.float32)}


def test_identity_mixup():
  a, b = _coeffs(0), _coeffs(1)
  id_a = jnp.arange(6, dtype=jnp.int32)
  id_b = jnp.asarray([5, 4, 3, 2, 1, 0], jnp.int32)
  phi = jnp.asarray([1.0, 0.0, 0.8, 0.5, 0.05, 0.3], jnp.float32)
  mixed, label = jax.jit(identity_mixup)(a, b, id_a, id_b, phi)
  assert label.ids.shape == (6, 2) and label.ids.dtype == jnp.int32
  assert label.weights.dtype == jnp.float32
  np.testing.assert_array_equal(label.ids, np.stack([id_a, id_b], 1))
  np.testing.assert_array_equal(label.weights[:, 0], phi)
  np.testing.assert_allclose(label.weights.sum(1), 1.0, rtol=0, atol=1e-7)
  assert np.all((label.weights >= 0) & (label.weights <= 1))
  for name in a:
    assert mixed[name].dtype == jnp.float32
    np.testing.assert_array_equal(mixed[name][0], a[name][0])  # phi = 1: exactly A
    np.testing.assert_array_equal(mixed[name][1], b[name][1])  # phi = 0: exactly B
    expected = phi[:, None] * a[name] + (1 - phi[:, None]) * b[name]
    np.testing.assert_allclose(mixed[name], expected, rtol=1e-6, atol=1e-6)


def test_identity_mixup_plain_array_and_scalar_phi():
  a = jnp.ones((3, 4), jnp.bfloat16)
  b = jnp.zeros((3, 4), jnp.bfloat16)
  mixed, label = identity_mixup(a, b, jnp.zeros(3, jnp.int32), jnp.ones(3, jnp.int32), 0.25)
  assert mixed.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(mixed, np.float32), 0.25)
  np.testing.assert_array_equal(label.weights, [[0.25, 0.75]] * 3)


# --- Domain mixup. -----------------------------------------------------------------------------


def _batches(batch=4, dtype=jnp.float32):
  rng = np.random.default_rng(5)
  x_syn = jnp.asarray(rng.uniform(-1, 1, (batch, 8, 8, 3)), dtype)
  x_real = jnp.asarray(rng.uniform(-1, 1, (batch, 8, 8, 3)), dtype)
  syn = SoftLabel(jnp.asarray(rng.integers(0, 20, (batch, 2)), jnp.int32),
                  jnp.asarray(np.stack([np.full(batch, 0.7), np.full(batch, 0.3)], 1), jnp.float32))
  real = SoftLabel.one_hot(rng.integers(20, 30, batch))
  return x_syn, syn, x_real, real


@pytest.mark.parametrize('psi,take', [(1.0, 'syn'), (0.0, 'real')])
def test_domain_mixup_ends(psi, take):
  x_syn, syn, x_real, real = _batches()
  x, label = jax.jit(domain_mixup)(x_syn, syn, x_real, real, jnp.float32(psi))
  np.testing.assert_array_equal(x, x_syn if take == 'syn' else x_real)
  assert label.ids.shape == (4, 3)
  np.testing.assert_array_equal(label.ids, np.concatenate([syn.ids, real.ids], 1))
  np.testing.assert_array_equal(label.weights[:, :2], syn.weights * psi)
  np.testing.assert_array_equal(label.weights[:, 2], 1 - psi)


def test_domain_mixup_scalar_and_per_example_psi():
  x_syn, syn, x_real, real = _batches()
  x, label = domain_mixup(x_syn, syn, x_real, real, 0.7)
  np.testing.assert_allclose(x, 0.7 * x_syn + 0.3 * x_real, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(label.weights.sum(1), 1.0, atol=1e-6)
  psi = jnp.asarray([1.0, 0.0, 0.25, 0.6], jnp.float32)
  x, label = jax.jit(domain_mixup)(x_syn, syn, x_real, real, psi)
  np.testing.assert_array_equal(x[0], x_syn[0])
  np.testing.assert_array_equal(x[1], x_real[1])
  np.testing.assert_allclose(x[2], 0.25 * x_syn[2] + 0.75 * x_real[2], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(label.weights[:, 2], 1 - psi, rtol=1e-6)
  np.testing.assert_allclose(label.weights[:, 0], 0.7 * psi, rtol=1e-6)
  np.testing.assert_allclose(label.weights.sum(1), 1.0, atol=1e-6)
  assert np.all((label.weights >= 0) & (label.weights <= 1))


def test_domain_mixup_keeps_image_dtype():
  x_syn, syn, x_real, real = _batches(dtype=jnp.bfloat16)
  x, _ = domain_mixup(x_syn, syn, x_real, real, 1.0)
  assert x.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(x_syn, np.float32))


def test_domain_mixup_rejects_matrix_psi():
  x_syn, syn, x_real, real = _batches()
  with pytest.raises(ValueError):
    domain_mixup(x_syn, syn, x_real, real, jnp.ones((4, 1)))


# --- SoftLabel helpers and the whole chain. -----------------------------------------------------


def test_soft_label_dense():
  label = SoftLabel(jnp.asarray([[1, 1, 3], [0, -1, 2], [-1, -1, -1]], jnp.int32),
                    jnp.asarray([[0.2, 0.3, 0.5], [0.6, 0.9, 0.4], [1.0, 0.0, 0.0]], jnp.float32))
  dense = np.asarray(label.dense(4))
  np.testing.assert_allclose(dense, [[0, 0.5, 0, 0.5], [0.6, 0, 0.4, 0], [0, 0, 0, 0]], atol=1e-7)
  one_hot = np.asarray(SoftLabel.one_hot([2, 0]).dense(3))
  np.testing.assert_array_equal(one_hot, [[0, 0, 1], [1, 0, 0]])


def test_soft_label_concat():
  a = SoftLabel.one_hot([1, 2])
  b = SoftLabel(jnp.asarray([[3, 4], [5, 6]], jnp.int32), jnp.full((2, 2), 0.5, jnp.float32))
  c = a.concat(b)
  np.testing.assert_array_equal(c.ids, [[1, 3, 4], [2, 5, 6]])
  np.testing.assert_array_equal(c.weights, [[1, 0.5, 0.5]] * 2)


def test_mixup_chain_feeds_the_loss():
  """IM then DM gives K = 3 labels whose rows sum to 1; the loss weights the three CEs."""
  sampler = make_sampler('synface')

  @jax.jit
  def chain(key, coeffs_a, coeffs_b, x_syn, x_real, real, cos):
    key_phi, key_psi, key_partner = jax.random.split(key, 3)
    ids = jnp.arange(4, dtype=jnp.int32)
    partners = sample_partners(key_partner, ids, 20)
    _, label_syn = identity_mixup(coeffs_a, coeffs_b, ids, partners, sampler(key_phi, (4,)))
    _, label = domain_mixup(x_syn, label_syn, x_real, real, sampler(key_psi))
    loss, logits = margin_softmax_loss(cos, label, scale=30.0)
    return label, loss, logits

  x_syn, _, x_real, real = _batches()
  cos = jnp.asarray(np.random.default_rng(8).uniform(-1, 1, (4, 30)), jnp.float32)
  label, loss, logits = chain(jax.random.key(7), _coeffs(0, 4), _coeffs(1, 4), x_syn, x_real, real,
                              cos)
  assert label.ids.shape == (4, 3)
  np.testing.assert_allclose(label.weights.sum(1), 1.0, atol=1e-6)
  log_prob = np.asarray(jax.nn.log_softmax(logits))
  rows = np.arange(4)[:, None]
  hand = -np.sum(np.asarray(label.weights) * log_prob[rows, np.asarray(label.ids)], axis=1)
  np.testing.assert_allclose(loss, hand, rtol=1e-5)
