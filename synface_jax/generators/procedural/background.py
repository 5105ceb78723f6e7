"""Plain and gradient backgrounds drawn from the noise factor (32 standard normals per image)."""
import jax
import jax.numpy as jnp


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
  return tuple(jnp.clip(a * (1 - t) + b * t + glow, 0.0, 1.0) for a, b in zip(first, second))
