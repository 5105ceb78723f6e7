"""Tests for the soft-target margin softmax and the cosine head."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import reference_file

from synface_jax import SoftLabel, margin_softmax_loss
from synface_jax.losses import ARCFACE, COSFACE, cosine, margin_target

GOLDEN_DIR = 'insightface_synface'

# Compiled once per configuration: much faster on CPU than op-by-op dispatch.
loss_fn = jax.jit(margin_softmax_loss, static_argnames=('scale', 'm1', 'm2', 'm3', 'fallback'))
cosine_fn = jax.jit(cosine)


def _synface_label(case, prefix, dtype):
  """SynFace's three targets as one SoftLabel: (a, b, real) with (psi w_a, psi w_b, 1 - psi)."""
  psi = case[prefix + 'psi']
  ids = np.stack([case[prefix + 'label_a'], case[prefix + 'label_b'], case[prefix + 'label_real']], 1)
  w_a = case[prefix + 'w_a'].astype(np.float64)
  w_b = case[prefix + 'w_b'].astype(np.float64)
  weights = np.stack([psi * w_a, psi * w_b, np.full_like(w_a, 1 - psi)], 1)
  return SoftLabel(jnp.asarray(ids, jnp.int32), jnp.asarray(weights, dtype))


def _synface_loss(x, w, label):
  loss, logits = loss_fn(cosine(x, w), label, scale=30.0, m2=0.5)
  return jnp.mean(loss), logits


@pytest.fixture(scope='module')
def synface_golden():
  return dict(np.load(reference_file(GOLDEN_DIR, 'synface_mixup_loss.npz')))


@pytest.fixture(scope='module')
def margin_golden():
  return dict(np.load(reference_file(GOLDEN_DIR, 'margin_losses.npz')))


@pytest.mark.parametrize('k', [0, 1, 2])
def test_synface_golden_float64(synface_golden, k):
  g, p = synface_golden, f'case{k}_'
  with jax.enable_x64(True):
    label = _synface_label(g, p, jnp.float64)
    x, w = jnp.asarray(g[p + 'X']), jnp.asarray(g[p + 'W'])
    grad_fn = jax.jit(jax.value_and_grad(_synface_loss, argnums=(0, 1), has_aux=True))
    (loss, logits), (grad_x, grad_w) = jax.device_get(grad_fn(x, w, label))
    assert logits.dtype == np.float64
    np.testing.assert_allclose(cosine_fn(x, w), g[p + 'cosine'], rtol=0, atol=1e-12)
    # SynFace's w_a + w_b is float32 and can miss 1 by ~3e-8, which moves its non-target
    # logits by ~1e-6; ours treat those rows as summing exactly.
    np.testing.assert_allclose(logits, g[p + 'out'], rtol=0, atol=1e-5)
    np.testing.assert_allclose(loss, g[p + 'loss'], rtol=0, atol=1e-5)
    np.testing.assert_allclose(grad_x, g[p + 'grad_X'], rtol=0, atol=1e-5)
    np.testing.assert_allclose(grad_w, g[p + 'grad_W'], rtol=0, atol=1e-5)


@pytest.mark.parametrize('k', [0, 1, 2])
def test_synface_golden_float32(synface_golden, k):
  g, p = synface_golden, f'case{k}_'
  label = _synface_label(g, p, jnp.float32)
  x = jnp.asarray(g[p + 'X'], jnp.float32)
  w = jnp.asarray(g[p + 'W'], jnp.float32)
  grad_fn = jax.jit(jax.value_and_grad(_synface_loss, argnums=(0, 1), has_aux=True))
  (loss, logits), (grad_x, grad_w) = grad_fn(x, w, label)
  assert logits.dtype == jnp.float32 and grad_x.dtype == jnp.float32
  # float32 logits are O(30): absolute 1e-5 is a few ulps.
  np.testing.assert_allclose(logits, g[p + 'out_f32'], rtol=0, atol=1e-5)
  np.testing.assert_allclose(loss, g[p + 'loss_f32'], rtol=1e-6, atol=1e-5)
  # Gradients through the float32 normalisation agree to ~2e-6 (entries are O(1)).
  np.testing.assert_allclose(grad_x, g[p + 'grad_X_f32'], rtol=0, atol=1e-5)
  np.testing.assert_allclose(grad_w, g[p + 'grad_W_f32'], rtol=0, atol=1e-5)


@pytest.mark.parametrize('name,margins', [('arcface', ARCFACE), ('cosface', COSFACE)])
def test_insightface_golden_float64(margin_golden, name, margins):
  g = margin_golden
  np.testing.assert_array_equal(g[f'{name}_m'], [margins['m1'], margins['m2'], margins['m3']])
  labels = g['labels']
  valid = labels >= 0
  with jax.enable_x64(True):
    cos = jnp.asarray(g['cos'], jnp.float64)
    label = SoftLabel.one_hot(labels)

    def mean_valid_loss(c):
      loss, logits = loss_fn(c, label, scale=float(g[f'{name}_s']), fallback=False,
                                         **margins)
      return jnp.sum(loss) / np.sum(valid), (loss, logits)

    grad_fn = jax.jit(jax.value_and_grad(mean_valid_loss, has_aux=True))
    (mean, (loss, logits)), grad_cos = jax.device_get(grad_fn(cos))
  np.testing.assert_allclose(logits, g[f'{name}_logits'], rtol=0, atol=1e-5)
  np.testing.assert_allclose(loss, g[f'{name}_ce_per_row'], rtol=0, atol=1e-5)
  assert np.all(loss[~valid] == 0)
  np.testing.assert_allclose(mean, g[f'{name}_loss_ce_valid'], rtol=0, atol=1e-5)
  np.testing.assert_allclose(grad_cos[~valid], 0, atol=0)
  if name == 'arcface':
    # The true chain rule, not insightface's straight-through gradient.
    np.testing.assert_allclose(grad_cos, g['arcface_grad_cos_truechain_ce_valid'], rtol=0, atol=1e-5)
    hard, target = int(g['hard_row']), int(labels[g['hard_row']])
    assert grad_cos[hard, target] > 0 > g['arcface_grad_cos_ce_valid'][hard, target]
  else:
    # CosFace's straight-through gradient is exact.
    np.testing.assert_allclose(grad_cos, g['cosface_grad_cos_ce_valid'], rtol=0, atol=1e-5)


def test_insightface_golden_float32_logits(margin_golden):
  g = margin_golden
  label = SoftLabel.one_hot(g['labels'])
  for name, margins in (('arcface', ARCFACE), ('cosface', COSFACE)):
    _, logits = loss_fn(jnp.asarray(g['cos']), label, scale=64.0, fallback=False,
                                    **margins)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, g[f'{name}_logits_f32'], rtol=0, atol=2e-5)


def test_fallback_changes_only_the_hard_row(margin_golden):
  g = margin_golden
  cos = jnp.asarray(g['cos'])
  label = SoftLabel.one_hot(g['labels'])
  _, plain = loss_fn(cos, label, scale=64.0, fallback=False, **ARCFACE)
  _, with_fallback = loss_fn(cos, label, scale=64.0, fallback=True, **ARCFACE)
  hard, target = int(g['hard_row']), int(g['labels'][g['hard_row']])
  assert cos[hard, target] < math.cos(math.pi - 0.5)
  expected = 64.0 * (g['cos'][hard, target] - 0.5 * math.sin(0.5))
  np.testing.assert_allclose(with_fallback[hard, target], expected, rtol=1e-6)
  assert abs(float(with_fallback[hard, target] - plain[hard, target])) > 1.0
  changed = np.asarray(with_fallback != plain)
  assert changed.sum() == 1 and changed[hard, target]


def test_cosface_fallback_is_a_no_op(margin_golden):
  cos = jnp.asarray(margin_golden['cos'])
  label = SoftLabel.one_hot(margin_golden['labels'])
  a = loss_fn(cos, label, scale=64.0, fallback=True, **COSFACE)
  b = loss_fn(cos, label, scale=64.0, fallback=False, **COSFACE)
  np.testing.assert_array_equal(a[1], b[1])


# --- Hand implementations on random data. -------------------------------------------------------


def _hand_phi(c, m2, fallback):
  phi = np.cos(np.arccos(np.clip(c, -1, 1)) + m2)
  if fallback:
    phi = np.where(c > math.cos(math.pi - m2), phi, c - m2 * math.sin(math.pi - m2))
  return phi


def _hand_loss(cos, ids, weights, scale, m2, fallback):
  """The soft-target formula written out row by row, slot by slot, in float64."""
  batch, classes = cos.shape
  targets = np.zeros((batch, classes))
  for i in range(batch):
    for k in range(ids.shape[1]):
      if ids[i, k] >= 0:
        targets[i, ids[i, k]] += weights[i, k]
  logits = scale * (cos + targets * (_hand_phi(cos, m2, fallback) - cos))
  shifted = logits - logits.max(1, keepdims=True)
  log_prob = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
  loss = np.zeros(batch)
  for i in range(batch):
    for k in range(ids.shape[1]):
      if ids[i, k] >= 0:
        loss[i] -= weights[i, k] * log_prob[i, ids[i, k]]
  return loss, logits


def _random_case(seed=0, batch=6, classes=11):
  rng = np.random.default_rng(seed)
  cos = rng.uniform(-0.99, 0.99, (batch, classes))
  cos[0, 3] = -0.95  # below cos(pi - 0.5): fallback branch
  ids = rng.integers(0, classes, (batch, 3))
  ids[1, 1] = ids[1, 0]  # duplicate id in a row
  ids[2, 2] = -1  # an empty slot
  ids[0, 0] = 3
  ids[5] = -1  # an empty row
  weights = rng.dirichlet(np.ones(3), batch)
  return cos, ids, weights


@pytest.mark.parametrize('fallback', [True, False])
def test_matches_hand_formula(fallback):
  cos, ids, weights = _random_case()
  hand_loss, hand_logits = _hand_loss(cos, ids, weights, 30.0, 0.5, fallback)
  label = SoftLabel(jnp.asarray(ids, jnp.int32), jnp.asarray(weights, jnp.float32))
  loss, logits = loss_fn(jnp.asarray(cos, jnp.float32), label, scale=30.0, fallback=fallback)
  np.testing.assert_allclose(logits, hand_logits, rtol=0, atol=2e-5)
  np.testing.assert_allclose(loss, hand_loss, rtol=1e-5, atol=1e-5)
  with jax.enable_x64(True):
    label64 = SoftLabel(jnp.asarray(ids, jnp.int32), jnp.asarray(weights))
    loss64, logits64 = jax.device_get(
        loss_fn(jnp.asarray(cos), label64, scale=30.0, fallback=fallback))
    assert loss64.dtype == np.float64
  np.testing.assert_allclose(logits64, hand_logits, rtol=0, atol=1e-12)
  np.testing.assert_allclose(loss64, hand_loss, rtol=0, atol=1e-10)


def test_empty_slots_and_rows_contribute_nothing():
  cos, ids, weights = _random_case()
  cos = jnp.asarray(cos, jnp.float32)
  label = SoftLabel(jnp.asarray(ids, jnp.int32), jnp.asarray(weights, jnp.float32))

  def total(c, w):
    return jnp.sum(loss_fn(c, SoftLabel(label.ids, w), scale=30.0)[0])

  loss, logits = loss_fn(cos, label, scale=30.0)
  grad_cos, grad_w = jax.jit(jax.grad(total, argnums=(0, 1)))(cos, label.weights)
  assert loss[5] == 0
  np.testing.assert_array_equal(logits[5], 30.0 * cos[5])  # no margin anywhere
  np.testing.assert_array_equal(grad_cos[5], 0)
  np.testing.assert_array_equal(grad_w[5], 0)
  assert grad_w[2, 2] == 0
  # An empty slot is the same as that slot not being there.
  trimmed = SoftLabel(label.ids[2:3, :2], label.weights[2:3, :2])
  loss_trimmed, logits_trimmed = loss_fn(cos[2:3], trimmed, scale=30.0)
  np.testing.assert_allclose(loss_trimmed[0], loss[2], rtol=1e-6)
  np.testing.assert_allclose(logits_trimmed[0], logits[2], rtol=1e-6, atol=1e-6)


def test_one_hot_is_plain_arcface():
  rng = np.random.default_rng(1)
  cos = rng.uniform(-0.8, 0.99, (5, 7))
  ids = rng.integers(0, 7, 5)
  loss, logits = loss_fn(jnp.asarray(cos, jnp.float32), SoftLabel.one_hot(ids), scale=64.0,
                         **ARCFACE)
  rows = np.arange(5)
  hand_logits = 64.0 * cos
  hand_logits[rows, ids] = 64.0 * np.cos(np.arccos(cos[rows, ids]) + 0.5)
  hand_ce = np.log(np.exp(hand_logits).sum(1)) - hand_logits[rows, ids]
  np.testing.assert_allclose(logits, hand_logits, rtol=0, atol=5e-5)
  np.testing.assert_allclose(loss, hand_ce, rtol=1e-5, atol=1e-5)


def test_weights_sum_to_duplicate_id():
  cos = jnp.asarray(np.random.default_rng(2).uniform(-0.5, 0.9, (1, 5)), jnp.float32)
  split = SoftLabel(jnp.asarray([[2, 2]], jnp.int32), jnp.asarray([[0.3, 0.7]], jnp.float32))
  whole = SoftLabel.one_hot([2])
  np.testing.assert_allclose(loss_fn(cos, split, scale=30.0)[0],
                             loss_fn(cos, whole, scale=30.0)[0], rtol=1e-6)


@pytest.mark.parametrize('margins', [ARCFACE, COSFACE, dict(m1=1.2, m2=0.2, m3=0.1),
                                     dict(m1=0.9, m2=0.4, m3=0.0)])
@pytest.mark.parametrize('fallback', [True, False])
def test_gradient_finite_at_unit_cosine(margins, fallback):
  cos = jnp.asarray([[1.0, -1.0, 0.3], [-1.0, 1.0, 0.0]], jnp.float32)
  label = SoftLabel(jnp.asarray([[0, 1], [0, 1]], jnp.int32), jnp.full((2, 2), 0.5, jnp.float32))

  def total(c):
    return jnp.sum(loss_fn(c, label, scale=30.0, fallback=fallback, **margins)[0])

  value, grad = jax.jit(jax.value_and_grad(total))(cos)
  assert np.isfinite(value)
  assert np.all(np.isfinite(grad))


def test_general_multiplicative_margin():
  c = np.linspace(-0.999, 0.999, 41)
  m1, m2, m3 = 1.3, 0.2, 0.05
  theta = np.arccos(c)
  with jax.enable_x64(True):
    phi = np.asarray(margin_target(jnp.asarray(c), m1=m1, m2=m2, m3=m3, fallback=False))
    phi_fb = np.asarray(margin_target(jnp.asarray(c), m1=m1, m2=m2, m3=m3, fallback=True))
  np.testing.assert_allclose(phi, np.cos(m1 * theta + m2) - m3, rtol=0, atol=1e-12)
  beyond = m1 * theta + m2 > math.pi
  assert beyond.any() and (~beyond).any()
  np.testing.assert_allclose(phi_fb[~beyond], phi[~beyond], rtol=0, atol=0)
  np.testing.assert_allclose(phi_fb[beyond], c[beyond] - m2 * math.sin(m2) - m3, atol=1e-12)


def test_any_float_dtype_computes_in_float32():
  cos, ids, weights = _random_case()
  label = SoftLabel(jnp.asarray(ids, jnp.int32), jnp.asarray(weights, jnp.float32))
  cos16 = jnp.asarray(cos, jnp.bfloat16)
  loss, logits = loss_fn(cos16, label, scale=30.0)
  assert loss.dtype == jnp.float32 and logits.dtype == jnp.float32
  ref, _ = loss_fn(cos16.astype(jnp.float32), label, scale=30.0)
  np.testing.assert_array_equal(loss, ref)


def test_vmap_per_example_equals_batch():
  cos, ids, weights = _random_case()
  cos = jnp.asarray(cos, jnp.float32)
  label = SoftLabel(jnp.asarray(ids, jnp.int32), jnp.asarray(weights, jnp.float32))
  batched = loss_fn(cos, label, scale=30.0)
  per_example = jax.vmap(lambda c, l: loss_fn(c, l, scale=30.0))(cos, label)
  for a, b in zip(batched, per_example):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_cosine_head():
  rng = np.random.default_rng(3)
  e = rng.normal(size=(4, 8))
  w = rng.normal(size=(6, 8))
  hand = (e / np.linalg.norm(e, axis=1, keepdims=True)) @ (
      w / np.linalg.norm(w, axis=1, keepdims=True)).T
  out = cosine_fn(jnp.asarray(e, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16))
  assert out.dtype == jnp.float32
  out = cosine_fn(jnp.asarray(e, jnp.float32), jnp.asarray(w, jnp.float32))
  assert out.shape == (4, 6) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, hand, rtol=0, atol=1e-6)
  same = cosine_fn(jnp.asarray(w[:2] * 3.0, jnp.float32), jnp.asarray(w, jnp.float32))
  assert float(jnp.max(same)) <= 1.0 and float(jnp.min(same)) >= -1.0
  np.testing.assert_allclose(same[[0, 1], [0, 1]], 1.0, atol=1e-6)


def test_cosine_gradient_matches_the_hand_derivative():
  """d/dw and d/de of sum(g * cos) against the derivative of e_n . w_n written out in numpy
  (w_n = w / |w|: dw = (I - w_n w_n^T) (g^T e_n) / |w|), on a head with a zero row, whose
  normalisation is clamped (|w| -> 1e-12) and whose gradient is then the plain scaled product."""
  rng = np.random.default_rng(7)
  e = rng.normal(size=(3, 5)).astype(np.float32)
  w = rng.normal(size=(4, 5)).astype(np.float32)
  w[2] = 0.0
  g = rng.normal(size=(3, 4)).astype(np.float32)
  de, dw = (np.asarray(d) for d in jax.grad(
      lambda e, w: jnp.sum(g * cosine(e, w, precision='highest')), (0, 1))(e, w))
  e64, w64, g64 = (x.astype(np.float64) for x in (e, w, g))
  ne = np.linalg.norm(e64, axis=1, keepdims=True)
  nw = np.maximum(np.linalg.norm(w64, axis=1, keepdims=True), 1e-12)
  en, wn = e64 / ne, w64 / nw
  gte = g64.T @ en                                        # [C, D]
  want_dw = (gte - wn * np.sum(wn * gte, 1, keepdims=True)) / nw
  gw = g64 @ wn                                           # [B, D]
  want_de = (gw - en * np.sum(en * gw, 1, keepdims=True)) / ne
  np.testing.assert_allclose(de, want_de, rtol=1e-4, atol=1e-5)
  live = [0, 1, 3]
  np.testing.assert_allclose(dw[live], want_dw[live], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dw[2] / 1e12, gte[2], rtol=1e-4)


def test_class_sharded_head_matches_single_device():
  devices = np.array(jax.devices())
  if devices.size < 2:
    pytest.skip('needs several (simulated) devices')
  mesh = jax.sharding.Mesh(devices, ('model',))
  classes = 8 * devices.size
  rng = np.random.default_rng(4)
  cos = jnp.asarray(rng.uniform(-1, 1, (4, classes)), jnp.float32)
  ids = jnp.asarray(rng.integers(-1, classes, (4, 3)), jnp.int32)
  label = SoftLabel(ids, jnp.asarray(rng.dirichlet(np.ones(3), 4), jnp.float32))
  spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, 'model'))

  def mean_loss(c, l):
    return jnp.mean(loss_fn(c, l, scale=64.0)[0])

  step = jax.jit(jax.value_and_grad(mean_loss))
  sharded = jax.device_put(cos, spec)
  hlo = step.lower(sharded, label).compile().as_text()
  assert 'all-gather' not in hlo
  value, grad = step(sharded, label)
  ref_value, ref_grad = jax.jit(jax.value_and_grad(mean_loss))(cos, label)
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)
