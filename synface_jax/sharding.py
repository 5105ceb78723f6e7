"""Device mesh, partition rules and host-local to global arrays.

The mesh has two axes: 'data' (the batch is split over it) and 'model' (the margin head's class
dimension is split over it). Everything else is replicated. The same code runs on one CPU, eight
simulated CPU devices, a GPU or a TPU pod slice.
"""
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = 'data'
MODEL = 'model'



def head_axes(head_on_data: bool = False):
  """Mesh axes the head's classes are split over: 'model', or 'model' and 'data' for huge heads."""
  return (MODEL, DATA) if head_on_data else MODEL


def head_shards(mesh: Mesh, head_on_data: bool = False) -> int:
  return mesh.shape[MODEL] * (mesh.shape[DATA] if head_on_data else 1)


def partition_rules(head_on_data: bool = False):
  """(regex over the '/'-joined parameter path, PartitionSpec); first match wins, else replicated."""
  return ((r'(^|/)head$', P(head_axes(head_on_data), None)),)  # [classes, features] by classes.


def logits_spec(head_on_data: bool = False) -> P:
  """[batch, classes] logits: batch over 'data' and classes over 'model'; when the head also uses
  'data', every device scores the whole batch against its slice of classes."""
  return P(None, head_axes(True)) if head_on_data else P(DATA, MODEL)


PARTITION_RULES = partition_rules()


def make_mesh(data: int = -1, model: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ('data', 'model') mesh over `devices` (default: all). -1 on one axis takes what is left."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if data == -1 and model == -1:
    raise ValueError('mesh: at most one of mesh.data and mesh.model may be -1')
  if data == -1:
    data = n // model if model > 0 and n % model == 0 else 0
  if model == -1:
    model = n // data if data > 0 and n % data == 0 else 0
  if data <= 0 or model <= 0 or data * model != n:
    raise ValueError(
        f'mesh: mesh.data={data} x mesh.model={model} does not match the {n} available devices')
  return Mesh(np.asarray(devices).reshape(data, model), (DATA, MODEL))


def path_name(path) -> str:
  """'/'-joined names of a pytree key path."""
  parts = []
  for key in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return '/'.join(parts)


def partition_spec(name: str, shape: Sequence[int], rules=PARTITION_RULES) -> P:
  for pattern, spec in rules:
    if re.search(pattern, name) and len(spec) == len(shape):
      return spec
  return P()


def tree_shardings(mesh: Mesh, tree: Any, rules=PARTITION_RULES) -> Any:
  """NamedShardings for every leaf of `tree` (arrays or ShapeDtypeStructs) by its path."""
  def one(path, leaf):
    shape = getattr(leaf, 'shape', ())
    return NamedSharding(mesh, partition_spec(path_name(path), shape, rules))
  return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data', the rest replicated."""
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def host_local_to_global(batch: Any, mesh: Mesh) -> Any:
  """Assemble each host's slice of the batch into global arrays split over 'data'."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
