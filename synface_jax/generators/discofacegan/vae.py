"""The factor VAE decoders of DiscoFaceGAN: z of one factor -> its 3DMM coefficients (lambda).

Each is dense -> ReLU -> dense -> ReLU -> dense -> ReLU -> linear, with the official names
`fc0`, `fc1`, `fc2`, `x_hat` and kernels [in, out]. In z (179 numbers) the factors come in the
order id, exp, gamma, rot; in the generator input (lambda) the order is id, exp, rot, gamma.
"""
from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp


class FactorSpec(NamedTuple):
  z_dim: int
  hidden: int
  out_dim: int


# In z order.
FACTORS = {
    'id': FactorSpec(128, 512, 160),
    'exp': FactorSpec(32, 256, 64),
    'gamma': FactorSpec(16, 128, 27),
    'rot': FactorSpec(3, 32, 3),
}
LAYER_NAMES = ('fc0', 'fc1', 'fc2', 'x_hat')


class FactorDecoder(nn.Module):
  """z [..., z_dim] -> lambda [..., out_dim] of one factor."""
  hidden: int
  out_dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z):
    x = z.astype(self.dtype)
    for name in LAYER_NAMES[:-1]:
      x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name=name)(x))
    return nn.Dense(self.out_dim, dtype=self.dtype, name=LAYER_NAMES[-1])(x).astype(jnp.float32)


def decoder(factor: str, dtype=jnp.float32) -> FactorDecoder:
  """The decoder module of factor 'id', 'exp', 'gamma' or 'rot'."""
  spec = FACTORS[factor]
  return FactorDecoder(spec.hidden, spec.out_dim, dtype)


def decode(params, factor: str, z, dtype=jnp.float32):
  """lambda of `factor` from its z, with that factor's decoder params {fc0: {kernel, bias}, ...}."""
  return decoder(factor, dtype).apply({'params': params}, z)
