"""Mesh topologies the renderer understands: a wrapped grid of quads and a list of triangles.

Per-vertex data is kept as planes [B, V] (one array per component), which XLA vectorises far better
on CPU than [B, V, 3]. Both topologies give the corner values of every polygon (K planes [B, P]),
the vertex ids of given polygons, and polygon normals. The grid answers with slices and index
arithmetic; the triangle list with gathers. Polygons are wound counter-clockwise seen from outside.
"""
import jax.numpy as jnp
import numpy as np


def cross(a, b):
  """Cross product of two vectors given as 3-tuples of planes."""
  return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def normalize(v):
  """Unit vector of a 3-tuple of planes (zero vectors stay zero)."""
  inv = jnp.reciprocal(jnp.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + 1e-20))
  return (v[0] * inv, v[1] * inv, v[2] * inv)


class GridMesh:
  """Quads between neighbouring points of a rows x cols grid.

  Vertex (r, c) has id r * cols + c. Quad ids run over the same flat layout: quad r * cols + c
  has corners (r, c), (r + 1, c), (r + 1, c + 1), (r, c + 1), whose (row, col) offsets are
  CORNER_OFFSETS, so the corner planes of all quads are four contiguous slices of a vertex plane
  (no index arithmetic per element, which XLA vectorises well). Ids with c = cols - 1 would wrap
  to the next row and are not quads (`valid` is False there). Rows run top to bottom and columns
  left to right seen from outside. A closed surface repeats its first column as its last.
  """
  corners_per_polygon = 4
  CORNER_OFFSETS = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.int32)

  def __init__(self, rows: int, cols: int):
    self.rows, self.cols = rows, cols
    self.num_vertices = rows * cols
    self.num_polygons = (rows - 1) * cols - 1
    self.valid = np.arange(self.num_polygons) % cols != cols - 1

  def corners(self, plane):
    """A per-vertex plane [..., V] -> the 4 corner planes [..., P] of the quads."""
    p, c = self.num_polygons, self.cols
    return [plane[..., :p], plane[..., c:c + p], plane[..., c + 1:c + 1 + p], plane[..., 1:1 + p]]

  def polygon_cells(self, polygon_ids):
    """(row, col) of the top-left corner of polygons."""
    return polygon_ids // self.cols, polygon_ids % self.cols

  def polygon_vertices(self, polygon_ids):
    """Vertex ids (a list of 4 arrays shaped like polygon_ids) of the quads' corners."""
    return [polygon_ids, polygon_ids + self.cols, polygon_ids + self.cols + 1, polygon_ids + 1]

  def polygon_normals(self, points, normalise: bool = True):
    """Normals (3 planes [..., P]) of the quads of points given as 3 planes [..., V]: unit
    vectors, or with normalise=False the cross product of the diagonals."""
    c = [self.corners(p) for p in points]
    diag1 = tuple(a[2] - a[0] for a in c)
    diag2 = tuple(a[3] - a[1] for a in c)
    n = cross(diag1, diag2)
    return normalize(n) if normalise else n


class TriangleMesh:
  """An arbitrary triangle mesh (for instance a Basel Face Model)."""
  corners_per_polygon = 3
  valid = None  # Every triangle is a polygon.

  def __init__(self, triangles, num_vertices: int):
    self.triangles = np.asarray(triangles, np.int32)
    self.num_vertices = num_vertices
    self.num_polygons = len(self.triangles)
    # For each vertex, the triangles around it, padded with a dummy triangle id.
    count = np.bincount(self.triangles.reshape(-1), minlength=num_vertices)
    width = max(1, int(count.max()))
    table = np.full((num_vertices, width), self.num_polygons, np.int32)
    order = np.argsort(self.triangles.reshape(-1), kind='stable')
    verts = self.triangles.reshape(-1)[order]
    slot = np.arange(len(verts)) - np.searchsorted(verts, verts)
    table[verts, slot] = order // 3
    self.vertex_triangles = table

  def corners(self, plane):
    return [plane[..., self.triangles[:, k]] for k in range(3)]

  def polygon_vertices(self, polygon_ids):
    tri = jnp.asarray(self.triangles)
    return [tri[:, k][polygon_ids] for k in range(3)]

  def polygon_normals(self, points):
    c = [self.corners(p) for p in points]
    e1 = tuple(c[i][1] - c[i][0] for i in range(3))
    e2 = tuple(c[i][2] - c[i][0] for i in range(3))
    return normalize(cross(e1, e2))

  def vertex_normals(self, points):
    """Unit normals (3 planes [..., V]): the sum of the areas-weighted normals around a vertex."""
    c = [self.corners(p) for p in points]
    e1 = tuple(c[i][1] - c[i][0] for i in range(3))
    e2 = tuple(c[i][2] - c[i][0] for i in range(3))
    face = cross(e1, e2)
    pad = lambda a: jnp.concatenate([a, jnp.zeros(a.shape[:-1] + (1,), a.dtype)], axis=-1)
    summed = tuple(jnp.sum(pad(f)[..., self.vertex_triangles], axis=-1) for f in face)
    return normalize(summed)
