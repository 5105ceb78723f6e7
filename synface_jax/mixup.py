"""Identity mixup, domain mixup and their soft labels."""
from typing import NamedTuple

import jax
import jax.numpy as jnp


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
