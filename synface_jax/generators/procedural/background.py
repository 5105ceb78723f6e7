"""Backgrounds drawn from the noise factor (32 standard normals per image): a gradient with a soft
glow, and over it, on most images, out-of-focus clutter.

Real aligned face crops have a room, a street or other people behind the face, and a recogniser
trained only on smooth backgrounds never learns to ignore what stands there. The clutter is a
dead-leaves picture (overlapping ellipses and rectangles of sizes spread over a decade, each
covering those drawn before it; the model whose statistics come close to natural images'), in
colours around the gradient's, with edges softened by a defocus that varies per image. How much of
it shows ranges from none (a studio backdrop) to fully opaque. Everything is a function of the
noise factor, so a face's background is fixed by its draw.
"""
import jax
import jax.numpy as jnp

CLUTTER_SHAPES = 10  # Leaves per image; the last drawn lies on top.


def background(noise, px, py, height: int, width: int):
  """Three planes [B, N] of background colour at pixel centres px, py [N] for noise [B, 32]."""
  n = lambda i: noise[:, i:i + 1]
  level = 0.12 + 0.76 * jax.nn.sigmoid(1.3 * n(0))
  first = [level * (1 + 0.22 * jnp.tanh(n(1 + i))) for i in range(3)]
  second = [c * (1 + 0.4 * jnp.tanh(n(4))) + 0.12 * jnp.tanh(n(5 + i)) for i, c in enumerate(first)]
  angle = jnp.pi * jnp.tanh(n(8))
  steep = 0.5 + 0.5 * jax.nn.sigmoid(n(9))
  x = (px - 0.5 * width) / (0.5 * width)
  y = (py - 0.5 * height) / (0.5 * height)
  t = jnp.clip(0.5 + 0.5 * steep * (x * jnp.cos(angle) + y * jnp.sin(angle)), 0.0, 1.0)
  # A soft round glow ((1 - r^2 / 2)^2, cheaper than a Gaussian's exponential).
  r2 = jnp.square(x - jnp.tanh(n(11))) + jnp.square(y - jnp.tanh(n(12)))
  glow = 0.25 * jnp.tanh(n(10)) * jnp.square(jnp.maximum(1.0 - 0.5 * r2, 0.0))
  planes = tuple(jnp.clip(a * (1 - t) + b * t + glow, 0.0, 1.0) for a, b in zip(first, second))
  return clutter(noise, x, y, planes)


def leaves(noise, count: int = CLUTTER_SHAPES):
  """The clutter of each image, drawn from its noise factor [B, 32]: a dict of [B, count] arrays
  (cx, cy, rx, ry, angle, box, r, g, b), and [B, 1] softness and opacity."""
  # Noise entries 13 and 14 seed the leaves and set how much they show (0..12 are the gradient's).
  seeds = jax.lax.bitcast_convert_type(noise[:, 13], jnp.uint32)
  draw = jax.vmap(lambda s: jax.random.uniform(jax.random.key(s), (9, count)))(seeds)
  u = lambda i: draw[:, i]
  radius = 0.06 * 10.0 ** u(2)   # Log-uniform, 0.06 to 0.6 of the half image.
  aspect = 2.0 ** (2.0 * u(3) - 1.0)
  return {
      'cx': 2.6 * u(0) - 1.3, 'cy': 2.6 * u(1) - 1.3,
      'rx': radius * aspect, 'ry': radius / aspect,
      'angle': jnp.pi * u(4), 'box': (u(5) < 0.4).astype(jnp.float32),
      # Colours around the backdrop's level, some darker, some brighter, some tinted.
      'r': u(6), 'g': u(7), 'b': u(8),
      'softness': 0.02 + 0.2 * jax.nn.sigmoid(1.5 * noise[:, 15:16]),
      'opacity': jnp.clip(1.6 * jax.nn.sigmoid(1.5 * noise[:, 14:15]) - 0.3, 0.0, 1.0),
  }


def clutter(noise, x, y, planes):
  """The planes [B, N] with the leaves of each image painted over them, x, y [N] in [-1, 1]."""
  p = leaves(noise)
  mean = sum(planes) / 3.0
  level = jnp.mean(mean, axis=1, keepdims=True)  # [B, 1]
  out = list(planes)
  for k in range(CLUTTER_SHAPES):
    col = lambda name: p[name][:, k:k + 1]
    cos, sin = jnp.cos(col('angle')), jnp.sin(col('angle'))
    dx, dy = x - col('cx'), y - col('cy')
    u = (dx * cos + dy * sin) / col('rx')
    v = (dy * cos - dx * sin) / col('ry')
    ellipse = jnp.sqrt(jnp.square(u) + jnp.square(v) + 1e-12)
    box = jnp.maximum(jnp.abs(u), jnp.abs(v))
    # Distance outside the shape, roughly in half-image units; the edge blurs over `softness`.
    distance = (jnp.where(col('box') > 0, box, ellipse) - 1.0) * jnp.minimum(col('rx'), col('ry'))
    cover = p['opacity'] * jnp.clip(0.5 - distance / p['softness'], 0.0, 1.0)
    brightness = level * (0.35 + 1.3 * col('r'))
    tint = (col('g') - 0.5, col('b') - 0.5)
    colours = (brightness * (1 + 0.5 * tint[0]), brightness * (1 - 0.25 * (tint[0] + tint[1])),
               brightness * (1 + 0.5 * tint[1]))
    out = [o + cover * (jnp.clip(c, 0.0, 1.0) - o) for o, c in zip(out, colours)]
  return tuple(out)
