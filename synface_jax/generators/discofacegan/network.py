"""The DiscoFaceGAN forward pass over one parameter tree, and random parameters of that layout.

Parameter tree (what `convert` writes and `checkpoint.load` returns):

    {'vae': {'id': ..., 'exp': ..., 'gamma': ..., 'rot': ...},   each {fc0, fc1, fc2, x_hat}
     'mapping': {'Dense0': {'weight', 'bias'}, ...},
     'synthesis': {...},                                          see synthesis.py
     'mean_w_id': [num_layers, dlatent_size]}

All float32; `dtype` selects the compute precision of the convolutions and dense layers.
"""
import jax
import jax.numpy as jnp

from synface_jax.generators.discofacegan import truncation, vae
from synface_jax.generators.discofacegan.arch import Arch
from synface_jax.generators.discofacegan.mapping import Mapping
from synface_jax.generators.discofacegan.synthesis import Synthesis


def mapping(params, arch: Arch, latents, dtype=jnp.float32):
  """latents [B, 286] -> dlatents [B, num_layers, dlatent_size] (float32)."""
  return Mapping(arch, dtype).apply({'params': params['mapping']}, latents)


def synthesis(params, arch: Arch, dlatents, dtype=jnp.float32):
  """dlatents [B, num_layers, dlatent_size] -> raw images [B, R, R, 3] (float32, NHWC)."""
  return Synthesis(arch, dtype).apply({'params': params['synthesis']}, dlatents)


def truncated_dlatents(params, arch: Arch, latents, psi=truncation.PSI,
                       cutoff=truncation.CUTOFF, dtype=jnp.float32):
  """DiscoFaceGAN's truncated w of latents [B, 286]; one mapping pass over w and w_id together."""
  both = mapping(params, arch, jnp.concatenate([latents, truncation.identity_latents(latents)]),
                 dtype)
  w, w_id = jnp.split(both, 2)
  return truncation.truncate(w, w_id, params['mean_w_id'], psi, cutoff)


def generate(params, arch: Arch, latents, psi=truncation.PSI, cutoff=truncation.CUTOFF,
             dtype=jnp.float32):
  """Raw images [B, R, R, 3] (NHWC, about [-1, 1], unclipped) of generator inputs [B, 286]."""
  return synthesis(params, arch, truncated_dlatents(params, arch, latents, psi, cutoff, dtype),
                   dtype)


def init_params(key, arch: Arch, factors=tuple(vae.FACTORS)):
  """Random parameters with the official initialisation (and the given VAE factors).

  The official code initialises noise strengths and biases to zero and the constant to one;
  mean_w_id is zero here (see mean_w.compute_mean_w_id).
  """
  k_map, k_syn, k_vae = jax.random.split(key, 3)
  latents = jnp.zeros((1, arch.latent_size))
  params = {
      'mapping': Mapping(arch).init(k_map, latents)['params'],
      'synthesis': Synthesis(arch).init(
          k_syn, jnp.zeros((1, arch.num_layers, arch.dlatent_size)))['params'],
      'mean_w_id': jnp.zeros((arch.num_layers, arch.dlatent_size)),
      'vae': {},
  }
  for name, k in zip(factors, jax.random.split(k_vae, len(factors))):
    params['vae'][name] = vae.decoder(name).init(k, jnp.zeros((1, vae.FACTORS[name].z_dim)))[
        'params']
  return params
