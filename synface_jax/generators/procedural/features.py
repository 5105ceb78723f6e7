"""The facial features of the mean head, as displacements of the base surface along its normals.

Every feature is a smooth height field on the (u, v) texture plane (see `fields.py`), so the shader,
which paints eyes, lips, nostrils and brows in the same plane, stays in register with the geometry.
"""
import numpy as np

from synface_jax.generators.procedural import fields as f


def _nose(u, v):
  """Height of the nose: bridge, tip, wings, and the underside sloping back to the lip."""
  bridge = np.clip((0.1 - v) / (0.1 - f.NOSE_TIP_V), 0.0, 1.0)
  ridge = 0.015 + 0.2 * bridge ** 1.15
  below = np.clip((f.NOSE_TIP_V - v) / (f.NOSE_TIP_V - f.SUBNASALE_V), 0.0, 1.0)
  ridge = ridge * (1.0 - f.smoothstep(0.0, 1.0, below) ** 0.8)
  ridge = ridge * f.smoothstep(0.14, 0.06, v)
  width = 0.05 + 0.045 * bridge
  cross = np.clip(1.0 - np.square(u / width), 0.0, 1.0) ** 1.5
  skirt = np.exp(-np.square(u / (2.4 * width)))
  height = ridge * (0.7 * cross + 0.3 * skirt)
  tip = 0.035 * f.gauss(u, v, 0.0, f.NOSE_TIP_V + 0.01, 0.06, 0.05) * f.smoothstep(-0.47, -0.38, v)
  wings = 0.075 * f.gauss(np.abs(u), v, 0.105, -0.425, 0.05, 0.045)
  wings = wings * f.smoothstep(-0.49, -0.43, v) + 0.03 * f.gauss(np.abs(u), v, 0.1, -0.4, 0.07, 0.06)
  return height + tip + wings


def _lips(u, v, lower_side):
  """Height of the lips; `lower_side` (0..1) selects the lower lip at the lip line itself."""
  a = np.abs(u)
  span = np.clip(1.0 - np.square(a / (f.MOUTH_U + 0.02)), 0.0, 1.0) ** 0.6
  upper = 0.02 * f.smoothstep(f.SUBNASALE_V, -0.6, v) + 0.055 * f.gauss(a, v, 0.0, -0.68, 0.5, 0.04)
  upper = upper * f.smoothstep(f.MOUTH_V - 0.03, f.MOUTH_V + 0.01, v)
  philtrum = -0.01 * f.gauss(u, v, 0.0, -0.57, 0.028, 0.08)
  lower = 0.06 * f.gauss(a, v, 0.0, -0.77, 0.5, 0.04) * f.smoothstep(-0.86, f.MOUTH_V, v)
  upper_at_line = 0.045 * f.gauss(a, f.MOUTH_V, 0.0, -0.69, 0.5, 0.05)
  lower_at_line = 0.045 * f.gauss(a, f.MOUTH_V, 0.0, -0.745, 0.5, 0.05)
  at_line = upper_at_line * (1 - lower_side) + lower_at_line * lower_side
  near_line = f.gauss(0.0, v, 0.0, f.MOUTH_V, 1.0, 0.012)
  lips = (upper + lower) * (1 - near_line) + at_line * near_line
  return lips * span + philtrum * f.smoothstep(-0.7, -0.62, v)


def _eyes(u, v):
  a = np.abs(u)
  socket = -0.095 * f.gauss(a, v, f.EYE_U - 0.01, 0.04, 0.17, 0.12)
  ball = 0.06 * np.sqrt(np.clip(1.0 - f.ellipse(a, v, f.EYE_U, f.EYE_V, 0.16, 0.11), 0.0, 1.0))
  lid = 0.012 * f.gauss(a, v, f.EYE_U, 0.075, 0.12, 0.025)
  bag = 0.008 * f.gauss(a, v, f.EYE_U + 0.02, -0.09, 0.1, 0.03)
  brow = 0.035 * f.gauss(a, v, 0.3, 0.2, 0.24, 0.07) + 0.02 * f.gauss(u, v, 0.0, 0.17, 0.1, 0.07)
  return socket + ball + lid + bag + brow


def _ears(u, v):
  """Ears as raised plates, tilted back, with a rim and a hollow."""
  a = np.abs(u)
  du = a - f.EAR_U - 0.25 * (v - f.EAR_V)
  dv = v - f.EAR_V
  r2 = np.square(du / 0.19) + np.square(dv / 0.31)
  plate = f.smoothstep(1.05, 0.6, np.sqrt(r2 + 1e-9)) * (0.08 + 0.07 * np.clip(du / 0.19 + 0.6, 0.0, 1.6))
  rim = 0.025 * f.gauss(np.sqrt(r2 + 1e-9), 0.0, 0.8, 0.0, 0.12, 1.0) * f.smoothstep(1.0, 0.8, np.sqrt(r2 + 1e-9))
  hollow = -0.09 * f.gauss(du, dv, -0.02, -0.05, 0.085, 0.11)
  return plate + rim + hollow * f.smoothstep(1.0, 0.7, np.sqrt(r2 + 1e-9))


def _cheeks(u, v):
  a = np.abs(u)
  bones = 0.035 * f.gauss(a, v, 0.48, -0.17, 0.15, 0.1)
  folds = 0.03 * f.gauss(a, v, 0.34, -0.52, 0.08, 0.14)
  temples = -0.02 * f.gauss(a, v, 0.72, 0.25, 0.15, 0.15)
  chin = 0.03 * f.gauss(u, v, 0.0, -0.98, 0.13, 0.08) - 0.022 * f.gauss(u, v, 0.0, -0.875, 0.15, 0.03)
  corners = -0.015 * f.gauss(a, v, f.MOUTH_U + 0.015, f.MOUTH_V, 0.025, 0.03)
  return bones + folds + temples + chin + corners


def mouth_fold(u, mouth):
  """Depth [V] by which the rows of the closed mouth are pushed into the head."""
  inside = np.clip(mouth, 0.0, 1.0) * (mouth >= 0)
  span = np.clip(1.0 - np.square(np.abs(u) / f.MOUTH_U), 0.0, 1.0) ** 0.5
  return 0.1 * np.sin(np.pi * inside) * span


def _hair(u, v):
  """A layer of hair over the crown, the sides above the ears and the back of the head."""
  a = np.abs(u)
  line = 0.68 + (0.3 - 0.68) * f.smoothstep(0.5, 1.2, a)
  line = np.where(a > 1.9, 0.3 + (-0.6 - 0.3) * f.smoothstep(1.9, 2.5, a), line)
  return 0.045 * f.smoothstep(line - 0.02, line + 0.12, v)


def height(u, v, mouth):
  """Total feature height [V] at texture coordinates (u, v) and mouth-fold position `mouth`."""
  lower_side = np.clip(mouth, 0.0, 1.0) * (mouth >= 0) + (mouth < 0) * (v < f.MOUTH_V)
  face = _nose(u, v) + _lips(u, v, lower_side) + _eyes(u, v) + _cheeks(u, v)
  return face * f.front(u, 1.1) + _ears(u, v) + _hair(u, v) - mouth_fold(u, mouth)


def mean_shape(base_points, base_normals, uv, mouth):
  """Vertices [V, 3] of the mean head: the base surface displaced by the features."""
  h = height(uv[:, 0], uv[:, 1], mouth)
  return base_points + h[:, None] * base_normals
