"""Face generators: functions of (params, Factors) that render aligned faces.

A generator is any object with this interface (all methods pure and jittable):

    init(key) -> params
        Parameters of the generator (may be an empty dict).
    identity(params, identity_id) -> [160]
        The identity coefficients of one identity of the fixed identity pool (deterministic in the id).
    sample(key, identity) -> Factors
        One face of the given identity coefficients with freshly drawn expression, pose, lighting, noise.
    render(params, factors) -> (images [B, H, W, 3] float32 in [-1, 1], landmarks [B, 5, 2])
        A batch of faces aligned to the 5-point template (x, y pixel landmarks).
    image_size -> (H, W)

The train step vmaps `identity` and `sample` over the batch, mixes identities in coefficient space
(`synface_jax.mixup.identity_mixup`) and calls `render` once.
"""
from synface_jax.generators.factors import Factors

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
  kwargs = {k: v for k, v in kwargs.items() if v is not None}
  source = kwargs.get('checkpoint') or kwargs.get('bfm_path')  # The files a backend reads.
  if not source:
    return _REGISTRY[name](**kwargs)
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  with file_errors.reading(source):  # A damaged file: one error naming it.
    return _REGISTRY[name](**kwargs)


_BACKENDS = ('synface_jax.generators.procedural', 'synface_jax.generators.discofacegan')

__all__ = ['Factors', 'get_generator', 'names', 'register']
