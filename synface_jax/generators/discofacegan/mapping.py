"""The mapping network: 286 generator inputs -> w, copied to every style layer.

Eight equalized-learning-rate dense layers with leaky ReLU 0.2 after each (the last included);
DiscoFaceGAN dropped StyleGAN's input pixel norm. Variables keep the stored (unscaled) values of
the official checkpoint, `Dense{i}/weight` [in, out] and `Dense{i}/bias` [out]; the run-time scale
sqrt(2) / sqrt(fan_in) * lrmul and the bias scale lrmul are applied here.
"""
import math

import flax.linen as nn
import jax.numpy as jnp

from synface_jax.generators.discofacegan import layers
from synface_jax.generators.discofacegan.arch import Arch


class EqualizedDense(nn.Module):
  """Dense layer whose stored weight is scaled at run time by gain / sqrt(fan_in) * lrmul."""
  features: int
  gain: float = math.sqrt(2.0)
  lrmul: float = 1.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    # Initialised as the official code does: N(0, 1 / lrmul) stored, zero bias.
    weight = self.param('weight', nn.initializers.normal(1.0 / self.lrmul),
                        (fan_in, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    scale = self.gain / math.sqrt(fan_in) * self.lrmul
    y = jnp.dot(x.astype(self.dtype), (weight * scale).astype(self.dtype))
    return y + (bias * self.lrmul).astype(self.dtype)


class Mapping(nn.Module):
  """latents [B, latent_size] -> dlatents [B, num_layers, dlatent_size]."""
  arch: Arch
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, latents):
    arch = self.arch
    x = latents
    for i in range(arch.mapping_layers):
      features = arch.dlatent_size if i == arch.mapping_layers - 1 else arch.mapping_fmaps
      x = EqualizedDense(features, lrmul=arch.mapping_lrmul, dtype=self.dtype,
                         name=f'Dense{i}')(x)
      x = layers.leaky_relu(x)
    x = x.astype(jnp.float32)
    return jnp.broadcast_to(x[:, None, :], (x.shape[0], arch.num_layers, x.shape[-1]))
