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

  Vertex (r, c) has id r * cols + c; quad (r, c), for c < cols - 1, has id r * (cols - 1) + c and
  corners (r, c), (r + 1, c), (r + 1, c + 1), (r, c + 1), whose (row, col) offsets are
  CORNER_OFFSETS. Rows run top to bottom and columns left to right seen from outside. A closed
  surface repeats its first column as its last. Everything is slices and index arithmetic.
  """
  corners_per_polygon = 4
  CORNER_OFFSETS = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.int32)

  def __init__(self, rows: int, cols: int):
    self.rows, self.cols = rows, cols
    self.num_vertices = rows * cols
    self.num_polygons = (rows - 1) * (cols - 1)

  def _grid(self, plane):
    return plane.reshape(plane.shape[:-1] + (self.rows, self.cols))

  def corners(self, plane):
    """A per-vertex plane [..., V] -> the 4 corner planes [..., P] of the quads."""
    g = self._grid(plane)
    flat = lambda a: a.reshape(plane.shape[:-1] + (self.num_polygons,))
    return [flat(g[..., :-1, :-1]), flat(g[..., 1:, :-1]), flat(g[..., 1:, 1:]), flat(g[..., :-1, 1:])]

  def polygon_cells(self, polygon_ids):
    """(row, col) of the top-left corner of polygons."""
    return polygon_ids // (self.cols - 1), polygon_ids % (self.cols - 1)

  def polygon_vertices(self, polygon_ids):
    """Vertex ids (a list of 4 arrays shaped like polygon_ids) of the quads' corners."""
    r, c = self.polygon_cells(polygon_ids)
    top = r * self.cols + c
    return [top, top + self.cols, top + self.cols + 1, top + 1]

  def polygon_normals(self, points):
    """Unit normals (3 planes [..., P]) of the quads of points given as 3 planes [..., V]."""
    c = [self.corners(p) for p in points]
    diag1 = tuple(a[2] - a[0] for a in c)
    diag2 = tuple(a[3] - a[1] for a in c)
    return normalize(cross(diag1, diag2))


class TriangleMesh:
  """An arbitrary triangle mesh (for instance a Basel Face Model)."""
  corners_per_polygon = 3

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
