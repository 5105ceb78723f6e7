"""A tiny jittable generator for testing the train step without a renderer.

Each identity is a fixed random colour pattern; pose shifts it, lighting scales its brightness.
"""
import jax
import jax.numpy as jnp

from synface_jax.generators import Factors
from synface_jax.generators import factors as F


class ToyGenerator:

  def __init__(self, image_size=(32, 32), seed=0, num_identities=None):
    self.image_size = tuple(image_size)
    self.seed = seed
    self.num_identities = num_identities

  def init(self, key):
    h, w = self.image_size
    return {'basis': jax.random.normal(key, (F.IDENTITY_DIM, h * w * 3 // 16)) / 4.0}

  def identity(self, params, identity_id):
    del params
    return jax.random.normal(jax.random.fold_in(jax.random.key(self.seed), identity_id),
                             (F.IDENTITY_DIM,))

  def sample(self, key, identity):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return Factors(identity=identity,
                   expression=jax.random.normal(k1, (F.EXPRESSION_DIM,)),
                   pose=0.3 * jax.random.normal(k2, (F.POSE_DIM,)),
                   lighting=0.1 * jax.random.normal(k3, (F.LIGHTING_DIM,)),
                   noise=jax.random.normal(k4, (F.NOISE_DIM,)))

  def render(self, params, factors):
    h, w = self.image_size
    b = factors.identity.shape[0]
    coarse = jnp.tanh(factors.identity @ params['basis']).reshape(b, h // 4, w // 4, 3)
    images = jax.image.resize(coarse, (b, h, w, 3), 'linear')
    shift = jnp.round(factors.pose[:, 1] * 2).astype(jnp.int32)
    images = jax.vmap(lambda im, s: jnp.roll(im, s, axis=1))(images, shift)
    images = jnp.clip(images * (1.0 + factors.lighting[:, :1, None, None]), -1.0, 1.0)
    landmarks = jnp.zeros((b, 5, 2), jnp.float32)
    return images, landmarks
