"""Synthetic verification pairs ("Syn-LFW"): pairs of rendered faces of identities never trained on.

The layout is LFW's: 2N images interleaved so that images 2k and 2k + 1 form pair k, and a bool per
pair. Pairs come in 10 contiguous folds of N / 10, each half same-identity pairs then half
different-identity pairs, drawn from its own block of held-out identities, so the 10-fold
protocols of `synface_jax.eval.protocols` apply unchanged.
"""
import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.generators import sampling

NUM_FOLDS = 10


def pair_identities(seed: int, num_pairs: int, first_identity: int, num_identities: int):
  """Identity ids [2N] (interleaved) and issame [N] of the pairs, folds as in the module docstring.

  Identities are first_identity .. first_identity + num_identities - 1, split into 10 blocks.
  """
  if num_pairs % (2 * NUM_FOLDS):
    raise ValueError(f'num_pairs={num_pairs} must be a multiple of {2 * NUM_FOLDS} '
                     '(10 folds, each half same and half different pairs)')
  per_block = num_identities // NUM_FOLDS
  if per_block < 2:
    raise ValueError(f'num_identities={num_identities} leaves fewer than 2 identities per fold')
  rng = np.random.default_rng(seed)
  half = num_pairs // (2 * NUM_FOLDS)
  ids, issame = [], []
  for fold in range(NUM_FOLDS):
    lo = first_identity + fold * per_block
    same = rng.integers(0, per_block, half)
    a = rng.integers(0, per_block, half)
    b = (a + rng.integers(1, per_block, half)) % per_block
    ids.append(np.stack([same, same], -1).reshape(-1) + lo)
    ids.append(np.stack([a, b], -1).reshape(-1) + lo)
    issame += [True] * half + [False] * half
  return np.concatenate(ids).astype(np.int64), np.array(issame)


def render_identities(generator, params, key, identity_ids, batch_size: int = 64,
                      return_factors: bool = False):
  """uint8 images [len(ids), H, W, 3] of the given pool identities, one nuisance draw each.

  Image i uses the nuisance key fold_in(key, i), so results do not depend on batch_size.
  return_factors: also return the Factors each image was rendered from (numpy, leading axis
  len(ids)), for analyses by pose, lighting and expression.
  """
  ids = np.asarray(identity_ids, np.int32)
  draws = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(len(ids)))
  images, _, factors = sampling.faces_in_batches(generator, params, key, ids, draws,
                                                 batch_size=batch_size)
  return (images, factors) if return_factors else images


def synthetic_pairs(generator, params, key, num_pairs: int = 6000, first_identity=None,
                    num_identities=None, batch_size: int = 64, return_factors: bool = False):
  """Renders verification pairs of held-out identities.

  Args:
    generator: a generator (see `synface_jax.generators`).
    params: its parameters.
    key: PRNG key; fixes the identities of the pairs and the nuisance of every image.
    num_pairs: N, a multiple of 20.
    first_identity: first held-out identity id; defaults to generator.num_identities, so ids are
      disjoint from the training pool 0 .. num_identities - 1.
    num_identities: how many held-out identities to draw from (default max(20, N // 6)).
    batch_size: images rendered per call.
    return_factors: also return the Factors of the 2N images (see render_identities).

  Returns:
    (images uint8 [2N, H, W, 3], issame bool [N]); images 2k and 2k + 1 are pair k. With
    return_factors, (images, issame, factors).
  """
  if first_identity is None:
    first_identity = int(generator.num_identities)
  if num_identities is None:
    num_identities = max(2 * NUM_FOLDS, num_pairs // 6)
  seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))
  ids, issame = pair_identities(seed, num_pairs, first_identity, num_identities)
  rendered = render_identities(generator, params, jax.random.fold_in(key, 1), ids, batch_size,
                               return_factors)
  if return_factors:
    return rendered[0], issame, rendered[1]
  return rendered, issame
