"""The DiscoFaceGAN forward pass over one parameter tree, and random parameters of that layout.

Parameter tree (what `convert` writes and `checkpoint.load` returns):

    {'vae': {'id': ..., 'exp': ..., 'gamma': ..., 'rot': ...},   each {fc0, fc1, fc2, x_hat}
     'mapping': {'Dense0': {'weight', 'bias'}, ...},
     'synthesis': {...},                                          see synthesis.py
     'mean_w_id': [num_layers, dlatent_size]}

All float32; `dtype` selects the compute precision of the layers (params stay float32).
"""
import jax
import jax.numpy as jnp
import numpy as np

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
  """Raw images [B, R, R, 3] (NHWC, about [-1, 1], unclipped) of generator inputs [B, 286].

  `dtype` is the compute dtype of the synthesis network; the mapping (a small share of the
  cost, and sensitive through its 0.01 learning-rate multiplier) always runs in float32.
  """
  return synthesis(params, arch, truncated_dlatents(params, arch, latents, psi, cutoff), dtype)


def param_shapes(arch: Arch, factors=tuple(vae.FACTORS)):
  """The parameter tree as jax.ShapeDtypeStructs (nothing is computed)."""
  def init():
    key = jax.random.key(0)
    return {
        'mapping': Mapping(arch).init(key, jnp.zeros((1, arch.latent_size)))['params'],
        'synthesis': Synthesis(arch).init(
            key, jnp.zeros((1, arch.num_layers, arch.dlatent_size)))['params'],
        'mean_w_id': jnp.zeros((arch.num_layers, arch.dlatent_size)),
        'vae': {name: vae.decoder(name).init(key, jnp.zeros((1, vae.FACTORS[name].z_dim)))[
            'params'] for name in factors},
    }
  return jax.eval_shape(init)


def _random_leaf(rng, names, shape, arch: Arch):
  """One random parameter following the official initialisation of its variable."""
  leaf = names[-1]
  if names[0] == 'vae':  # tf.layers.dense: Glorot-uniform kernel, zero bias.
    if leaf == 'bias':
      return np.zeros(shape, np.float32)
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape).astype(np.float32)
  if leaf == 'bias' or names[-2:] == ('Noise', 'weight') or leaf == 'mean_w_id':
    return np.zeros(shape, np.float32)
  if leaf == 'const':
    return np.ones(shape, np.float32)
  std = 1.0 / arch.mapping_lrmul if names[0] == 'mapping' else 1.0
  return (rng.standard_normal(shape) * std).astype(np.float32)


def random_params(seed: int, arch: Arch, factors=tuple(vae.FACTORS)):
  """Random float32 numpy parameters drawn from `seed` with the official initialisation.

  Stored weights and noise maps N(0, 1) (mapping weights N(0, 1 / lrmul)), biases and noise
  strengths zero, the constant one, VAE kernels Glorot-uniform; mean_w_id zero. Drawn in numpy:
  no compilation.
  """
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, s: _random_leaf(rng, tuple(p.key for p in path), s.shape, arch),
      param_shapes(arch, factors))
