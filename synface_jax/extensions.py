"""Research extensions named in a config, as `module:callable` from the user's own package.

    config.im.fn         a `types.Mixup` on Factors     (default synface_jax.mixup:mix_identities)
    config.dm.fn         a `types.Mixup` on images      (default synface_jax.mixup:mix_domains)
    config.loss.fn       a `types.Loss`                 (default synface_jax.losses:margin_softmax_loss)
    config.generator.name  a registered backend, or a callable returning a `types.Generator`

Each is imported by name and checked against its interface when the config is validated, before
anything is computed: its signature, then its output shapes and dtypes on abstract inputs of the
config's shapes (`jax.eval_shape`: traced, never compiled or run). A bad one is a ValueError naming
the field and the value.
"""
import importlib
import inspect

import jax
import jax.numpy as jnp

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


_BATCH = 2      # The abstract batch the output shapes are checked on.
_CLASSES = 10   # And the abstract head.


def _spec(shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype))


def _label_spec(slots: int):
  return types.SoftLabel(_spec((_BATCH, slots), jnp.int32), _spec((_BATCH, slots)))


def _describe(tree) -> str:
  return str(jax.tree.map(lambda a: f'{a.dtype}{list(a.shape)}', tree))


def _outputs(field: str, spec, fn, args, kwargs=None):
  """fn's output shapes on abstract args; a failure while tracing is a ValueError naming field."""
  try:
    return jax.eval_shape(lambda *a: fn(*a, **(kwargs or {})), *args)
  except Exception as e:  # pylint: disable=broad-except  (the user's code, traced)
    message = str(e).strip().splitlines()[0] if str(e).strip() else ''
    raise ValueError(f'config field {field}={spec!r}: fails on inputs of the configured shapes '
                     f'(batch {_BATCH}): {type(e).__name__}: {message}') from None


def _check_label(field: str, spec, label, batch_shape) -> None:
  ids, weights = (getattr(label, 'ids', None), getattr(label, 'weights', None))
  ok = (ids is not None and weights is not None and len(ids.shape) == 2
        and ids.shape == weights.shape and ids.shape[0] == batch_shape
        and jnp.issubdtype(ids.dtype, jnp.integer) and jnp.issubdtype(weights.dtype, jnp.floating))
  if not ok:
    raise ValueError(f'config field {field}={spec!r}: the label it returns is not a SoftLabel of '
                     f'ids int [B, K] and weights float [B, K] (B = {batch_shape}); got '
                     f'{_describe(label) if ids is not None else type(label).__name__}')


def _check_mixed(field: str, spec, fn, a, label_a, b, label_b, weight) -> None:
  """A mixup returns (mixed shaped like a, SoftLabel [B, K])."""
  out = _outputs(field, spec, fn, (jax.random.key(0), a, label_a, b, label_b, weight))
  if not (isinstance(out, tuple) and len(out) == 2):
    raise ValueError(f'config field {field}={spec!r}: must return (mixed, SoftLabel); got '
                     f'{type(out).__name__}')
  mixed, label = out
  same = (jax.tree.structure(mixed) == jax.tree.structure(a)
          and all(m.shape == x.shape and m.dtype == x.dtype
                  for m, x in zip(jax.tree.leaves(mixed), jax.tree.leaves(a))))
  if not same:
    raise ValueError(f'config field {field}={spec!r}: the mixed output must be shaped like its '
                     f'first side {_describe(a)}; got {_describe(mixed)}')
  _check_label(field, spec, label, _BATCH)


def check_outputs(config, im_fn, dm_fn, loss_fn) -> None:
  """Calls the config's im.fn, dm.fn and loss.fn on abstract inputs of its shapes (nothing runs)."""
  partners = int(config.im.partners)
  dims = (types.IDENTITY_DIM, types.EXPRESSION_DIM, types.POSE_DIM, types.LIGHTING_DIM,
          types.NOISE_DIM)
  anchors = types.Factors(*[_spec((_BATCH, d)) for d in dims])
  others = types.Factors(*[_spec((_BATCH, partners, d)) for d in dims])
  _check_mixed('im.fn', config.im.fn, im_fn, anchors,
               _label_spec(1), others, _label_spec(partners), _spec((_BATCH,)))
  h, w = (int(v) for v in config.model.input_size)
  images = _spec((_BATCH, h, w, 3))
  psi = _spec((_BATCH,) if config.dm.get('per_example', True) else ())
  _check_mixed('dm.fn', config.dm.fn, dm_fn, images,
               _label_spec(2), images, _label_spec(1), psi)
  hyper = loss_hyper(config.loss)
  out = _outputs('loss.fn', config.loss.fn, loss_fn,
                 (_spec((_BATCH, _CLASSES)), _label_spec(3)), hyper)
  ok = (isinstance(out, tuple) and len(out) == 2
        and all(hasattr(o, 'shape') for o in out)
        and out[0].shape == (_BATCH,) and out[1].shape == (_BATCH, _CLASSES)
        and all(jnp.issubdtype(o.dtype, jnp.floating) for o in out))
  if not ok:
    got = _describe(out) if isinstance(out, tuple) else type(out).__name__
    raise ValueError(f'config field loss.fn={config.loss.fn!r}: must return (loss float [B], '
                     f'logits float [B, C]) for cos [B, C] = [{_BATCH}, {_CLASSES}]; got {got}')


def check(config) -> None:
  """Imports and checks every extension a full config names (config.validate calls this)."""
  check_outputs(config, mixup('im.fn', config.im.fn), mixup('dm.fn', config.dm.fn),
                loss('loss.fn', config.loss.fn, loss_hyper(config.loss)))
  if is_reference(config.generator.name):
    build = load('generator.name', config.generator.name)
    if isinstance(build, type):  # A class: its methods can be checked before it is built.
      missing = [m for m in GENERATOR_MEMBERS[:4] if not callable(getattr(build, m, None))]
      if missing:
        raise ValueError(f'config field generator.name={config.generator.name!r}: not a '
                         f'types.Generator: it lacks {", ".join(missing)}')
