"""Face generators: functions of (params, Factors) that render aligned faces.

A generator satisfies `synface_jax.types.Generator` (init, identity, sample, render, image_size,
num_identities; all methods pure and jittable). `synface_jax.generators.sampling` is the one path
from pool identities and nuisance draws to rendered, labelled faces: the train step, data export,
`generate`, synthetic pairs and the benchmark all go through it. `config.generator.name` is a
registered backend or `module:callable` of the user's own (`synface_jax.extensions`).
"""
from synface_jax.types import Factors

_REGISTRY = {}


def register(name):
  """Class decorator adding a generator backend under `name`."""
  def wrap(cls):
    _REGISTRY[name] = cls
    return cls
  return wrap


def names() -> list:
  """The names of the generator backends (the built-in ones and any registered since)."""
  import importlib
  for module in _BACKENDS:  # Backends register themselves on import.
    importlib.import_module(module)
  return sorted(_REGISTRY)


def get_generator(config):
  """Builds the generator named by `config.name`: a registered backend, or `module:callable`
  (a class or function of the user's own package returning a `types.Generator`).

  Its keyword arguments are the shared fields of `config` (e.g. image_size, num_identities) plus
  the fields of the block named after the backend (e.g. config.discofacegan.checkpoint); unset
  (None) fields are left to the backend's defaults, other backends' blocks are ignored. Raises
  ValueError naming generator.name when it names nothing, or something that is not a Generator.
  """
  import importlib
  from synface_jax import extensions
  for module in _BACKENDS:  # Backends register themselves on import.
    importlib.import_module(module)
  name = config['name']
  if extensions.is_reference(name):
    build = extensions.load('generator.name', name)
  elif name in _REGISTRY:
    build = _REGISTRY[name]
  else:
    raise ValueError(f'generator.name={name!r} is not a known generator; choose one of '
                     f'{sorted(_REGISTRY)}, or name your own as module:callable')
  kwargs = {k: v for k, v in config.items() if k != 'name' and k not in _REGISTRY}
  kwargs.update(config.get(name) or {})
  kwargs = {k: v for k, v in kwargs.items() if v is not None}
  source = kwargs.get('checkpoint') or kwargs.get('bfm_path')  # The files a backend reads.
  try:
    if source:
      from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
      with file_errors.reading(source):  # A damaged file: one error naming it.
        generator = build(**kwargs)
    else:
      generator = build(**kwargs)
  except TypeError as e:  # The fields do not fit what it takes.
    raise ValueError(f'config field generator.name={name!r}: cannot be built from the fields '
                     f'{sorted(kwargs)}: {e}') from None
  return extensions.check_generator('generator.name', name, generator)


_BACKENDS = ('synface_jax.generators.procedural', 'synface_jax.generators.discofacegan')

__all__ = ['Factors', 'get_generator', 'names', 'register']
