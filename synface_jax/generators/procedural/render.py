"""Rendering a batch of faces: deform, pose, project, align to the 5-point template, rasterise, shade.

The projected vertices are mapped onto the alignment template by the least-squares similarity of the
five landmark vertices, so faces are rasterised directly in the aligned frame (no resampling) and
the returned landmarks are exact. All functions are pure and jittable.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from synface_jax.generators.procedural import align, camera, lighting, raster


class Projection(NamedTuple):
  """A posed, projected and aligned batch of meshes (all planes [B, V] unless noted)."""
  camera_points: tuple   # 3 planes, camera frame (after pose rotation)
  x: jax.Array           # aligned pixel x
  y: jax.Array           # aligned pixel y
  depth: jax.Array       # distance from the camera
  landmarks: jax.Array   # [B, 5, 2] aligned pixel x, y of the landmark vertices


def deform(mean, bases_and_coeffs):
  """Vertices (3 planes [B, V]) = mean [3, V] + sum of coeffs [B, K] @ basis [K, 3 * V]."""
  offset = sum(c @ b for b, c in bases_and_coeffs)
  batch = offset.shape[0]
  verts = mean[None] + offset.reshape(batch, 3, -1)
  return verts[:, 0], verts[:, 1], verts[:, 2]


def _landmarks(x, y, ids, weights):
  """[B, 5, 2] landmark positions: weighted sums of vertices (ids [5] or [5, K])."""
  if weights is None:
    return jnp.stack([x[:, ids], y[:, ids]], axis=-1)
  w = jnp.asarray(weights)
  return jnp.stack([jnp.sum(x[:, ids] * w, -1), jnp.sum(y[:, ids] * w, -1)], axis=-1)


def pose_and_align(points, pose, landmark_ids, template, landmark_weights=None) -> Projection:
  """Rotates points by pose [B, 3], projects them and maps the five landmarks (vertex ids [5], or
  [5, K] averaged with landmark_weights [5, K]) onto template [5, 2] by a similarity."""
  cam = camera.rotate(points, jax.vmap(camera.rotation_matrix)(pose))
  x, y, depth = camera.project(cam)
  src = _landmarks(x, y, landmark_ids, landmark_weights)
  matrix, offset = jax.vmap(align.similarity, in_axes=(0, None))(src, jnp.asarray(template))
  m = lambda i, j: matrix[:, i, j, None]
  ax = m(0, 0) * x + m(0, 1) * y + offset[:, 0, None]
  ay = m(1, 0) * x + m(1, 1) * y + offset[:, 1, None]
  landmarks = _landmarks(ax, ay, landmark_ids, landmark_weights)
  return Projection(cam, ax, ay, depth, landmarks)


def gather(plane, ids):
  """plane [B, V] at per-image ids [B, N] -> [B, N] (one flat gather, fast on CPU)."""
  batch, size = plane.shape
  return plane.reshape(-1)[ids + (jnp.arange(batch, dtype=ids.dtype) * size)[:, None]]


def rasterize(mesh, proj: Projection, height: int, width: int, polygon_planes=(), vertex_planes=(),
              cull_back: bool = True, depth_range=None):
  """Visibility and per-pixel interpolation.

  Args:
    mesh: a `mesh.GridMesh` or `mesh.TriangleMesh`.
    proj: the posed, aligned batch.
    height, width: image size.
    polygon_planes: per-polygon values (planes [B, P]) to read at each pixel's polygon.
    vertex_planes: per-vertex values (planes [B, V]) to interpolate at each pixel.
    cull_back: skip polygons facing away.
    depth_range: known (near, far) depth bounds, or None to take them from each image.

  Returns:
    (polygon_ids [B, N], hit [B, N] bool, weights (K planes [B, N]) over the polygon's corners
    (barycentric for triangles, bilinear for quads), polygon values, interpolated vertex values),
    N = height * width pixels, row-major.
  """
  def visible(planes):
    x, y, depth = planes
    corner_depth = mesh.corners(depth)
    return raster.visibility(mesh.corners(x), mesh.corners(y), sum(corner_depth) / len(corner_depth),
                             height, width, cull_back=cull_back, depth_range=depth_range,
                             valid=mesh.valid)

  # Inside conditionals the projected planes are computed once, then read, instead of being
  # recomputed for every polygon corner, window offset and gathered vertex.
  polygon_ids, hit = raster.unfused(visible, (proj.x, proj.y, proj.depth), proj.depth[0, 0])
  px, py = raster.pixel_centres(height, width)
  anchor = proj.depth[0, 0]

  def read(operands):
    x, y, ids, polys, verts = operands
    corner_ids = mesh.polygon_vertices(ids)
    return ([gather(x, i) for i in corner_ids], [gather(y, i) for i in corner_ids],
            tuple(gather(p, ids) for p in polys),
            tuple([gather(p, i) for i in corner_ids] for p in verts))

  # The gathered corners are materialised too: fused into the arithmetic below, every gather
  # would run again for every output plane.
  operands = (proj.x, proj.y, polygon_ids, tuple(polygon_planes), tuple(vertex_planes))
  corner_x, corner_y, poly_values, vert_corners = raster.unfused(read, operands, anchor)
  if mesh.corners_per_polygon == 4:
    s, t = raster.unfused(lambda c: raster.quad_coords(*c, px, py), (corner_x, corner_y), anchor)
    weights = [(1 - s) * (1 - t), s * (1 - t), s * t, (1 - s) * t]
  else:
    weights = raster.barycentric(corner_x, corner_y, px, py)
  vert_values = tuple(sum(w * c for w, c in zip(weights, corners)) for corners in vert_corners)
  return polygon_ids, hit, weights, poly_values, vert_values


def shade(albedo, normals, lighting_coeffs):
  """Colour planes = albedo (3 planes) x SH irradiance at unit normals (3 planes) per image."""
  basis = lighting.sh_basis_planes(normals)                              # 9 planes [B, N]
  gamma = lighting_coeffs.reshape(-1, 3, 9) + jnp.array([lighting.AMBIENT_OFFSET] + [0.0] * 8)
  out = []
  for c, a in enumerate(albedo):
    irr = sum(gamma[:, c, k, None] * basis[k] for k in range(9))
    out.append(a * irr)
  return tuple(out)


def composite(colour, hit, background, height: int, width: int):
  """Images [B, H, W, 3] in [-1, 1] from colour and background planes and the hit mask."""
  mask = hit.astype(colour[0].dtype)
  planes = tuple(jnp.clip(c, 0.0, 1.0) * mask + b * (1 - mask) for c, b in zip(colour, background))
  # The shading graph is computed plane by plane before the channels are interleaved.
  interleave = lambda p: jnp.stack(p, axis=-1) * 2.0 - 1.0
  rgb = raster.unfused(interleave, planes, planes[0][0, 0])
  return rgb.reshape(rgb.shape[0], height, width, 3)
