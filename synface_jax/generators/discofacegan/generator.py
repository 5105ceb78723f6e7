"""DiscoFaceGAN as a face generator of the project (`generator.name = 'discofacegan'`).

    generator.name = 'discofacegan'
    generator.checkpoint = DIR        # written by synface_jax.generators.discofacegan.convert

identity(params, i): lambda_id (160) = identity-VAE decoder of z_id ~ N(0, I) drawn from
fold_in(key(seed), i), so the pool is fixed by `seed`. sample(key, identity): expression,
lighting and pose decoded by their VAEs from fresh z, 32 standard-normal noise numbers.
render(params, factors): DiscoFaceGAN's truncated generation (w_id from the factors' own
lambda_id, so an identity-mixed lambda_id also moves w_id, as SynFace does), clipped to [-1, 1]
like the official images, then the fixed crop of align.py onto the 5-point template.

sample() has no params argument, so the small expression/lighting/pose decoders (about 0.2 M
numbers) are read when the generator is built and enter the compiled program as constants; all
other weights are in `params`.
"""
import logging

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.generators import register
from synface_jax.generators import factors as F
from synface_jax.generators.discofacegan import align, network, truncation, vae
from synface_jax.generators.discofacegan import checkpoint as checkpoint_lib
from synface_jax.generators.discofacegan.arch import get_arch

NUISANCE_FACTORS = ('exp', 'gamma', 'rot')
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@register('discofacegan')
class DiscoFaceGAN:
  """DiscoFaceGAN generator (see the module docstring for the interface).

  Args:
    checkpoint: directory written by `convert`. Required unless `params` or `preset` is given.
    image_size: (H, W) of the aligned faces.
    num_identities: size of the identity pool the config uses; any non-negative id is valid here.
    seed: fixes the identity pool (and the random weights when there is no checkpoint).
    psi, cutoff: truncation strength and the style layers it applies to ([0, cutoff)).
    template: 'arcface' (112x112 geometry) or 'synface' (112x96).
    dtype: compute dtype of the synthesis network, 'float32' or 'bfloat16' (params stay float32;
      the mapping and the VAE decoders run in float32).
    preset: asks for a network with RANDOM weights drawn from `seed` (mean_w_id zero), for
      benchmarks and tests only: 'small' (the reduced 128 px network of the golden data) or 'full'
      (the real 256 px one).
    params: a parameter tree in the checkpoint layout, used instead of a checkpoint (with `arch`).
    arch: the architecture of `params` (a preset name, a dict of Arch fields or an Arch).
    source_landmarks: [5, 2] (x, y) points of the generator frame to crop from (default: the
      mean face at zero pose, see align.py).
  """

  def __init__(self, checkpoint=None, image_size=(112, 112), num_identities=None, seed=0,
               psi=truncation.PSI, cutoff=truncation.CUTOFF, template='arcface',
               dtype='float32', preset=None, params=None, arch=None, source_landmarks=None):
    if dtype not in _DTYPES:
      raise ValueError(f'dtype={dtype!r}; choose one of {sorted(_DTYPES)}')
    self.image_size = tuple(int(v) for v in image_size)
    self.num_identities = num_identities
    self.seed = int(seed)
    self.psi = float(psi)
    self.cutoff = int(cutoff)
    self.dtype = _DTYPES[dtype]
    self.checkpoint = checkpoint
    self._params = params
    if checkpoint is not None:
      self.arch, _ = checkpoint_lib.read_info(checkpoint)
      decoders = checkpoint_lib.load(checkpoint, 'vae')
    elif params is not None:
      self.arch = get_arch(arch if arch is not None else preset)
      decoders = params['vae']
    elif preset is None and arch is None:
      raise ValueError('generator.checkpoint: DiscoFaceGAN needs a converted checkpoint directory '
                       '(python -m synface_jax.generators.discofacegan.convert); '
                       "generator.preset='small' gives random weights for benchmarks only")
    else:
      self.arch = get_arch(arch if arch is not None else preset)
      logging.warning('discofacegan: no checkpoint given, using RANDOM weights of the %r network '
                      '(for benchmarks and tests only)', preset if arch is None else arch)
      self._params = network.random_params(self.seed, self.arch)
      decoders = self._params['vae']
    if self.arch.latent_size != F.LAMBDA_DIM + F.NOISE_DIM:
      raise ValueError(f'the network takes {self.arch.latent_size} inputs, not the '
                       f'{F.LAMBDA_DIM + F.NOISE_DIM} of DiscoFaceGAN')
    missing = [f for f in NUISANCE_FACTORS if f not in decoders]
    if missing:
      raise ValueError(f'the generator has no {missing[0]!r} VAE decoder')
    self._decoders = {f: jax.tree.map(np.asarray, decoders[f]) for f in NUISANCE_FACTORS}
    self._pool_key = jax.random.key(self.seed)
    self.template = align.template(template, self.image_size).astype(np.float32)
    self._crop = align.Crop(self.arch.resolution, self.image_size, self.template,
                            source_landmarks)

  def init(self, key):
    """The parameter tree: the checkpoint's, the given one, or the random one of `seed`."""
    del key  # Weights come from the checkpoint, the given tree, or are drawn from `seed`.
    if self.checkpoint is not None:
      params = jax.tree.map(jnp.asarray, checkpoint_lib.load(self.checkpoint))
    else:
      params = jax.tree.map(jnp.asarray, self._params)
    if 'id' not in params['vae']:
      raise ValueError('the generator has no identity VAE decoder: it was converted with '
                       '--without-id-vae, so it cannot draw identities')
    return params

  def identity(self, params, identity_id):
    """lambda_id [160] of pool identity `identity_id`."""
    z = jax.random.normal(jax.random.fold_in(self._pool_key, identity_id),
                          (vae.FACTORS['id'].z_dim,))
    return vae.decode(params['vae']['id'], 'id', z)

  def sample(self, key, identity):
    """Factors of one face of `identity` [160] with fresh expression, lighting, pose and noise."""
    k_exp, k_gamma, k_rot, k_noise = jax.random.split(key, 4)

    def draw(factor, k):
      z = jax.random.normal(k, (vae.FACTORS[factor].z_dim,))
      return vae.decode(self._decoders[factor], factor, z)

    return F.Factors(identity=jnp.asarray(identity, jnp.float32),
                     expression=draw('exp', k_exp), pose=draw('rot', k_rot),
                     lighting=draw('gamma', k_gamma),
                     noise=jax.random.normal(k_noise, (F.NOISE_DIM,)))

  def render(self, params, factors):
    """(images [B, H, W, 3] float32 in [-1, 1], landmarks [B, 5, 2]) of batched Factors."""
    latents = factors.to_vector().astype(jnp.float32)
    raw = network.generate(params, self.arch, latents, self.psi, self.cutoff, self.dtype)
    images = jnp.clip(self._crop(jnp.clip(raw, -1.0, 1.0)), -1.0, 1.0)
    landmarks = jnp.broadcast_to(jnp.asarray(self.template), (latents.shape[0], 5, 2))
    return images, landmarks


