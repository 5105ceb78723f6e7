"""The procedural morphable head: mean shape, identity and expression bases, topology, landmarks.

Built once per mesh resolution from code alone (no data files): a base skull cast along the rays of
`grid.make_grid`, facial features from `features.py`, deformation fields from `shape_basis.py`.
"""
import functools
from typing import NamedTuple

import numpy as np

from synface_jax.generators.procedural import (features, fields, grid as grid_lib, mesh, shader, shape_basis,
                                                skull, texture)


class ProceduralHead(NamedTuple):
  """Arrays of the model (numpy) and its static topology.

  The vertices of the 160 identity coefficients (80 shape; of the 80 texture ones only sex, age and
  build move the shape) and the 64 expression coefficients, concatenated as c [224], are
  [c @ coeff_map, 1] @ basis: coeff_map [224, R], basis [R + 1, 3 * V] (component-major
  rows, the last one the mean shape), R the rank of the 144 deformation fields, so one matrix
  product poses the whole batch. row_v, row_mouth: [rows] texture v and mouth-fold position
  per grid row; col_u: [cols] texture u per column. skin_regions [R, P]: the weights of the
  shader's broad skin tint regions (`shader.skin_regions`) at the polygons' centres, read per
  polygon. landmark_ids, landmark_weights: [5, 4]
  bilinear combinations of vertices giving the eye centres, nose tip and mouth corners (image-left
  first).
  """
  PARAMS = ('coeff_map', 'basis')

  coeff_map: np.ndarray
  basis: np.ndarray
  mesh: mesh.GridMesh
  row_v: np.ndarray
  row_mouth: np.ndarray
  col_u: np.ndarray
  skin_regions: np.ndarray
  landmark_ids: np.ndarray
  landmark_weights: np.ndarray


def _landmark(g, u, v, fold=None):
  """Vertex ids [4] and bilinear weights [4] of the surface point at texture (u, v).

  With `fold`, the point lies on the mouth-fold row nearest that fold position (v is ignored).
  """
  c = int(np.clip(np.searchsorted(g.azimuth, u) - 1, 0, g.cols - 2))
  t = (u - g.azimuth[c]) / (g.azimuth[c + 1] - g.azimuth[c])
  if fold is not None:
    r = int(np.argmin(np.abs(g.mouth - fold) + 10.0 * (g.mouth < 0)))
    s = 0.0
  else:
    rows = np.nonzero((g.mouth < 0) & (g.elevation == 0))[0]
    k = int(np.clip(np.searchsorted(-g.v[rows], -v) - 1, 0, len(rows) - 2))
    r, r1 = rows[k], rows[k + 1]
    assert r1 == r + 1, 'landmark rows must be adjacent'
    s = (g.v[r] - v) / (g.v[r] - g.v[r1])
  ids = [r * g.cols + c, r * g.cols + c + 1, (r + 1) * g.cols + c, (r + 1) * g.cols + c + 1]
  weights = [(1 - s) * (1 - t), (1 - s) * t, s * (1 - t), s * t]
  return ids, weights


def compress(fields):
  """fields [K, N] -> (map [K, R], basis [R, N]) with map @ basis == fields, R = numerical rank.

  Fewer rows make the per-image deformation (a matrix product) cheaper. The SVD is taken through
  the small [K, K] Gram matrix (K << N): the same factors, a fifteenth of the time of a full SVD.
  """
  f = fields.astype(np.float64)
  eigenvalues, u = np.linalg.eigh(f @ f.T)
  s = np.sqrt(np.maximum(eigenvalues[::-1], 0.0))  # Singular values, largest first.
  u = u[:, ::-1]
  rank = max(1, int(np.sum(s > 1e-5 * s[0])))
  tiny = np.finfo(np.float64).tiny  # All-zero fields give a zero basis, not 0 / 0.
  basis = (u[:, :rank].T @ f) / np.maximum(s[:rank, None], tiny)
  return (u[:, :rank] * s[:rank]).astype(np.float32), basis.astype(np.float32)


@functools.lru_cache(maxsize=4)
def build(resolution: float = 1.0) -> ProceduralHead:
  """The model at a mesh resolution (1.0: quads of about 1.5 pixels in a 112-pixel crop)."""
  g = grid_lib.make_grid(resolution)
  base_points, base_normals = skull.base_surface(g)
  uv = g.uv()
  mouth = np.repeat(g.mouth, g.cols)
  mean = features.mean_shape(base_points, base_normals, uv, mouth).astype(np.float32)
  surface = shape_basis.Surface(uv, mouth, base_points, base_normals)
  ident = shape_basis.identity_basis(surface).astype(np.float32)
  # The texture half of the identity moves the shape only through sex, age and build.
  texture_fields = np.zeros_like(ident)
  for name, field in shape_basis.morphology_fields(surface).items():
    texture_fields[texture.NAMES.index(name)] = field
  ident = np.concatenate([ident, texture_fields])
  expr = shape_basis.expression_basis(surface).astype(np.float32)
  points = [_landmark(g, -fields.EYE_U, fields.EYE_V), _landmark(g, fields.EYE_U, fields.EYE_V),
            _landmark(g, 0.0, fields.NOSE_LANDMARK_V),
            _landmark(g, -fields.MOUTH_LANDMARK_U, 0.0, fold=0.5),
            _landmark(g, fields.MOUTH_LANDMARK_U, 0.0, fold=0.5)]
  to_planes = lambda b: np.ascontiguousarray(np.transpose(b, (0, 2, 1)).reshape(b.shape[0], -1))
  coeff_map, basis = compress(np.concatenate([to_planes(ident), to_planes(expr)]))
  basis = np.concatenate([basis, mean.T.reshape(1, -1)]).astype(np.float32)
  grid_mesh = mesh.GridMesh(g.rows, g.cols)
  row, col = grid_mesh.polygon_cells(np.arange(grid_mesh.num_polygons))
  centre_u = 0.5 * (g.azimuth[col] + g.azimuth[np.minimum(col + 1, g.cols - 1)])
  centre_v = 0.5 * (g.v[row] + g.v[row + 1])
  regions = np.stack(shader.skin_regions(centre_u, centre_v)).astype(np.float32)
  return ProceduralHead(
      coeff_map=coeff_map, basis=basis,
      mesh=grid_mesh, skin_regions=regions,
      row_v=g.v.astype(np.float32), row_mouth=g.mouth.astype(np.float32),
      col_u=g.azimuth.astype(np.float32),
      landmark_ids=np.array([p[0] for p in points], np.int32),
      landmark_weights=np.array([p[1] for p in points], np.float32))
