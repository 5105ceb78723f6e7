"""The class-sharded head and Partial FC sampling."""
import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.types import SoftLabel
from synface_jax.models import head as head_lib


def test_padded_rows_and_mask():
  assert head_lib.padded_rows(13, 4) == 16 and head_lib.padded_rows(16, 4) == 16
  np.testing.assert_array_equal(head_lib.class_mask(5, 3), [True, True, True, False, False])


def test_partial_fc_keeps_positives_and_remaps_labels():
  rows, shards, dim, num_classes = 40, 4, 6, 37  # 3 padding rows in the last shard.
  centres = jnp.asarray(np.random.default_rng(0).normal(size=(rows, dim)), jnp.float32)
  ids = jnp.array([[3, 35], [12, -1], [36, 3], [20, 21]], jnp.int32)
  label = SoftLabel(ids, jnp.array([[0.7, 0.3], [1, 0], [0.5, 0.5], [0.9, 0.1]], jnp.float32))
  fn = jax.jit(lambda key: head_lib.partial_fc(key, centres, label, num_classes, shards, 0.5))
  for seed in range(5):
    sub, new_label, valid = fn(jax.random.key(seed))
    k = head_lib.sampled_per_shard(rows, shards, 0.5, ids.size)
    assert k == 8 and sub.shape == (shards * k, dim) and valid.shape == (shards * k,)
    new_ids = np.asarray(new_label.ids)
    # Every positive is kept and its new id points at the same centre.
    for old, new in zip(np.asarray(ids).ravel(), new_ids.ravel()):
      if old < 0:
        assert new == -1
      else:
        np.testing.assert_array_equal(sub[new], centres[old])
    np.testing.assert_array_equal(new_label.weights, label.weights)
    # Each shard's sampled rows come from that shard only; padding rows are masked out.
    sub_rows = np.asarray(sub).reshape(shards, k, dim)
    for s in range(shards):
      local = np.asarray(centres[s * 10:(s + 1) * 10])
      assert all(any(np.array_equal(r, l) for l in local) for r in sub_rows[s])
    # The last shard has 7 real rows (30..36) and 3 padding rows: it must take one padding row.
    assert int(valid.sum()) == 8 + 8 + 8 + 7
  # Different keys sample different negatives.
  a, _, _ = fn(jax.random.key(0))
  b, _, _ = fn(jax.random.key(1))
  assert not np.array_equal(a, b)
