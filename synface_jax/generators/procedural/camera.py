"""Pose rotation and perspective projection in the 3DMM (DiscoFaceGAN / Deep3DFaceRecon) convention.

World axes: x to the image right, y up, z towards the camera. The camera sits at (0, 0, 10) looking
at the origin, with focal length 1015 * 1.22 and principal point 128 for a 256-pixel image. Image
coordinates are pixels, x right and y down, pixel centres at integers. Points are 3-tuples of planes
[B, V] (see `mesh.py`).
"""
import jax.numpy as jnp

CAMERA_DISTANCE = 10.0
FOCAL = 1015.0 * 1.22
PRINCIPAL = 128.0


def rotation_matrix(pose):
  """R = Rz(roll) Ry(yaw) Rx(pitch) [3, 3] for pose = (pitch, yaw, roll) radians."""
  pitch, yaw, roll = pose[0], pose[1], pose[2]
  one, zero = jnp.ones_like(pitch), jnp.zeros_like(pitch)
  cx, sx = jnp.cos(pitch), jnp.sin(pitch)
  cy, sy = jnp.cos(yaw), jnp.sin(yaw)
  cz, sz = jnp.cos(roll), jnp.sin(roll)
  rx = jnp.array([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
  ry = jnp.array([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
  rz = jnp.array([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
  return rz @ ry @ rx


def rotate(points, rotation):
  """Points (3 planes [B, V]) rotated by rotation [B, 3, 3], i.e. shape @ R.T per image."""
  r = rotation[:, :, :, None]
  return tuple(r[:, i, 0] * points[0] + r[:, i, 1] * points[1] + r[:, i, 2] * points[2]
               for i in range(3))


def project(points):
  """Camera-frame points (3 planes) -> (pixel x, pixel y, depth), depth measured from the camera."""
  depth = CAMERA_DISTANCE - points[2]
  inv = FOCAL / depth
  return points[0] * inv + PRINCIPAL, PRINCIPAL - points[1] * inv, depth
