"""Pure tensor operations of the StyleGAN1 synthesis network (NHWC activations, HWIO kernels)."""
import jax
import jax.numpy as jnp

INSTANCE_NORM_EPS = 1e-8
LEAKY_SLOPE = 0.2


def leaky_relu(x):
  """StyleGAN's lrelu: max(0.2 x, x), without gain."""
  return jnp.maximum(x * LEAKY_SLOPE, x)


def conv(x, kernel):
  """SAME cross-correlation, stride 1: x [B, H, W, I], kernel [k, k, I, O]."""
  return jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def nearest_upsample(x):
  """Nearest-neighbour up-sampling by 2 of [B, H, W, C]."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)


def _phase_taps(kernel, axis):
  """The 3 taps along `axis` of a 3x3 kernel folded to 2 taps for each output phase 0 and 1.

  After nearest up-sampling, output row 2i + a sees input rows i - 1, i, i (a = 0) or i, i, i + 1
  (a = 1) through taps 0, 1, 2; stacking the taps that hit the same input row gives a 2-tap kernel
  over input rows (i - 1, i) for a = 0 and (i, i + 1) for a = 1.
  """
  k0, k1, k2 = (jax.lax.index_in_dim(kernel, i, axis, keepdims=True) for i in range(3))
  return (jnp.concatenate([k0, k1 + k2], axis), jnp.concatenate([k0 + k1, k2], axis))


def upsample_conv(x, kernel):
  """conv(nearest_upsample(x), kernel) for a 3x3 kernel, at 4/9 of its cost.

  Each of the four output phases (row parity a, column parity b) is a 2x2 correlation over the
  input; the four phases are one 2x2 VALID convolution with 4 * O outputs over x padded by one
  pixel, phase (a, b) read at offset (a, b). Zero padding of the up-sampled image and of x agree.
  """
  b, h, w, _ = x.shape
  out = kernel.shape[-1]
  phase_kernels = []
  for rows in _phase_taps(kernel, 0):
    for taps in _phase_taps(rows, 1):
      phase_kernels.append(taps)
  k = jnp.concatenate(phase_kernels, axis=-1)  # [2, 2, I, 4 * O], phases (0,0) (0,1) (1,0) (1,1).
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  z = jax.lax.conv_general_dilated(
      padded, k.astype(x.dtype), (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  phases = [z[:, a:a + h, c:c + w, (2 * a + c) * out:(2 * a + c + 1) * out]
            for a in range(2) for c in range(2)]
  y = jnp.stack(phases, axis=0).reshape(2, 2, b, h, w, out)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, 2 * h, 2 * w, out)


def blur(x):
  """Depthwise [1, 2, 1] x [1, 2, 1] / 16 filter, zero padding, stride 1, on [B, H, W, C]."""
  def along(v, axis):
    n = v.shape[axis]
    pad = [(0, 0)] * v.ndim
    pad[axis] = (1, 1)
    p = jnp.pad(v, pad)
    left = jax.lax.slice_in_dim(p, 0, n, axis=axis)
    mid = jax.lax.slice_in_dim(p, 1, n + 1, axis=axis)
    right = jax.lax.slice_in_dim(p, 2, n + 2, axis=axis)
    return (left + right) * 0.25 + mid * 0.5
  return along(along(x, 1), 2)


def instance_norm(x):
  """Per sample and channel over H, W: centre, divide by sqrt(mean square + 1e-8); in float32."""
  dtype = x.dtype
  x = x.astype(jnp.float32)
  x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
  x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + INSTANCE_NORM_EPS)
  return x.astype(dtype)
