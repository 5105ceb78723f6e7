"""The topology of the procedural head: a grid of rays cast from a vertical axis inside the head.

Rows are rays at a common elevation from a common origin on the axis x = 0, z = AXIS_Z:
  crown rows  fan upwards from the top of the face band,
  face rows   horizontal rays at decreasing heights (dense around eyes, nose and mouth); a run of
              rows at the height of the lips is the closed mouth, a fold that opens with the jaw,
  chin rows   fan downwards from the bottom of the face band,
  neck rows   parallel rays from origins sliding down the axis.
Columns are azimuths around the axis (0 = straight ahead, +pi/2 = towards +x), denser in front,
within +-MAX_AZIMUTH. Each grid point has texture coordinates (u, v): u is its azimuth and v its
height for face rows (continued as arc length over the crown and under the chin), so that near the
face u and v are close to the frontal x and y of the surface. The surface is open at the top of the
crown, at the back of the head and below the chin: aligned crops of heads turned by up to the
priors' 46 degrees of yaw and 20 degrees of pitch never show those parts, and leaving them out saves
a sixth of the polygons.
"""
from typing import NamedTuple

import numpy as np

AXIS_Z = -0.15
FACE_TOP = 0.8
FACE_BOTTOM = -1.02
LIP_Y = -0.716
CROWN_ELEVATION = 1.5
CHIN_ELEVATION = -1.2
NECK_LENGTH = 0.7
# The parts of the closed head that are kept (see the module docstring).
MAX_AZIMUTH = 2.75
MAX_CROWN_ELEVATION = 1.35
MAX_NECK = 0.25
_CROWN_RADIUS = 0.85
_CHIN_RADIUS = 0.7


class Grid(NamedTuple):
  """Rays and texture coordinates of a rows x cols grid (numpy).

  origin_y, elevation: [rows] ray origin height on the axis and ray elevation of each row.
  azimuth: [cols] ray azimuth of each column.
  v: [rows] texture coordinate v of each row; u of a column is its azimuth.
  mouth: [rows] position across the mouth fold (0 upper lip edge .. 1 lower lip edge; -1 elsewhere).
  """
  origin_y: np.ndarray
  elevation: np.ndarray
  azimuth: np.ndarray
  v: np.ndarray
  mouth: np.ndarray

  @property
  def rows(self) -> int:
    return len(self.origin_y)

  @property
  def cols(self) -> int:
    return len(self.azimuth)

  def rays(self):
    """Ray origins and unit directions, each [rows * cols, 3], row-major."""
    el, az = self.elevation[:, None], self.azimuth[None, :]
    d = np.stack(np.broadcast_arrays(np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)), -1)
    o = np.stack(np.broadcast_arrays(0.0 * az, self.origin_y[:, None], AXIS_Z + 0.0 * az), -1)
    return o.reshape(-1, 3), d.reshape(-1, 3)

  def uv(self):
    """Texture coordinates [rows * cols, 2] of the grid points."""
    u, v = np.meshgrid(self.azimuth, self.v)
    return np.stack([u, v], -1).reshape(-1, 2)


def _spaced(lo, hi, density, n):
  """n values from lo to hi whose spacing is proportional to 1 / density(t)."""
  t = np.linspace(lo, hi, 4096)
  mid = 0.5 * (t[1:] + t[:-1])
  cum = np.concatenate([[0.0], np.cumsum(density(mid) * np.abs(np.diff(t)))])
  return np.interp(np.linspace(0, cum[-1], n), cum, t)


def _face_density(y):
  """Row density of the face band: highest over eyes, nose and lips."""
  d = 1.0 + 0.5 * np.exp(-((y - 0.02) / 0.14) ** 2) + 1.4 * np.exp(-((y + 0.42) / 0.07) ** 2)
  return d + 0.6 * np.exp(-((y + 0.76) / 0.12) ** 2)


def _azimuth_density(a):
  a = np.abs(a)
  front = 0.3 + 0.7 / (1 + np.exp((a - 1.95) / 0.12))
  return front + 0.8 * np.exp(-np.square(a / 0.13)) + 0.5 * np.exp(-np.square((a - 1.72) / 0.25))


def make_grid(resolution: float = 1.0) -> Grid:
  """The ray grid; `resolution` scales the number of rows and columns (1.0 gives quads of about
  1.5 pixels on the face of an aligned 112 x 112 crop)."""
  n = lambda k: max(3, int(round(k * resolution)))
  # Columns as dense as 2 * n(90) + 1 all round the head would be, over the kept azimuths.
  round_head = _spaced(-np.pi, np.pi, _azimuth_density, 2 * n(90) + 1)
  azimuth = _spaced(-MAX_AZIMUTH, MAX_AZIMUTH, _azimuth_density,
                    int(np.sum(np.abs(round_head) <= MAX_AZIMUTH)) + 1)

  crown = CROWN_ELEVATION * np.linspace(1.0, 0.0, n(22) + 1)[:-1] ** 1.6
  crown = crown[crown <= MAX_CROWN_ELEVATION]
  upper = _spaced(FACE_TOP, LIP_Y + 1e-3, _face_density, n(54))
  fold = np.linspace(0.0, 1.0, max(3, n(7)))
  lower = _spaced(LIP_Y - 1e-3, FACE_BOTTOM, _face_density, n(20))
  chin = CHIN_ELEVATION * np.linspace(0.0, 1.0, n(16) + 1)[1:] ** 1.5
  neck = np.linspace(0.0, NECK_LENGTH, n(7) + 1)[1:]
  neck = neck[neck <= MAX_NECK]

  origin_y = np.concatenate([np.full(len(crown), FACE_TOP), upper, np.full(len(fold), LIP_Y), lower,
                             np.full(len(chin), FACE_BOTTOM), FACE_BOTTOM - neck])
  elevation = np.concatenate([crown, 0 * upper, 0 * fold, 0 * lower, chin,
                              np.full(len(neck), CHIN_ELEVATION)])
  chin_end = FACE_BOTTOM + CHIN_ELEVATION * _CHIN_RADIUS
  v = np.concatenate([FACE_TOP + crown * _CROWN_RADIUS, upper, np.full(len(fold), LIP_Y), lower,
                      FACE_BOTTOM + chin * _CHIN_RADIUS, chin_end - neck])
  mouth = np.concatenate([-np.ones(len(crown) + len(upper)), fold, -np.ones(len(lower) + len(chin) + len(neck))])
  return Grid(origin_y, elevation, azimuth, v, mouth)
