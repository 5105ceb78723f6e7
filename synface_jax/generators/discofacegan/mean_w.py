"""The average identity w that DiscoFaceGAN's truncation pulls towards, computed or read.

mean_w_id = mean over random identities of mapping([lambda_id, zeros(94), noise]): lambda_id
decoded by the identity VAE from z_id ~ N(0, I), expression/pose/lighting zero, the 32 noise
numbers N(0, 1). The official value (50,000 identities) is a text file of [1, 14, 512] numbers.

    python -m synface_jax.generators.discofacegan.mean_w --checkpoint DIR --out mean_w_id.txt \
        [--samples 50000] [--seed 0]
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax import cli
from synface_jax.generators import factors as F
from synface_jax.generators.discofacegan import network, vae
from synface_jax.generators.discofacegan.arch import Arch

NUM_SAMPLES = 50_000


def identity_only_latents(params, key, batch_size: int):
  """[B, 286] inputs of random identities: [lambda_id, zeros(94), noise]."""
  k_id, k_noise = jax.random.split(key)
  z_id = jax.random.normal(k_id, (batch_size, vae.FACTORS['id'].z_dim))
  lambda_id = vae.decode(params['vae']['id'], 'id', z_id)
  zeros = jnp.zeros((batch_size, F.LAMBDA_DIM - F.IDENTITY_DIM))
  noise = jax.random.normal(k_noise, (batch_size, F.NOISE_DIM))
  return jnp.concatenate([lambda_id, zeros, noise], axis=-1)


def compute_mean_w_id(params, arch: Arch, key, num_samples: int = NUM_SAMPLES,
                      batch_size: int = 1000) -> np.ndarray:
  """mean_w_id [num_layers, dlatent_size] over `num_samples` random identities (needs id VAE)."""
  if 'id' not in params.get('vae', {}):
    raise ValueError("computing mean_w_id needs the identity VAE ('id'), which these params lack")
  batch_size = min(batch_size, num_samples)

  @functools.partial(jax.jit, static_argnums=2)
  def batch_sum(params, key, size):
    w = network.mapping(params, arch, identity_only_latents(params, key, size))
    return jnp.sum(w[:, 0], axis=0)

  total = np.zeros((arch.dlatent_size,), np.float64)
  done, i = 0, 0
  while done < num_samples:
    size = min(batch_size, num_samples - done)
    total += np.asarray(batch_sum(params, jax.random.fold_in(key, i), size), np.float64)
    done, i = done + size, i + 1
  mean = total / num_samples
  return np.broadcast_to(mean, (arch.num_layers, arch.dlatent_size)).astype(np.float32)


def load_text(path, arch: Arch) -> np.ndarray:
  """mean_w_id [num_layers, dlatent_size] from a text file of num_layers * dlatent_size numbers.

  Accepts the official [1, 14, 512] file: numbers separated by spaces, commas or new lines,
  brackets and '#' comment lines ignored.
  """
  with open(path) as f:
    lines = [line for line in f if not line.lstrip().startswith('#')]
  text = ''.join(lines).replace(',', ' ').replace('[', ' ').replace(']', ' ')
  try:
    values = np.array([float(v) for v in text.split()], np.float32)
  except ValueError as e:
    raise ValueError(f'{path}: not a text file of numbers ({e})') from None
  expected = arch.num_layers * arch.dlatent_size
  if values.size != expected:
    raise ValueError(f'{path}: {values.size} numbers, expected {expected} '
                     f'([1, {arch.num_layers}, {arch.dlatent_size}])')
  return values.reshape(arch.num_layers, arch.dlatent_size)


def save_text(path, mean_w_id):
  """Writes mean_w_id [L, D] as L lines of D numbers, under a '# [1, L, D]' comment."""
  mean_w_id = np.asarray(mean_w_id, np.float32)
  np.savetxt(path, mean_w_id, fmt='%.9g', header=f'[1, {mean_w_id.shape[0]}, '
             f'{mean_w_id.shape[1]}]')


def main(argv=None):
  from synface_jax.generators.discofacegan import checkpoint
  parser = cli.parser('synface_jax.generators.discofacegan.mean_w', __doc__.splitlines()[0])
  parser.add_argument('--checkpoint', required=True, help='converted generator directory')
  parser.add_argument('--out', required=True, help='text file to write')
  parser.add_argument('--samples', type=int, default=NUM_SAMPLES)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  arch, _ = checkpoint.read_info(args.checkpoint)
  params = checkpoint.load(args.checkpoint)
  mean = compute_mean_w_id(params, arch, jax.random.key(args.seed), args.samples)
  save_text(args.out, mean)
  print(f'wrote mean_w_id over {args.samples} identities to {args.out}')


if __name__ == '__main__':
  main()
