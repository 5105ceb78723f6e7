"""The base head: a smooth solid (cranium, face, jaw, chin, neck) and its surface along the grid rays.

Units are those of the 3DMM camera convention (about 10 cm); y = 0 at eye level and the face looks
towards +z. The base surface carries no facial features; the features are displacements added on top
(see `features.py`).
"""
import numpy as np


def _superellipsoid(p, centre, radii, power=2.0):
  q = np.abs((p - centre) / radii)
  r = np.sum(q ** power, axis=-1) ** (1.0 / power)
  return (r - 1.0) * np.min(radii)


def _smin(a, b, k):
  h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
  return b * (1 - h) + a * h - k * h * (1 - h)


def _smax(a, b, k):
  return -_smin(-a, -b, k)


def solid(p):
  """Signed function of the head solid at points [..., 3]: negative inside, roughly a distance."""
  cranium = _superellipsoid(p, np.array([0.0, 0.22, -0.1]), np.array([0.75, 1.0, 1.02]), 2.2)
  face = _superellipsoid(p, np.array([0.0, -0.38, 0.0]), np.array([0.67, 0.62, 0.9]), 2.6)
  jaw = _superellipsoid(p, np.array([0.0, -0.8, 0.1]), np.array([0.56, 0.4, 0.77]), 2.4)
  chin = _superellipsoid(p, np.array([0.0, -1.0, 0.57]), np.array([0.27, 0.21, 0.3]), 2.2)
  neck_xz = _superellipsoid(p[..., [0, 2]], np.array([0.0, -0.22]), np.array([0.5, 0.47]))
  neck = _smax(neck_xz, p[..., 1] + 0.35, 0.1)
  head = _smin(_smin(cranium, face, 0.12), jaw, 0.12)
  head = _smin(head, chin, 0.08)
  return _smin(head, neck, 0.14)


def normals(p, eps=1e-4):
  """Unit outward normals of the solid at points [..., 3] by central differences."""
  g = np.stack([solid(p + eps * e) - solid(p - eps * e) for e in np.eye(3)], axis=-1)
  return g / np.linalg.norm(g, axis=-1, keepdims=True)


def cast(origins, directions, t_max=3.0, steps=60):
  """Distance along each ray [N] to its last exit from the solid (the outermost surface).

  March in `steps` samples to bracket the exit, then bisect it to ~1e-9 (the solid has no part
  thinner than a step, 0.05: 200 steps found the same surfaces to 1e-9 at 3x the cost)."""
  t = np.linspace(0.0, t_max, steps)
  inside = solid(origins[:, None, :] + t[None, :, None] * directions[:, None, :]) < 0
  exits = inside[:, :-1] & ~inside[:, 1:]
  last = steps - 2 - np.argmax(exits[:, ::-1], axis=1)
  lo, hi = t[last], t[last + 1]
  for _ in range(26):
    mid = 0.5 * (lo + hi)
    outside = solid(origins + mid[:, None] * directions) >= 0
    lo, hi = np.where(outside, lo, mid), np.where(outside, mid, hi)
  return 0.5 * (lo + hi)


def base_surface(grid):
  """Base surface points [V, 3] and unit normals [V, 3] at the grid's rays."""
  origins, directions = grid.rays()
  points = origins + cast(origins, directions)[:, None] * directions
  return points, normals(points)
