"""The custom-gradient convolution equals lax.conv_general_dilated in value and both gradients,
on one device and on the 8-device mesh, and can be switched off."""
import os
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from conftest import random_torch_state_dict
from synface_jax import cpu_flags, sharding
from synface_jax.models import conv, convert, iresnet

NHWC = ('NHWC', 'HWIO', 'NHWC')
# (input H, W), in, out, kernel, stride, padding: every convolution IResNet has, plus odd sizes.
CASES = [
    ((8, 8), 3, 4, 3, 1, 1),
    ((8, 8), 4, 4, 3, 2, 1),     # Strided 3x3: the phased input gradient.
    ((9, 7), 3, 5, 3, 2, 1),     # Odd sizes: the last phase row / column is cropped.
    ((8, 8), 4, 6, 1, 2, 0),     # The strided 1x1 shortcut.
    ((10, 10), 2, 3, 3, 3, 2),   # Stride 3, padding 2: more phases than taps per phase.
    ((6, 6), 2, 3, 2, 2, 0),     # Even kernel.
]


def _reference(x, w, stride, pad):
  return lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                  dimension_numbers=NHWC, precision='highest')


def _loss(fn, x, w, dy):
  return jnp.sum(fn(x, w) * dy)


@pytest.mark.parametrize('size,cin,cout,k,stride,pad', CASES)
def test_custom_conv_equals_lax_in_value_and_gradients(size, cin, cout, k, stride, pad):
  rng = np.random.default_rng(k * 10 + stride)
  x = jnp.asarray(rng.normal(size=(2, *size, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)
  ours = lambda x, w: conv.conv(x, w, (stride, stride), ((pad, pad), (pad, pad)), 'custom',
                                precision='highest')
  ref = lambda x, w: _reference(x, w, stride, pad)
  dy = jnp.asarray(rng.normal(size=ref(x, w).shape), jnp.float32)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
  got = jax.grad(lambda x, w: _loss(ours, x, w, dy), argnums=(0, 1))(x, w)
  want = jax.grad(lambda x, w: _loss(ref, x, w, dy), argnums=(0, 1))(x, w)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_phased_input_gradient_matches_a_hand_built_transposed_convolution():
  """The input gradient against a numpy loop over output pixels (no JAX convolution at all)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 5, 5, 2))
  w = rng.normal(size=(3, 3, 2, 3))
  dy = rng.normal(size=(1, 3, 3, 3))
  want = np.zeros((1, 7, 7, 2))  # Padded by 1; y[i, j] reads xpad[2i + a, 2j + b].
  for i in range(3):
    for j in range(3):
      want[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3] += np.einsum('abio,o->abi', w, dy[0, i, j])
  got = conv.input_gradient(jnp.asarray(dy, jnp.float32), jnp.asarray(w, jnp.float32), x.shape,
                            (2, 2), ((1, 1), (1, 1)), precision='highest')
  np.testing.assert_allclose(got, want[:, 1:6, 1:6], rtol=1e-5, atol=1e-5)


def test_custom_conv_under_the_8_device_mesh():
  if jax.device_count() < 8:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  mesh = sharding.make_mesh(-1, 1)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(8, 8, 8, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 4, 4)), jnp.float32)
  x = jax.device_put(x, NamedSharding(mesh, P(sharding.DATA)))
  w = jax.device_put(w, sharding.replicated(mesh))

  def loss(kernel):
    return lambda x, w: jnp.sum(jnp.tanh(conv.conv(x, w, (2, 2), ((1, 1), (1, 1)), kernel,
                                                   precision='highest')))
  got = jax.jit(jax.grad(loss('custom'), argnums=(0, 1)))(x, w)
  want = jax.jit(jax.grad(loss('xla'), argnums=(0, 1)))(x, w)
  assert got[0].sharding.is_equivalent_to(x.sharding, 4)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_kernel_choice(monkeypatch):
  monkeypatch.delenv('SYNFACE_CONV', raising=False)
  assert conv.resolve('xla') == 'xla' and conv.resolve('custom') == 'custom'
  on_cpu = jax.default_backend() == 'cpu'
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  assert conv.resolve('auto') == ('custom' if on_cpu else 'xla')  # YNNPACK's one-thread convs.
  monkeypatch.setenv('XLA_FLAGS', f'--xla_force_host_platform_device_count=8 {cpu_flags.FLAG}')
  assert conv.resolve('auto') == 'xla'  # Eigen's convolutions on every core.
  monkeypatch.setenv('SYNFACE_CONV', 'xla')
  assert conv.resolve('auto') == 'xla' and conv.resolve('custom') == 'xla'
  with pytest.raises(ValueError, match='unknown conv kernel'):
    conv.resolve('fast')


def test_iresnet_gradients_do_not_depend_on_the_kernel():
  """A tiny r18 train-mode loss: the same value and parameter gradients with either kernel."""
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 32, 32, 3)), jnp.float32)
  models = {k: iresnet('r18', width=1 / 16, conv_kernel=k) for k in ('custom', 'xla')}
  # Random values from the converter: model.init, op by op or jitted, spends seconds compiling.
  variables = convert.torch_to_flax(random_torch_state_dict('r18', 1 / 16, (32, 32)), 'r18',
                                    1 / 16, (32, 32))

  def loss(model):
    def f(params):
      out, _ = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
      return jnp.sum(out ** 2)
    return jax.value_and_grad(f)
  (v1, g1), (v2, g2) = (jax.jit(loss(m))(variables['params']) for m in models.values())
  np.testing.assert_allclose(v1, v2, rtol=1e-5)
  # Some leaves (a BatchNorm's shift followed by another BatchNorm) have near-zero gradients that
  # are rounding noise; the tolerance is relative to the largest gradient of the model.
  flat = [np.concatenate([np.ravel(a) for a in jax.tree.leaves(g)]) for g in (g1, g2)]
  np.testing.assert_allclose(flat[0], flat[1], rtol=1e-3, atol=1e-5 * np.abs(flat[1]).max())


@pytest.fixture
def taps_everywhere(monkeypatch):
  """Every kernel wider than one pixel takes the kernel gradient by taps, at any size."""
  monkeypatch.setattr(conv, 'TAPS_MIN_PIXELS', 0)
  monkeypatch.setattr(conv, 'TAPS_MIN_CHANNELS', 0)


@pytest.mark.parametrize('size,cin,cout,k,stride,pad', CASES + [
    ((7, 9), 3, 2, 3, 2, (0, 2)),   # Uneven padding (bottom/right wider than top/left).
    ((8, 8), 2, 3, 3, 1, 0),        # No padding.
    ((9, 9), 2, 3, 3, 4, 1),        # Stride wider than the kernel: phases without taps.
])
def test_kernel_gradient_by_taps_equals_lax(taps_everywhere, size, cin, cout, k, stride, pad):
  rng = np.random.default_rng(k * 100 + stride * 10 + cin)
  pads = ((pad, pad),) * 2 if isinstance(pad, int) else (pad,) * 2
  x = jnp.asarray(rng.normal(size=(3, *size, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)
  ref = lambda w: lax.conv_general_dilated(x, w, (stride, stride), pads, dimension_numbers=NHWC,
                                           precision='highest')
  dy = jnp.asarray(rng.normal(size=ref(w).shape), jnp.float32)
  want = jax.vjp(ref, w)[1](dy)[0]
  got = conv.kernel_gradient(x, dy, w.shape, (stride, stride), pads, precision='highest')
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  got = jax.grad(lambda w: jnp.sum(conv.conv(x, w, (stride, stride), pads, 'custom',
                                             precision='highest') * dy))(w)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_kernel_gradient_by_taps_at_an_iresnet_size():
  """The default thresholds take the taps path for a 28x28 output (the r18's second stage)."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(2, 56, 56, 16)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 16, 8)), jnp.float32)
  for stride in (1, 2):
    ref = lambda w: _reference(x, w, stride, 1)
    dy = jnp.asarray(rng.normal(size=ref(w).shape), jnp.float32)
    want = jax.vjp(ref, w)[1](dy)[0]
    got = conv.kernel_gradient(x, dy, w.shape, (stride, stride), ((1, 1), (1, 1)),
                               precision='highest')
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_kernel_gradient_by_taps_under_the_8_device_mesh(taps_everywhere):
  if jax.device_count() < 8:
    pytest.skip('needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)')
  mesh = sharding.make_mesh(-1, 1)
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(16, 8, 8, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 4, 5)), jnp.float32)
  x = jax.device_put(x, NamedSharding(mesh, P(sharding.DATA)))
  w = jax.device_put(w, sharding.replicated(mesh))
  for stride in (1, 2):
    def loss(kernel):
      return lambda x, w: jnp.sum(jnp.tanh(conv.conv(x, w, (stride,) * 2, ((1, 1), (1, 1)),
                                                     kernel, precision='highest')))
    got = jax.jit(jax.grad(loss('custom'), argnums=(0, 1)))(x, w)
    want = jax.jit(jax.grad(loss('xla'), argnums=(0, 1)))(x, w)
    for g, r in zip(got, want):
      np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_iresnet_gradients_do_not_depend_on_the_kernel_with_taps_everywhere(taps_everywhere):
  test_iresnet_gradients_do_not_depend_on_the_kernel()


def test_the_cpu_flag_is_added_once_and_yields_to_yours(monkeypatch, caplog):
  monkeypatch.setattr(cpu_flags, '_jaxlib_version', lambda: (0, 10, 2))
  monkeypatch.setattr(cpu_flags, '_late', False)
  monkeypatch.setattr(cpu_flags, '_backends_started', lambda: False)
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  assert cpu_flags.apply() and cpu_flags.apply()
  assert os.environ['XLA_FLAGS'] == f'--xla_force_host_platform_device_count=8 {cpu_flags.FLAG}'
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=')  # Yours.
  assert not cpu_flags.apply()
  assert os.environ['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type='
  monkeypatch.setattr(cpu_flags, '_jaxlib_version', lambda: (0, 11, 0))  # Not measured there.
  monkeypatch.setenv('XLA_FLAGS', '')
  assert not cpu_flags.apply() and os.environ['XLA_FLAGS'] == ''
  # Added after JAX started its backends, the flag is never read: said, and 'auto' stays custom.
  monkeypatch.setattr(cpu_flags, '_jaxlib_version', lambda: (0, 10, 2))
  monkeypatch.setattr(cpu_flags, '_backends_started', lambda: True)
  monkeypatch.delenv('SYNFACE_CONV', raising=False)
  assert not cpu_flags.apply() and 'JAX started before synface_jax' in caplog.text
  if jax.default_backend() == 'cpu':
    assert conv.resolve('auto') == 'custom'
