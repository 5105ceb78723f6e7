"""The procedural morphable head: mean shape, identity and expression bases, topology, landmarks.

Built once per mesh resolution from code alone (no data files): a base skull cast along the rays of
`grid.make_grid`, facial features from `features.py`, deformation fields from `shape_basis.py`.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.generators.procedural import features, fields, grid as grid_lib, mesh, shape_basis, skull


class ProceduralHead(NamedTuple):
  """Arrays of the model (numpy) and its static topology.

  mean: [3, V] mean shape (component planes); identity_basis: [80, 3 * V]; expression_basis:
  [64, 3 * V] (component-major per basis vector). row_v, row_mouth: [rows] texture v and mouth-fold
  position per grid row; col_u: [cols] texture u per column. landmarks: [5] vertex ids of the eye
  centres, nose tip and mouth corners (image-left first).
  """
  PARAMS = ('mean', 'identity_basis', 'expression_basis')

  mean: np.ndarray
  identity_basis: np.ndarray
  expression_basis: np.ndarray
  mesh: mesh.GridMesh
  row_v: np.ndarray
  row_mouth: np.ndarray
  col_u: np.ndarray
  landmarks: np.ndarray


def _nearest(uv, mouth, u, v, fold=None):
  cost = np.square(uv[:, 0] - u) + np.square(uv[:, 1] - v)
  if fold is None:
    cost = cost + 10.0 * (mouth >= 0)
  else:
    cost = cost + 10.0 * (np.abs(mouth - fold) > 0.1)
  return int(np.argmin(cost))


@functools.lru_cache(maxsize=4)
def build(resolution: float = 1.0) -> ProceduralHead:
  """The model at a mesh resolution (1.0: quads of about 1.5 pixels in a 112-pixel crop)."""
  g = grid_lib.make_grid(resolution)
  base_points, base_normals = skull.base_surface(g)
  uv = g.uv()
  mouth = np.repeat(g.mouth, g.cols)
  with jax.default_device(jax.devices('cpu')[0]):
    mean = np.asarray(features.mean_shape(jnp.asarray(base_points), jnp.asarray(base_normals),
                                          jnp.asarray(uv), jnp.asarray(mouth)), np.float32)
    surface = shape_basis.Surface(uv, mouth, base_points, base_normals)
    ident = np.asarray(shape_basis.identity_basis(surface), np.float32)
    expr = np.asarray(shape_basis.expression_basis(surface), np.float32)
  landmarks = np.array([
      _nearest(uv, mouth, -fields.EYE_U, fields.EYE_V), _nearest(uv, mouth, fields.EYE_U, fields.EYE_V),
      _nearest(uv, mouth, 0.0, fields.NOSE_TIP_V),
      _nearest(uv, mouth, -fields.MOUTH_U, fields.MOUTH_V, fold=0.5),
      _nearest(uv, mouth, fields.MOUTH_U, fields.MOUTH_V, fold=0.5)], np.int32)
  to_planes = lambda b: np.ascontiguousarray(np.transpose(b, (0, 2, 1)).reshape(b.shape[0], -1))
  return ProceduralHead(
      mean=np.ascontiguousarray(mean.T), identity_basis=to_planes(ident),
      expression_basis=to_planes(expr), mesh=mesh.GridMesh(g.rows, g.cols),
      row_v=g.v.astype(np.float32), row_mouth=g.mouth.astype(np.float32),
      col_u=g.azimuth.astype(np.float32), landmarks=landmarks)
