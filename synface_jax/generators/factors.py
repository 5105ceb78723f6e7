"""The latent factors every generator consumes, in DiscoFaceGAN's lambda layout.

identity 160 (80 shape + 80 texture coefficients), expression 64, pose 3 (pitch, yaw, roll in
radians), lighting 27 (3 colours x 9 spherical-harmonics bands), noise 32 (standard normals that
no decoder sees). Concatenated in this order they are DiscoFaceGAN's 286-number generator input:
note that pose comes before lighting there, while its z vector orders lighting before pose.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

IDENTITY_DIM = 160
EXPRESSION_DIM = 64
POSE_DIM = 3
LIGHTING_DIM = 27
NOISE_DIM = 32
LAMBDA_DIM = IDENTITY_DIM + EXPRESSION_DIM + POSE_DIM + LIGHTING_DIM  # 254


class Factors(NamedTuple):
  """One face (unbatched) or a batch of faces (leading axis) in factor form."""
  identity: jax.Array    # [..., 160]
  expression: jax.Array  # [..., 64]
  pose: jax.Array        # [..., 3]
  lighting: jax.Array    # [..., 27]
  noise: jax.Array       # [..., 32]

  def to_vector(self) -> jax.Array:
    """The 286-number generator input: id, exp, rot, gamma, noise."""
    return jnp.concatenate(
        [self.identity, self.expression, self.pose, self.lighting, self.noise], axis=-1)

  @classmethod
  def from_vector(cls, v: jax.Array) -> 'Factors':
    edges = [IDENTITY_DIM, IDENTITY_DIM + EXPRESSION_DIM, LAMBDA_DIM - LIGHTING_DIM, LAMBDA_DIM]
    if v.shape[-1] != LAMBDA_DIM + NOISE_DIM:
      raise ValueError(f'factor vector has {v.shape[-1]} entries, expected {LAMBDA_DIM + NOISE_DIM}')
    return cls(*jnp.split(v, edges, axis=-1))
