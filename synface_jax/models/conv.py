"""Convolutions of the backbone: XLA's own, or one with a hand-written gradient for XLA:CPU.

XLA:CPU computes the input gradient of a strided convolution as a convolution with a dilated input
(`lhs_dilation`), which it runs on a slow generic loop instead of its fast convolution library;
in the IResNet-18 train step these few convolutions cost as much as all forward convolutions of the
same stages. `conv_general_dilated` below has the same value as `lax.conv_general_dilated` and a
custom VJP:

- input gradient, stride 1 (and 1x1 kernels): XLA's own (for stride 1 the forward convolution of
  the output gradient with the kernel flipped in space and its channels swapped);
- input gradient, stride s > 1: split into s x s phases (sub-pixel decomposition). The input pixels
  of one phase (n = s*u + r - pad) receive only the kernel taps k = r + s*t, so each phase is a
  plain stride-1 convolution of the output gradient with a small kernel of those taps; the phases
  are then interleaved. No dilated input, the same multiply-adds as the forward pass.
- kernel gradient: XLA's own (a convolution over the batch with the dimensions swapped).

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


def resolve(kernel: str = 'auto') -> str:
  """'xla' or 'custom': SYNFACE_CONV if set, else `kernel`; 'auto' is custom on CPU only."""
  for name in (kernel, os.environ.get('SYNFACE_CONV', '') or kernel):
    if name not in KERNELS:
      raise ValueError(f'unknown conv kernel {name!r}; valid: {", ".join(KERNELS)}')
  kernel = os.environ.get('SYNFACE_CONV', '') or kernel
  if kernel == 'auto':
    return 'custom' if jax.default_backend() == 'cpu' else 'xla'
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
  _, w_vjp = jax.vjp(lambda w: _xla(x, w, strides, pads, precision), w)
  (dw,) = w_vjp(dy)
  return dx, dw


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
