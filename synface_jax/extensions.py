"""Research extensions named in a config, as `module:callable` from the user's own package.

    config.im.fn         a `types.Mixup` on Factors     (default synface_jax.mixup:mix_identities)
    config.dm.fn         a `types.Mixup` on images      (default synface_jax.mixup:mix_domains)
    config.loss.fn       a `types.Loss`                 (default synface_jax.losses:margin_softmax_loss)
    config.generator.name  a registered backend, or a callable returning a `types.Generator`

Each is imported by name and checked against its interface when the config is validated, before
anything is computed; a bad one is a ValueError naming the field and the value.
"""
import importlib
import inspect

from synface_jax import types

MIXUP_ARGS = ('key', 'a', 'label_a', 'b', 'label_b', 'weight')
GENERATOR_MEMBERS = ('init', 'identity', 'sample', 'render', 'image_size', 'num_identities')


def is_reference(name) -> bool:
  """Whether a name is `module:callable` rather than a registered name."""
  return isinstance(name, str) and ':' in name


def load(field: str, spec):
  """The object that `spec` = 'package.module:name' names."""
  module_name, sep, name = str(spec).partition(':')
  if not (isinstance(spec, str) and sep and module_name and name):
    raise ValueError(f'config field {field}={spec!r}: expected module:callable, '
                     'e.g. my_project.mixups:mix')
  try:
    value = importlib.import_module(module_name)
  except ImportError as e:  # Includes a module that is not there.
    raise ValueError(f'config field {field}={spec!r}: cannot import {module_name!r} ({e})') from None
  for part in name.split('.'):
    if not hasattr(value, part):
      raise ValueError(f'config field {field}={spec!r}: module {module_name!r} has no {name!r}')
    value = getattr(value, part)
  if not callable(value):
    raise ValueError(f'config field {field}={spec!r}: {name!r} is not callable')
  return value


def _check_call(field: str, spec, fn, interface: str, args, kwargs) -> None:
  """Raises ValueError unless fn can be called with these argument names."""
  try:
    signature = inspect.signature(fn)
  except (TypeError, ValueError):
    return  # No signature to read (a builtin): it is checked when called.
  try:
    signature.bind(*args, **kwargs)
  except TypeError as e:
    raise ValueError(f'config field {field}={spec!r}: not a {interface}: {e}') from None


def mixup(field: str, spec) -> types.Mixup:
  """The `types.Mixup` named by config field `field` (im.fn or dm.fn)."""
  fn = load(field, spec)
  _check_call(field, spec, fn, f'types.Mixup, called as fn({", ".join(MIXUP_ARGS)})', MIXUP_ARGS,
              {})
  return fn


def loss(field: str, spec, hyper: dict) -> types.Loss:
  """The `types.Loss` named by config field `field`, callable with the keyword arguments hyper."""
  fn = load(field, spec)
  keywords = ', '.join(f'{k}=...' for k in hyper)
  _check_call(field, spec, fn, f'types.Loss, called as fn(cos, label, {keywords})',
              ('cos', 'label'), hyper)
  return fn


def loss_hyper(loss_config) -> dict:
  """The keyword arguments a loss gets: the fields of config.loss but fn and sample_rate."""
  return {k: v for k, v in loss_config.items() if k not in ('fn', 'sample_rate')}


def check_generator(field: str, spec, generator) -> types.Generator:
  """The generator, if it has every member of `types.Generator`; else a ValueError."""
  missing = [m for m in GENERATOR_MEMBERS if not hasattr(generator, m)]
  missing += [f'{m} (not callable)' for m in GENERATOR_MEMBERS[:4]
              if hasattr(generator, m) and not callable(getattr(generator, m))]
  if missing:
    raise ValueError(f'config field {field}={spec!r}: not a types.Generator: it lacks '
                     f'{", ".join(missing)} (needs {", ".join(GENERATOR_MEMBERS)})')
  return generator


def check(config) -> None:
  """Imports and checks every extension a full config names (config.validate calls this)."""
  mixup('im.fn', config.im.fn)
  mixup('dm.fn', config.dm.fn)
  loss('loss.fn', config.loss.fn, loss_hyper(config.loss))
  if is_reference(config.generator.name):
    build = load('generator.name', config.generator.name)
    if isinstance(build, type):  # A class: its methods can be checked before it is built.
      missing = [m for m in GENERATOR_MEMBERS[:4] if not callable(getattr(build, m, None))]
      if missing:
        raise ValueError(f'config field generator.name={config.generator.name!r}: not a '
                         f'types.Generator: it lacks {", ".join(missing)}')
