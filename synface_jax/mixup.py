"""Identity mixup, domain mixup and their soft labels.

Everything here is a pure function usable inside `jax.jit`. Identity mixup (IM) mixes the identity
coefficients of two identities with a coefficient phi; domain mixup (DM) mixes a synthetic and a real
image batch with a coefficient psi. Both produce a `SoftLabel`, which the margin softmax consumes.
"""
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.types import SoftLabel  # noqa: F401  (also importable from here)


# ---------------------------------------------------------------------------------------------
# Coefficient samplers (phi for identity mixup, psi for domain mixup).

Sampler = Callable[..., jax.Array]

_VALID_SPECS = ("'fixed:V', 'synface', 'linspace:A,B,N', 'uniform:A,B', 'beta:A' "
                '(all values within [0, 1]; A > 0 for beta)')


def synface_grid() -> np.ndarray:
  """SynFace's coefficient grid: numpy.linspace(0, 1.05, 21, endpoint=False) = 0, 0.05, ..., 1.0."""
  return np.linspace(0, 1.05, 21, endpoint=False)


def _bad_spec(spec, why: str) -> ValueError:
  return ValueError(f'bad mixup coefficient spec {spec!r}: {why}; valid forms: {_VALID_SPECS}')


def _parse_numbers(spec, text: str, count: int) -> list:
  """The `count` comma-separated numbers of `text`, or a ValueError naming `spec`."""
  parts = [p.strip() for p in text.split(',')]
  if len(parts) != count:
    raise _bad_spec(spec, f'expected {count} number(s) after the colon, got {len(parts)}')
  try:
    values = [float(p) for p in parts]
  except ValueError:
    raise _bad_spec(spec, f'cannot read numbers from {text!r}') from None
  if not all(np.isfinite(values)):
    raise _bad_spec(spec, 'numbers must be finite')
  return values


def _check_unit(spec, *values) -> None:
  if not all(0.0 <= v <= 1.0 for v in values):
    raise _bad_spec(spec, f'values {values} must lie in [0, 1]')


def _grid_sampler(grid) -> Sampler:
  """Uniform choice from a fixed set of values."""
  grid = np.asarray(grid, np.float32)

  def sample(key, shape=()):
    index = jax.random.randint(key, shape, 0, grid.shape[0])
    return jnp.asarray(grid)[index]

  return sample


def make_sampler(spec: str) -> Sampler:
  """Builds `sample(key, shape=()) -> float32 array` for a mixup coefficient from a spec string.

  Specs (as written in configs):
    'fixed:0.8'            always 0.8.
    'synface'              uniform choice from numpy.linspace(0, 1.05, 21, endpoint=False), i.e.
                           0, 0.05, ..., 1.0 (what SynFace's code draws phi and psi from).
    'linspace:0.6,1.0,11'  uniform choice from numpy.linspace(0.6, 1.0, 11).
    'uniform:a,b'          continuous uniform on [a, b).
    'beta:a'               Beta(a, a).

  Raises:
    ValueError: the spec is malformed or its values leave [0, 1].
  """
  if not isinstance(spec, str):
    raise _bad_spec(spec, 'a spec is a string')
  name, _, args = spec.strip().partition(':')
  name = name.strip().lower()
  if name == 'synface' and not args.strip():
    return _grid_sampler(synface_grid())
  if name == 'fixed':
    (value,) = _parse_numbers(spec, args, 1)
    _check_unit(spec, value)
    return lambda key, shape=(): jnp.full(shape, value, jnp.float32)
  if name == 'linspace':
    start, stop, num = _parse_numbers(spec, args, 3)
    if num != int(num) or num < 1:
      raise _bad_spec(spec, 'N must be a positive integer')
    _check_unit(spec, start, stop)
    return _grid_sampler(np.linspace(start, stop, int(num)))
  if name == 'uniform':
    low, high = _parse_numbers(spec, args, 2)
    _check_unit(spec, low, high)
    if low > high:
      raise _bad_spec(spec, 'need a <= b')
    return lambda key, shape=(): jax.random.uniform(key, shape, jnp.float32, low, high)
  if name == 'beta':
    (alpha,) = _parse_numbers(spec, args, 1)
    if alpha <= 0:
      raise _bad_spec(spec, 'the Beta parameter must be > 0')
    return lambda key, shape=(): jnp.clip(
        jax.random.beta(key, alpha, alpha, shape, jnp.float32), 0.0, 1.0)
  raise _bad_spec(spec, 'unknown form')


# ---------------------------------------------------------------------------------------------
# Identity mixup.


def sample_partners(key, ids, num_identities: int) -> jax.Array:
  """A partner identity for each id, uniform over the other num_identities - 1 identities.

  Args:
    key: PRNG key.
    ids: int array of identity ids in [0, num_identities).
    num_identities: number of identities, at least 2.

  Returns:
    int32 array shaped like ids with partner != id everywhere.
  """
  if isinstance(num_identities, int) and num_identities < 2:
    raise ValueError(f'need at least 2 identities to pick a partner, got {num_identities}')
  ids = jnp.asarray(ids, jnp.int32)
  offset = jax.random.randint(key, ids.shape, 1, num_identities, jnp.int32)
  return (ids + offset) % num_identities


def _mix(a, b, weight):
  """weight * a + (1 - weight) * b in the dtype of a."""
  return (weight * a + (1 - weight) * b).astype(jnp.result_type(a))


def _weight_dtype(x):
  return jnp.promote_types(jnp.result_type(x), jnp.float32)


def _identity_mixup_one(coeffs_a, coeffs_b, id_a, id_b, phi):
  """identity_mixup for one example (no batch axis)."""
  coeffs = jax.tree.map(lambda a, b: _mix(a, b, phi), coeffs_a, coeffs_b)
  ids = jnp.stack([id_a, id_b]).astype(jnp.int32)
  weights = jnp.stack([phi, 1 - phi])
  return coeffs, SoftLabel(ids=ids, weights=weights)


def identity_mixup(coeffs_a, coeffs_b, id_a, id_b, phi):
  """Mixes identity coefficients of identities a and b with per-example coefficients phi.

  Args:
    coeffs_a: identity coefficients of a (array or pytree of arrays, leading batch axis B).
    coeffs_b: the same for b, same structure and shapes.
    id_a: int [B] class ids of a.
    id_b: int [B] class ids of b.
    phi: [B] (or scalar, shared) weight of a.

  Returns:
    (coeffs, label): coeffs = phi * a + (1 - phi) * b per example, in the dtype of coeffs_a;
    label ids [B, 2] = (id_a, id_b), weights [B, 2] = (phi, 1 - phi).
  """
  id_a = jnp.asarray(id_a, jnp.int32)
  id_b = jnp.asarray(id_b, jnp.int32)
  phi = jnp.asarray(phi, _weight_dtype(phi))
  phi = jnp.broadcast_to(phi, id_a.shape)
  return jax.vmap(_identity_mixup_one)(coeffs_a, coeffs_b, id_a, id_b, phi)


def mix_identities(key, a, label_a: SoftLabel, b, label_b: SoftLabel, phi):
  """SynFace's identity mixup as a `types.Mixup` on Factors (the default config.im.fn).

  a: Factors [B] of the anchors, b: Factors [B, 1] of one partner each; the result is a with its
  identity coefficients phi * a + (1 - phi) * b (nuisance, pose and lighting stay a's), labelled
  (id_a, id_b) with weights (phi, 1 - phi). key is not used.
  """
  del key
  if b.identity.shape[1] != 1:
    raise ValueError(f'identity mixup mixes one partner per face, got {b.identity.shape[1]} '
                     '(config.im.partners must be 1 for synface_jax.mixup:mix_identities)')
  identity, label = identity_mixup(a.identity, b.identity[:, 0], label_a.ids[:, 0],
                                   label_b.ids[:, 0], phi)
  return a._replace(identity=identity), label


# ---------------------------------------------------------------------------------------------
# Domain mixup.


def _domain_mixup_one(x_syn, x_real, psi):
  """Image-space domain mixup for one example, computed in at least float32."""
  compute = jnp.promote_types(x_syn.dtype, jnp.float32)
  mixed = psi.astype(compute) * x_syn.astype(compute) + (1 - psi).astype(compute) * x_real.astype(
      compute)
  return mixed.astype(x_syn.dtype)


def domain_mixup(x_syn, label_syn: SoftLabel, x_real, label_real: SoftLabel, psi):
  """Mixes a synthetic and a real batch in image space.

  Args:
    x_syn: synthetic images [B, ...].
    label_syn: their labels, K_syn slots.
    x_real: real images, same shape as x_syn.
    label_real: their labels, K_real slots (class ids already offset past the synthetic classes).
    psi: scalar (one per batch, as SynFace) or [B] (per example) weight of the synthetic side.

  Returns:
    (x, label): x = psi * x_syn + (1 - psi) * x_real in the dtype of x_syn; label has the
    K_syn + K_real slots of label_syn (weights * psi) followed by label_real (weights * (1 - psi)).
  """
  batch = x_syn.shape[0]
  psi = jnp.asarray(psi, _weight_dtype(psi))
  if psi.ndim not in (0, 1):
    raise ValueError(f'psi must be a scalar or [B], got shape {psi.shape}')
  psi = jnp.broadcast_to(psi, (batch,))
  x = jax.vmap(_domain_mixup_one)(x_syn, x_real, psi)
  syn = SoftLabel(label_syn.ids, label_syn.weights * psi[:, None])
  real = SoftLabel(label_real.ids, label_real.weights * (1 - psi[:, None]))
  return x, syn.concat(real)


def mix_domains(key, x_syn, label_syn: SoftLabel, x_real, label_real: SoftLabel, psi):
  """`domain_mixup` as a `types.Mixup` (the default config.dm.fn); key is not used."""
  del key
  return domain_mixup(x_syn, label_syn, x_real, label_real, psi)
