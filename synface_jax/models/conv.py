"""Convolutions of the backbone: XLA's own, or one with a hand-written gradient for XLA:CPU.

XLA:CPU computes the input gradient of a strided convolution as a convolution with a dilated input
(`lhs_dilation`), which it runs on a slow generic loop instead of its fast convolution library;
in the IResNet-18 train step these few convolutions cost as much as all forward convolutions of the
same stages, and its kernel gradients (the batch transposed to be a convolution's contracted
feature) were half of the step's op time. `conv2d` below has the same value as
`lax.conv_general_dilated` and a custom VJP:

- input gradient, stride 1 (and 1x1 kernels): XLA's own (for stride 1 the forward convolution of
  the output gradient with the kernel flipped in space and its channels swapped);
- input gradient, stride s > 1: split into s x s phases (sub-pixel decomposition). The input pixels
  of one phase (n = s*u + r - pad) receive only the kernel taps k = r + s*t, so each phase is a
  plain stride-1 convolution of the output gradient with a small kernel of those taps; the phases
  are then interleaved. No dilated input, the same multiply-adds as the forward pass.
- kernel gradient, 3x3 kernels on the early stages' large images: one matrix product per tap,
  on contiguous row blocks of each example's flattened (phase of the) padded input, in a scan
  over the examples so that the shifted copies stay in cache (`kernel_gradient`);
- kernel gradient, the rest: XLA's own (a convolution over the batch with the dimensions swapped).

Select it with `kernel`: 'custom', 'xla', or 'auto' (custom on CPU, XLA's own on GPU/TPU, whose
libraries compute strided gradients well). The environment variable SYNFACE_CONV overrides it.
`conv` takes NHWC inputs, HWIO kernels and explicit paddings (no dilation, no feature groups).
"""
import functools
import math
import os

import jax
import jax.numpy as jnp
from jax import lax

KERNELS = ('auto', 'xla', 'custom')
_NHWC = ('NHWC', 'HWIO', 'NHWC')
# Where the kernel gradient by taps beat XLA's own (IResNet shapes, B = 32, 2-core CPU).
TAPS_MIN_PIXELS = 28 * 28
TAPS_MIN_CHANNELS = 16


def resolve(kernel: str = 'auto') -> str:
  """'xla' or 'custom': SYNFACE_CONV if set, else `kernel`. 'auto' is custom on CPU only when
  XLA:CPU runs convolutions on YNNPACK's single thread (`synface_jax.cpu_flags` not in effect);
  with Eigen's convolutions on every core XLA's own gradients are faster (r18, B = 32: 4.1 s
  against 4.65 s per step)."""
  for name in (kernel, os.environ.get('SYNFACE_CONV', '') or kernel):
    if name not in KERNELS:
      raise ValueError(f'unknown conv kernel {name!r}; valid: {", ".join(KERNELS)}')
  kernel = os.environ.get('SYNFACE_CONV', '') or kernel
  if kernel == 'auto':
    from synface_jax import cpu_flags
    cpu_single_thread = jax.default_backend() == 'cpu' and not cpu_flags.eigen_convolutions()
    return 'custom' if cpu_single_thread else 'xla'
  return kernel


active_kernel = resolve


def conv(x, w, strides, pads, kernel: str = 'auto', precision=None):
  """NHWC x HWIO convolution (pads: ((top, bottom), (left, right))) by the chosen kernel."""
  strides, pads = tuple(int(v) for v in strides), tuple((int(a), int(b)) for a, b in pads)
  if resolve(kernel) == 'custom':
    return conv2d(x, w, strides, pads, precision)
  return _xla(x, w, strides, pads, precision)


def _xla(x, w, strides, pads, precision):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x, w, strides, pads, precision=None):
  """NHWC x HWIO convolution, value of lax.conv_general_dilated; gradients as in the module doc."""
  return _xla(x, w, strides, pads, precision)


def _fwd(x, w, strides, pads, precision):
  return _xla(x, w, strides, pads, precision), (x, w)


def _bwd(strides, pads, precision, residuals, dy):
  x, w = residuals
  dx = input_gradient(dy, w, x.shape, strides, pads, precision)
  dw = kernel_gradient(x, dy, w.shape, strides, pads, precision)
  return dx, dw.astype(w.dtype)


conv2d.defvjp(_fwd, _bwd)


def input_gradient(dy, w, x_shape, strides, pads, precision=None):
  """d(sum(conv(x, w) * dy)) / dx for an NHWC x of x_shape.

  Strided convolutions with kernels wider than one pixel: by phases (`_phased`); the rest (stride
  1, and 1x1 kernels, whose strided gradient XLA pads cheaply): XLA's own transpose, which is the
  forward convolution of dy with the flipped kernel.
  """
  if strides == (1, 1) or w.shape[:2] == (1, 1):
    _, x_vjp = jax.vjp(lambda x: _xla(x, w, strides, pads, precision),
                       jnp.zeros(x_shape, dy.dtype))
    return x_vjp(dy)[0]
  return _phased(dy, w, x_shape, strides, pads, precision)


def _phased(dy, w, x_shape, strides, pads, precision):
  """Input gradient of a strided convolution as s_h x s_w stride-1 convolutions (sub-pixel)."""
  n, h, wd, cin = x_shape
  kh, kw = w.shape[:2]
  (sh, sw), ((ph, _), (pw, _)) = strides, pads
  out_h, out_w = dy.shape[1:3]
  # Input pixel i (padded index q = i + pad) gets dy[u - t] * w[r + s t], with q = s u + r.
  th, tw = math.ceil(kh / sh), math.ceil(kw / sw)
  uh, uw = math.ceil((h + ph) / sh), math.ceil((wd + pw) / sw)
  dyp = jnp.pad(dy, ((0, 0), (th - 1, max(0, uh - out_h)), (tw - 1, max(0, uw - out_w)), (0, 0)))
  dyp = dyp[:, :uh + th - 1, :uw + tw - 1]
  rows = []
  for rh in range(sh):
    cols = []
    for rw in range(sw):
      # Kernel of this phase: tap j (of th) is w[rh + sh * (th - 1 - j)], zero beyond the kernel.
      # Taps beyond the kernel come first in j; they are left out (no zero multiply-adds).
      taps_h = [rh + sh * (th - 1 - j) for j in range(th)]
      taps_w = [rw + sw * (tw - 1 - j) for j in range(tw)]
      j0h, j0w = sum(a >= kh for a in taps_h), sum(b >= kw for b in taps_w)
      if j0h == th or j0w == tw:  # No tap reaches this phase (stride wider than the kernel).
        cols.append(jnp.zeros((n, uh, uw, cin), dy.dtype))
        continue
      k = w[jnp.asarray(taps_h[j0h:])][:, jnp.asarray(taps_w[j0w:])]   # [th', tw', in, out]
      window = dyp[:, j0h:j0h + uh + th - j0h - 1, j0w:j0w + uw + tw - j0w - 1]
      cols.append(lax.conv_general_dilated(window, k.swapaxes(2, 3), (1, 1), 'VALID',
                                           dimension_numbers=_NHWC, precision=precision))
    rows.append(jnp.stack(cols, 3))                                    # [B, uh, uw, sw, C]
  phases = jnp.stack(rows, 2)                                          # [B, uh, sh, uw, sw, C]
  dx = phases.reshape(n, uh * sh, uw * sw, cin)
  return dx[:, ph:ph + h, pw:pw + wd]


def kernel_gradient(x, dy, w_shape, strides, pads, precision=None):
  """d(sum(conv(x, w) * dy)) / dw for an HWIO kernel of w_shape.

  Kernels wider than one pixel with outputs of at least TAPS_MIN_PIXELS pixels and inputs of at
  least TAPS_MIN_CHANNELS channels: by taps (`_by_taps`); the rest (1x1 kernels, the late stages'
  small images, the 3-channel stem): XLA's own, which was as fast or faster there on XLA:CPU.
  """
  out_pixels = dy.shape[1] * dy.shape[2]
  if (w_shape[:2] == (1, 1) or out_pixels < TAPS_MIN_PIXELS or w_shape[2] < TAPS_MIN_CHANNELS):
    _, w_vjp = jax.vjp(lambda w: _xla(x, w, strides, pads, precision),
                       jnp.zeros(w_shape, x.dtype))
    return w_vjp(dy)[0]
  return _by_taps(x, dy, w_shape, strides, pads, precision)


def _by_taps(x, dy, w_shape, strides, pads, precision):
  """Kernel gradient as one matrix product per tap, one example (per device) at a time.

  dw[a, b] = sum over n, i, j of xpad[n, s i + a, s j + b]^T dy[n, i, j]. The padded input is split
  into s x s phases P[r, q][n, u, v] = xpad[n, s u + r, s v + q] (one strided copy of x; stride 1
  has one phase), so tap (a, b) = (r + s t, q + s t') reads P[r, q][n, i + t, j + t']. Flattening
  a phase's grid of G_h x G_w pixels, that is the contiguous row block starting at t G_w + t' of
  P[r, q][n], against dy laid on the same grid (zeros in its last T_h - 1 rows and T_w - 1
  columns). A scan over the examples keeps each example's slices in cache; the tap products are
  [L, C_in]^T [L, C_out] matrix products. XLA's own kernel gradient instead transposes x and dy
  so that the batch is the contracted feature of one convolution with an image-sized window.
  """
  n, h, wd, cin = x.shape
  kh, kw, _, cout = w_shape
  (sh, sw), ((ph, ph_hi), (pw, pw_hi)) = strides, pads
  out_h, out_w = dy.shape[1:3]
  th, tw = math.ceil(kh / sh), math.ceil(kw / sw)     # Taps per phase (the first phase's).
  gh, gw = out_h + th - 1, out_w + tw - 1             # Each phase's grid.
  xp = jnp.pad(x, ((0, 0), (ph, max(0, sh * gh - h - ph)), (pw, max(0, sw * gw - wd - pw)),
                   (0, 0)))[:, :sh * gh, :sw * gw]
  # [n, gh, sh, gw, sw, C] -> [n, sh, sw, gh * gw, C]: the phases, each a flat grid.
  phases = xp.reshape(n, gh, sh, gw, sw, cin).transpose(0, 2, 4, 1, 3, 5)
  phases = phases.reshape(n, sh * sw, gh * gw, cin)
  length = gh * gw - (th - 1) * gw - (tw - 1)         # Rows of the grid that dy reaches.
  dyg = jnp.pad(dy, ((0, 0), (0, th - 1), (0, tw - 1), (0, 0))).reshape(n, gh * gw, cout)
  dyg = dyg[:, :length]
  taps = [(a, b) for a in range(kh) for b in range(kw)]
  # Examples per scan step: one per device when the batch is split over devices, so that each
  # step's slices stay on their device; the partial sums are added at the end.
  split = math.gcd(n, jax.device_count())
  phases = phases.reshape(split, n // split, *phases.shape[1:]).swapaxes(0, 1)
  dyg = dyg.reshape(split, n // split, *dyg.shape[1:]).swapaxes(0, 1)

  def step(acc, example):
    xe, de = example                                  # [split, phases, grid, C], [split, L, C]
    grads = []
    for a, b in taps:
      (r, t), (q, u) = divmod(a, sh)[::-1], divmod(b, sw)[::-1]
      start = t * gw + u
      rows = xe[:, r * sw + q, start:start + length]
      grads.append(lax.dot_general(rows, de, (((1,), (1,)), ((0,), (0,))), precision=precision,
                                   preferred_element_type=jnp.float32))
    return acc + jnp.stack(grads, 1), None

  acc = jnp.zeros((split, len(taps), cin, cout), jnp.float32)
  acc, _ = lax.scan(step, acc, (phases, dyg))
  return acc.sum(0).reshape(kh, kw, cin, cout)
