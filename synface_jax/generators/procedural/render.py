"""Rendering a batch of faces: deform, pose, project, align to the 5-point template, rasterise, shade.

The projected vertices are mapped onto the alignment template by the least-squares similarity of the
five landmark vertices, so faces are rasterised directly in the aligned frame (no resampling) and
the returned landmarks are exact. All functions are pure and jittable.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from synface_jax.generators.procedural import align, camera, lighting, packing, raster
from synface_jax.generators.procedural.packing import gather


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


def rasterize(mesh, proj: Projection, height: int, width: int, polygon_planes=(), vertex_planes=(),
              cull_back: bool = True, depth_range=None, polygon_codec=None, polygon_exact=None,
              see_through=None):
  """Visibility and per-pixel interpolation.

  Args:
    mesh: a `mesh.GridMesh` or `mesh.TriangleMesh`.
    proj: the posed, aligned batch.
    height, width: image size.
    polygon_planes: per-polygon values (planes [B, P]) to read at each pixel's polygon.
    vertex_planes: per-vertex values (planes [B, V]) to interpolate at each pixel.
    cull_back: skip polygons facing away.
    depth_range: known (near, far) depth bounds, or None to take them from each image.
    see_through: see `raster.visibility`.
    polygon_codec: optional (encode, decode) of `packing`, to read all polygon planes with one
      gather (e.g. `packing.unit_codec()` for the directions of normals).
    polygon_exact: with polygon_codec, the function of the planes the codec approximates
      (e.g. `mesh.normalize`); its gradient is the reads' gradient.

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
                             valid=mesh.valid, see_through=see_through)

  # Inside conditionals the projected planes are computed once, then read, instead of being
  # recomputed for every polygon corner, window offset and gathered vertex.
  anchor = proj.depth[0, 0]
  polygon_ids, hit = raster.unfused(visible, (proj.x, proj.y, proj.depth), anchor)

  if mesh.corners_per_polygon == 4:
    s, t = _quad_coords(mesh, proj.x, proj.y, polygon_ids, height, width)
    weights = [(1 - s) * (1 - t), s * (1 - t), s * t, (1 - s) * t]
  else:
    weights = _barycentric(mesh, proj.x, proj.y, polygon_ids, height, width)
  if polygon_codec is not None and polygon_planes:
    poly_values = packing.read_exact(polygon_codec, polygon_planes, [polygon_ids], polygon_exact)[0]
  else:
    poly_values = raster.unfused(lambda ops: tuple(gather(p, ops[1]) for p in ops[0]),
                                 (tuple(polygon_planes), polygon_ids), anchor)
  read_corners = lambda ops: tuple([gather(p, i) for i in mesh.polygon_vertices(ops[1])] for p in ops[0])
  vert_corners = raster.unfused(read_corners, (tuple(vertex_planes), polygon_ids), anchor)
  vert_values = tuple(sum(w * c for w, c in zip(weights, corners)) for corners in vert_corners)
  return polygon_ids, hit, weights, poly_values, vert_values


def _quad_coords(mesh, x, y, ids, height, width):
  """(s, t) planes [B, N] of the pixels in their quads (see `raster.quad_coords`), materialised.

  The corners' x and y are read packed in one code (4 gathers instead of 8) and decoded in the
  arithmetic; the gradient is that of the exact float reads.
  """
  px, py = raster.pixel_centres(height, width)
  codec = packing.pixel_codec(height, width)

  def fast(x, y, ids):
    anchor = x[0, 0]
    codes = packing.read(codec, (x, y), mesh.polygon_vertices(ids), anchor)
    def coords(codes):
      corners = [codec[1](c) for c in codes]
      return raster.quad_coords([c[0] for c in corners], [c[1] for c in corners], px, py)
    return raster.unfused(coords, codes, anchor)

  def reference(x, y, ids):
    corner_ids = mesh.polygon_vertices(ids)
    return raster.quad_coords([gather(x, i) for i in corner_ids], [gather(y, i) for i in corner_ids],
                              px, py)

  return packing.straight_through(fast, reference)(x, y, ids)


def _barycentric(mesh, x, y, ids, height, width):
  """Barycentric weights [B, N] of the pixels in their triangles, from materialised corners."""
  px, py = raster.pixel_centres(height, width)
  def read(ops):
    x, y, ids = ops
    corner_ids = mesh.polygon_vertices(ids)
    return [gather(x, i) for i in corner_ids], [gather(y, i) for i in corner_ids]
  corner_x, corner_y = raster.unfused(read, (x, y, ids), x[0, 0])
  return raster.barycentric(corner_x, corner_y, px, py)


def shade(albedo, normals, lighting_coeffs):
  """Colour planes = albedo (3 planes) x SH irradiance at unit normals (3 planes) per image."""
  basis = lighting.sh_basis_planes(normals)                              # 9 planes [B, N]
  gamma = lighting_coeffs.reshape(-1, 3, 9) + jnp.array([lighting.AMBIENT_OFFSET] + [0.0] * 8)
  out = []
  for c, a in enumerate(albedo):
    irr = sum(gamma[:, c, k, None] * basis[k] for k in range(9))
    out.append(a * irr)
  return tuple(out)


def smooth(planes, hit, height: int, width: int):
  """A 3 x 3 binomial blur of per-pixel planes [B, N] over the covered pixels (hit [B, N]).

  Used on the normals of small flat quads, whose shading would otherwise look faceted; uncovered
  pixels neither contribute nor change.
  """
  def blur(x):
    p = jnp.pad(x.reshape(-1, height, width), ((0, 0), (1, 1), (1, 1)))
    rows = p[:, :, :-2] + 2.0 * p[:, :, 1:-1] + p[:, :, 2:]
    return (rows[:, :-2] + 2.0 * rows[:, 1:-1] + rows[:, 2:]).reshape(x.shape)

  mask = hit.astype(planes[0].dtype)
  weight = 1.0 / jnp.maximum(blur(mask), 1.0)
  return tuple(jnp.where(hit, blur(p * mask) * weight, p) for p in planes)


def composite(colour, hit, background, height: int, width: int):
  """Images [B, H, W, 3] in [-1, 1] from colour and background planes and the hit mask."""
  mask = hit.astype(colour[0].dtype)
  planes = tuple(jnp.clip(c, 0.0, 1.0) * mask + b * (1 - mask) for c, b in zip(colour, background))
  # The shading graph is computed plane by plane before the channels are interleaved.
  interleave = lambda p: jnp.stack(p, axis=-1) * 2.0 - 1.0
  rgb = raster.unfused(interleave, planes, planes[0][0, 0])
  return rgb.reshape(rgb.shape[0], height, width, 3)
