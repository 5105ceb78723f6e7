"""Face generators: functions of (params, Factors) that render aligned faces.

A generator satisfies `synface_jax.types.Generator` (init, identity, sample, render, image_size,
num_identities; all methods pure and jittable).
"""
from synface_jax.types import Factors

_REGISTRY = {}


def register(name):
  """Class decorator adding a generator backend under `name`."""
  def wrap(cls):
    _REGISTRY[name] = cls
    return cls
  return wrap


def get_generator(config):
  """Builds the generator named by `config.name`.

  Its keyword arguments are the shared fields of `config` (e.g. image_size, num_identities) plus
  the fields of the block named after the backend (e.g. config.discofacegan.checkpoint); unset
  (None) fields are left to the backend's defaults, other backends' blocks are ignored.
  """
  import importlib
  for module in _BACKENDS:  # Backends register themselves on import.
    importlib.import_module(module)
  name = config['name']
  if name not in _REGISTRY:
    raise ValueError(
        f'generator.name={name!r} is not a known generator; choose one of {sorted(_REGISTRY)}')
  kwargs = {k: v for k, v in config.items() if k != 'name' and k not in _REGISTRY}
  kwargs.update(config.get(name) or {})
  return _REGISTRY[name](**{k: v for k, v in kwargs.items() if v is not None})


_BACKENDS = ('synface_jax.generators.procedural', 'synface_jax.generators.discofacegan')

__all__ = ['Factors', 'get_generator', 'register']
