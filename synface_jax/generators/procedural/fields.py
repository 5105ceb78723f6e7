"""Smooth scalar fields on the (u, v) texture plane, shared by the shape model and the shader.

u is the azimuth around the head's vertical axis (0 straight ahead) and v the height, so near the face
(u, v) is close to the frontal (x, y) of the surface in model units (about 10 cm). Landmark
positions of the mean face are named here so geometry and texture agree.
"""
import jax
import jax.numpy as jnp
import numpy as np

EYE_U, EYE_V = 0.31, 0.0
NOSE_TIP_V = -0.345
SUBNASALE_V = -0.47
MOUTH_U, MOUTH_V = 0.257, -0.716
EAR_U, EAR_V = 1.7, -0.14
# Where the alignment landmarks sit (eye centres are at EYE_U, EYE_V).
NOSE_LANDMARK_V = -0.322
MOUTH_LANDMARK_U = 0.252


def xp(*arrays):
  """The array module for arrays: numpy when none is a JAX array (the model is built in numpy,
  which runs its many small operations without compiling each), jax.numpy otherwise."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def gauss(u, v, cu, cv, su, sv):
  """A Gaussian bump of height 1 centred at (cu, cv) with widths (su, sv)."""
  a, b = (u - cu) / su, (v - cv) / sv
  return xp(a, b).exp(-a * a - b * b)


def smoothstep(e0, e1, x):
  """0 below e0, 1 above e1 (or the reverse when e0 > e1), cubic in between."""
  t = xp(x, e0, e1).clip((x - e0) / (e1 - e0), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def ellipse(u, v, cu, cv, su, sv):
  """Squared normalised distance from (cu, cv): 1 on the ellipse of radii (su, sv)."""
  a, b = (u - cu) / su, (v - cv) / sv
  return a * a + b * b


def wave(x):
  """A smooth periodic wave of period 1 in [-1, 1] (close to cos(2 pi x)), without the range
  reduction of a cosine, which costs many times more on CPU."""
  m = xp(x)
  tri = m.abs(2.0 * (x - m.floor(x)) - 1.0)
  return 2.0 * tri * tri * (3.0 - 2.0 * tri) - 1.0


def root4(x):
  """x ** 0.75 for x >= 0 from square roots (a power costs a log and an exp)."""
  r = xp(x).sqrt(x)
  return r * xp(x).sqrt(r)


def front(u, width=1.3):
  """1 on the face (|u| small), fading to 0 towards the sides."""
  return smoothstep(width, 0.6 * width, xp(u).abs(u))


def hairline(u, forehead, temple, sideburn, length):
  """Height v of the hairline at azimuth u (piecewise linear in |u|).

  forehead: its height at the middle of the forehead; temple: at the temple corners; sideburn: the
  lowest point in front of the ears; length: 0 for short hair, towards 1 for hair covering the ears
  and neck.
  """
  over_ear = 0.2 - 0.75 * length
  nape = -0.75 - 0.6 * length
  knots = (0.0, 0.35, 0.62, 0.9, 1.15, 1.36, 1.46, 1.95, 2.25)
  heights = (forehead, forehead - 0.02, temple, 0.5 * (temple + sideburn) + 0.1, sideburn, sideburn,
             over_ear, over_ear, nape)
  # Piecewise linear in |u| as a sum of clipped ramps (works with per-image heights).
  m = xp(u, forehead, temple, sideburn, length)
  a = m.abs(u)
  out = heights[0] + 0.0 * a
  for k in range(len(knots) - 1):
    span = knots[k + 1] - knots[k]
    out = out + (heights[k + 1] - heights[k]) * m.clip((a - knots[k]) / span, 0.0, 1.0)
  return out
