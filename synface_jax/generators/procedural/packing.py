"""Reading several per-vertex (or per-polygon) values at each pixel with one gather.

A CPU gather costs about the same per element whatever it reads, so values read together (the x and
y of a corner, the three components of a normal) are quantised into one uint32 code per element
and decoded after the gather. `straight_through` gives such fast paths the gradient of the plain
gathers: the quantisation error is far below what the images resolve.
"""
import jax
import jax.numpy as jnp

from synface_jax.generators.procedural import raster


def gather(plane, ids):
  """plane [B, V] at per-image ids [B, N] -> [B, N] (one flat gather, fast on CPU)."""
  batch, size = plane.shape
  return plane.reshape(-1)[ids + (jnp.arange(batch, dtype=ids.dtype) * size)[:, None]]


def straight_through(fast, reference):
  """A function computing fast(*args), differentiated as reference(*args).

  For a fast path (say, one reading quantised values) that agrees with an exact reference to far
  below what matters; the reference only runs when gradients are taken.
  """
  @jax.custom_vjp
  def function(*args):
    return fast(*args)

  def forward(*args):
    return fast(*args), args

  def backward(args, cotangent):
    _, vjp = jax.vjp(reference, *args)
    return vjp(cotangent)

  function.defvjp(forward, backward)
  return function


def read(codec, planes, ids, anchor):
  """The codes of planes (a tuple of [B, V]) at each index array in ids, materialised.

  Args:
    codec: (encode, decode) such as `pixel_codec` or `unit_codec`.
    planes: tuple of float planes [B, V].
    ids: list of int32 index planes [B, N].
    anchor: a finite scalar for `raster.unfused`.

  Returns:
    A list of uint32 code planes [B, N]; codec[1] decodes each into a tuple of planes.
  """
  encode, _ = codec
  gathers = lambda ops: [gather(ops[0], i) for i in ops[1]]
  return raster.unfused(gathers, (encode(planes), list(ids)), anchor)


def read_exact(codec, planes, ids, exact=None):
  """Planes (a tuple of [B, V]) at each index array in ids, read through codec's packed codes.

  Returns a list (one per index array) of tuples of planes [B, N], decoded where they are used.
  The gradient is that of exact(plain reads) (exact defaults to the identity; see `unit_codec`).
  """
  exact = exact or (lambda values: values)

  def fast(planes, ids):
    return [codec[1](c) for c in read(codec, planes, ids, planes[0][0, 0])]

  def reference(planes, ids):
    return [exact(tuple(gather(p, i) for p in planes)) for i in ids]

  return straight_through(fast, reference)(tuple(planes), list(ids))


def _quantise(x, lo, hi, bits):
  top = (1 << bits) - 1
  return jnp.clip(jnp.round((x - lo) * (top / (hi - lo))), 0, top).astype(jnp.uint32)


def _dequantise(q, lo, hi, bits):
  top = (1 << bits) - 1
  return q.astype(jnp.float32) * ((hi - lo) / top) + lo


def pixel_codec(height: int, width: int):
  """(encode, decode) of pixel coordinates (x, y): 16 bits each over [-size, 3 * size), i.e. to
  about 1/150 of a pixel for 112-pixel images; farther points are clamped (they never cover a
  pixel, so never matter)."""
  span = lambda size: (-float(size), 3.0 * float(size))

  def encode(planes):
    x, y = planes
    return (_quantise(x, *span(width), 16) << 16) | _quantise(y, *span(height), 16)

  def decode(code):
    return (_dequantise(code >> 16, *span(width), 16), _dequantise(code & 0xFFFF, *span(height), 16))

  return encode, decode


def unit_codec():
  """(encode, decode) of the directions of vectors (3 planes, any length): the unit vector in 11,
  11 and 10 bits, to about 1e-3. Normalising in the encoder lets the vectors' own computation
  fuse into it."""
  bits = (11, 11, 10)

  def encode(planes):
    inv = jax.lax.rsqrt(sum(c * c for c in planes) + 1e-20)
    q = [_quantise(c * inv, -1.0, 1.0, b) for c, b in zip(planes, bits)]
    return (q[0] << 21) | (q[1] << 10) | q[2]

  def decode(code):
    parts = (code >> 21, (code >> 10) & 0x7FF, code & 0x3FF)
    return tuple(_dequantise(p, -1.0, 1.0, b) for p, b in zip(parts, bits))

  return encode, decode


def tint_codec():
  """(encode, decode) of three relative colour changes in [-0.5, 0.5] (the skin tints), 10 bits
  each (steps of 0.1 %)."""
  def encode(planes):
    q = [_quantise(c, -0.5, 0.5, 10) for c in planes]
    return (q[0] << 20) | (q[1] << 10) | q[2]

  def decode(code):
    return tuple(_dequantise((code >> shift) & 0x3FF, -0.5, 0.5, 10) for shift in (20, 10, 0))

  return encode, decode
