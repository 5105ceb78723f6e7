"""The margin head: class centres [num_rows, D], split over devices along the classes.

The head is a plain array in the params ('head'); its rows are the classes, padded up to a
multiple of the number of head shards (padding rows are never targets and are masked out).
`partial_fc` keeps, on every shard, all of the shard's positive classes plus a random subset of
its negatives (insightface's Partial FC), so no row ever leaves its device.
"""
import math

import jax
import jax.numpy as jnp

from synface_jax.types import SoftLabel


def init_head(key, num_rows: int, num_features: int) -> jax.Array:
  """Class centres drawn from N(0, 0.01^2), as insightface's partial FC initialises them."""
  return 0.01 * jax.random.normal(key, (num_rows, num_features), jnp.float32)


def padded_rows(num_classes: int, shards: int) -> int:
  """num_classes rounded up to a multiple of shards."""
  return -(-num_classes // shards) * shards


def class_mask(num_rows: int, num_classes: int) -> jax.Array:
  """True for real classes, False for padding rows."""
  return jnp.arange(num_rows) < num_classes


def sampled_per_shard(num_rows: int, shards: int, sample_rate: float, num_targets: int) -> int:
  """Rows each shard keeps: its share of sample_rate, and room for every positive of a batch."""
  local = num_rows // shards
  return min(local, max(math.ceil(sample_rate * local), num_targets))


def partial_fc(key, head: jax.Array, label: SoftLabel, num_classes: int, shards: int,
               sample_rate: float):
  """Samples head rows per shard: all positives of the batch plus random negatives.

  Args:
    key: PRNG key of this step.
    head: [num_rows, D], num_rows a multiple of shards, split over them along rows.
    label: targets in head-row ids.
    num_classes: real classes (rows beyond are padding and never sampled before real ones).
    shards: number of head shards.
    sample_rate: share of each shard's rows kept.

  Returns:
    (sub_head [shards * k, D], label in sub_head row ids, mask [shards * k] of real classes).
  """
  num_rows, dim = head.shape
  local = num_rows // shards
  k = sampled_per_shard(num_rows, shards, sample_rate, label.ids.size)
  ids = label.ids.reshape(-1)
  positive = jnp.zeros((num_rows,), jnp.float32).at[jnp.where(ids >= 0, ids, num_rows)].set(
      1.0, mode='drop')
  # Positives first, then random negatives, padding rows last.
  scores = jax.random.uniform(key, (num_rows,)) + 2.0 * positive
  scores = jnp.where(class_mask(num_rows, num_classes), scores, -1.0).reshape(shards, local)
  _, local_index = jax.lax.top_k(scores, k)                      # [shards, k], per shard
  local_index = jnp.sort(local_index, axis=-1)
  sub_head = jax.vmap(lambda rows, i: rows[i])(head.reshape(shards, local, dim), local_index)
  index = (local_index + local * jnp.arange(shards)[:, None]).reshape(-1)
  position = jnp.full((num_rows,), -1, jnp.int32).at[index].set(
      jnp.arange(index.size, dtype=jnp.int32))
  new_ids = jnp.where(label.ids >= 0, position[jnp.clip(label.ids, 0)], -1)
  return sub_head.reshape(shards * k, dim), SoftLabel(new_ids, label.weights), index < num_classes
