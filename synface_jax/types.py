"""The few types every part of the package speaks: labels, face factors and the three interfaces a
research extension implements (a face generator, a mixup, a loss).

Shapes: B is the batch, K the slots of a soft label, C the classes, P the partner identities of
an identity mixup (config.im.partners), H x W the image size.

    SoftLabel   ids int32 [B, K], weights float32 [B, K]
    Factors     identity [..., 160], expression [..., 64], pose [..., 3], lighting [..., 27],
                noise [..., 32] (DiscoFaceGAN's lambda layout)
    Generator   init / identity / sample / render, image_size, num_identities
    Mixup       (key, a, label_a, b, label_b, weight) -> (mixed, SoftLabel)
    Loss        (cos [B, C], SoftLabel, **config.loss fields) -> (loss [B], logits [B, C])

A config names its own mixups, loss and generator as `module:callable` (config.im.fn, config.dm.fn,
config.loss.fn, config.generator.name); `synface_jax.extensions` imports them and checks them
against these interfaces before anything is computed.
"""
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

IDENTITY_DIM = 160    # 80 shape + 80 texture coefficients.
EXPRESSION_DIM = 64
POSE_DIM = 3          # pitch, yaw, roll in radians.
LIGHTING_DIM = 27     # 3 colours x 9 spherical-harmonics bands.
NOISE_DIM = 32        # Standard normals that no decoder sees.
LAMBDA_DIM = IDENTITY_DIM + EXPRESSION_DIM + POSE_DIM + LIGHTING_DIM  # 254


class SoftLabel(NamedTuple):
  """A label that is a weighted set of classes.

  ids: int32 [B, K] class ids; -1 marks an empty slot that contributes nothing.
  weights: float32 [B, K], each row sums to 1 over its valid slots.
  K = 1 for a plain label, 2 after identity mixup, 3 after identity + domain mixup.
  """
  ids: jax.Array
  weights: jax.Array

  @classmethod
  def one_hot(cls, ids) -> 'SoftLabel':
    ids = jnp.asarray(ids, jnp.int32)[:, None]
    return cls(ids=ids, weights=jnp.ones(ids.shape, jnp.float32))

  def concat(self, other: 'SoftLabel') -> 'SoftLabel':
    """Joins the slots of two labels of the same batch: K = K_self + K_other."""
    return SoftLabel(
        ids=jnp.concatenate([self.ids, other.ids], axis=-1),
        weights=jnp.concatenate([self.weights, other.weights], axis=-1))

  def dense(self, num_classes: int, dtype=jnp.float32) -> jax.Array:
    """Target weights per class, [..., num_classes].

    Entry j of a row is the sum of the weights of its slots whose id is j; slots with id -1 add
    nothing. Built from elementwise comparisons with the class index, one slot at a time, so it
    needs no gather along the class axis and stays cheap when that axis is sharded.
    """
    classes = jnp.arange(num_classes, dtype=jnp.int32)
    ids = jnp.asarray(self.ids, jnp.int32)
    weights = jnp.asarray(self.weights, dtype)
    dense = jnp.zeros(ids.shape[:-1] + (num_classes,), dtype)
    for k in range(ids.shape[-1]):
      hit = (ids[..., k, None] == classes) & (ids[..., k, None] >= 0)
      dense = dense + jnp.where(hit, weights[..., k, None], 0)
    return dense


class Factors(NamedTuple):
  """One face (unbatched) or a batch of faces (leading axes) in factor form.

  Concatenated in this order they are DiscoFaceGAN's 286-number generator input: note that pose
  comes before lighting there, while its z vector orders lighting before pose.
  """
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


@runtime_checkable
class Generator(Protocol):
  """A face generator: pure, jittable functions of its params (see synface_jax.generators).

  image_size: (H, W) of the aligned faces it renders.
  num_identities: the size of the training identity pool (ids 0 .. N - 1; held-out identities
    for synthetic verification pairs start at N), or None when the pool is unbounded.
  """
  image_size: tuple
  num_identities: Any

  def init(self, key: jax.Array) -> Any:
    """The generator's parameters (a pytree; may be an empty dict)."""

  def identity(self, params: Any, identity_id: jax.Array) -> jax.Array:
    """The identity coefficients [160] of one pool identity (deterministic in the id)."""

  def sample(self, key: jax.Array, identity: jax.Array) -> Factors:
    """One face (unbatched Factors) of the identity coefficients [160] with freshly drawn
    expression, pose, lighting and noise."""

  def render(self, params: Any, factors: Factors) -> tuple:
    """(images float32 [B, H, W, 3] in [-1, 1], landmarks [B, 5, 2] pixel x, y) of batched
    Factors, aligned to the 5-point template."""


class Mixup(Protocol):
  """A mixup transform: mixes side a with side b and says so in the label. Pure and jittable.

  Identity mixup (config.im.fn) is called on the synthetic faces before rendering:
    a: Factors [B] (the anchor faces), label_a: SoftLabel [B, 1] of their pool identities;
    b: Factors [B, P] (P = config.im.partners partner faces each, other identities, each with a
       nuisance draw of its own), label_b: SoftLabel ids [B, P], weights 1 / P;
    weight: float32 [B] drawn from config.im.phi (phi, the share of a).
  Domain mixup (config.dm.fn) is called on images in [-1, 1]:
    a: synthetic images [B, H, W, 3], label_a their SoftLabel; b: real images [B, H, W, 3],
    label_b their SoftLabel (class ids already past the synthetic classes);
    weight: float32 [B], or a scalar for the whole batch, drawn from config.dm.psi (psi).
  key: a PRNG key of the mixup's own, for transforms that draw more than the weight.
  Returns (mixed, label): mixed shaped like a; label SoftLabel [B, K] with rows summing to 1.
  """

  def __call__(self, key: jax.Array, a: Any, label_a: SoftLabel, b: Any, label_b: SoftLabel,
               weight: jax.Array) -> tuple:
    ...


class Loss(Protocol):
  """A soft-target classification loss on cosine logits. Pure and jittable.

  cos: float [B, C] cosines of the embeddings to the class centres (the class axis may be sharded:
    use elementwise ops and sums over it); label: SoftLabel [B, K]; hyper: the fields of
    config.loss other than fn and sample_rate (scale, m1, m2, m3, fallback and any a config adds).
  Returns (loss float [B], logits float [B, C]); the argmax of the logits is the prediction.
  """

  def __call__(self, cos: jax.Array, label: SoftLabel, **hyper) -> tuple:
    ...
