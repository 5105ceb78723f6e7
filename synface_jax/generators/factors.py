"""The latent factors every generator consumes, in DiscoFaceGAN's lambda layout (defined in
`synface_jax.types`; their sizes are re-exported here for the generators).

identity 160 (80 shape + 80 texture coefficients), expression 64, pose 3 (pitch, yaw, roll in
radians), lighting 27 (3 colours x 9 spherical-harmonics bands), noise 32 (standard normals that
no decoder sees).
"""
from synface_jax.types import (  # noqa: F401
    EXPRESSION_DIM, IDENTITY_DIM, LAMBDA_DIM, LIGHTING_DIM, NOISE_DIM, POSE_DIM, Factors)
