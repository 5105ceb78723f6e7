"""Spherical-harmonics shading in the 3DMM convention (Deep3DFaceRecon / DiscoFaceGAN).

Lighting is 27 numbers: 9 second-order SH coefficients for each of red, green and blue. 0.8 is added
to every colour's first (ambient) coefficient, so all-zero lighting is a uniform ambient light.
"""
import numpy as np
import jax.numpy as jnp

AMBIENT_OFFSET = 0.8

_A0, _A1, _A2 = np.pi, 2 * np.pi / np.sqrt(3.0), 2 * np.pi / np.sqrt(8.0)
_C0, _C1 = 1 / np.sqrt(4 * np.pi), np.sqrt(3.0) / np.sqrt(4 * np.pi)
_C2 = 3 * np.sqrt(5.0) / np.sqrt(12 * np.pi)
# Scale of each band-1 basis function: a directional term s * dot(n, d) needs coefficients s / BAND1.
BAND1 = float(_A1 * _C1)
AMBIENT = float(_A0 * _C0)


def sh_basis_planes(normals):
  """The 9 SH basis values (a list of planes) at unit normals given as 3 planes."""
  nx, ny, nz = normals
  b2 = _A2 * _C2
  return [
      jnp.full_like(nx, _A0 * _C0),
      -_A1 * _C1 * ny,
      _A1 * _C1 * nz,
      -_A1 * _C1 * nx,
      b2 * nx * ny,
      -b2 * ny * nz,
      b2 * 0.5 / np.sqrt(3.0) * (3 * nz * nz - 1),
      -b2 * nx * nz,
      b2 * 0.5 * (nx * nx - ny * ny),
  ]


def sh_basis(normals):
  """The 9 SH basis values [..., 9] at unit normals [..., 3]."""
  return jnp.stack(sh_basis_planes((normals[..., 0], normals[..., 1], normals[..., 2])), axis=-1)


def irradiance(normals, lighting):
  """RGB irradiance [..., 3] at unit normals [..., 3] under lighting [27] (3 colours x 9 bands)."""
  gamma = lighting.reshape(3, 9) + jnp.array([AMBIENT_OFFSET] + [0.0] * 8)
  return sh_basis(normals) @ gamma.T


def directional(direction, strength, colour=(1.0, 1.0, 1.0)):
  """Lighting coefficients [27] adding strength * colour * dot(n, direction) to the irradiance."""
  d = jnp.asarray(direction)
  band = jnp.stack([jnp.zeros_like(d[0]), -d[1], d[2], -d[0]]) / BAND1
  per_colour = jnp.asarray(colour)[:, None] * strength * band[None, :]
  return jnp.concatenate([per_colour, jnp.zeros((3, 5), per_colour.dtype)], axis=1).reshape(27)
