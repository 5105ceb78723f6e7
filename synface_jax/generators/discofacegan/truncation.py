"""DiscoFaceGAN's truncation trick: pull the identity part of w towards the average identity.

w' = w + (1 - psi) * (mean_w_id - w_id) on style layers [0, cutoff), w elsewhere, where
w = mapping(lambda ++ noise) and w_id = mapping(lambda_id ++ zeros(126)): only the 160 identity
coefficients are kept for w_id, expression/pose/lighting and the 32 noise numbers are zeroed.
"""
import jax.numpy as jnp

from synface_jax.generators.factors import IDENTITY_DIM

PSI = 0.7
CUTOFF = 8


def identity_latents(latents):
  """[..., 286] generator inputs -> the same with everything but the identity part zeroed."""
  return jnp.concatenate(
      [latents[..., :IDENTITY_DIM], jnp.zeros_like(latents[..., IDENTITY_DIM:])], axis=-1)


def truncate(w, w_id, mean_w_id, psi=PSI, cutoff=CUTOFF):
  """w, w_id [B, L, D], mean_w_id [L, D] or [1, L, D] -> truncated w [B, L, D]."""
  num_layers = w.shape[-2]
  pull = jnp.where(jnp.arange(num_layers) < cutoff, 1.0 - psi, 0.0).astype(w.dtype)
  return w + pull[:, None] * (jnp.reshape(mean_w_id, w.shape[-2:]) - w_id)
