"""Factor priors: standard normals z turned into coefficients lambda for each factor.

The identity prior is the standard normal (the bases are scaled so a coefficient of 1 is one
standard deviation), with a bimodal sex. Expression, pose and lighting priors shape the draws like a face dataset:
moderate expressions with smiles and open mouths now and then, yaw mostly within +-45 degrees,
pitch within +-20 and roll within +-10, a frontal-ish key light over an ambient term.
"""
import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.generators import factors as factor_lib
from synface_jax.generators.procedural import lighting, texture
from synface_jax.generators.procedural.shape_basis import EXPRESSION_NAMES

_POOL_SALT = 0x5F1D


def pool_key(seed: int):
  """The key of the identity pool of a generator seed; identity i uses fold_in(pool_key, i)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), _POOL_SALT)


_SEX = 80 + texture.NAMES.index('sex')


def identity(z):
  """Identity coefficients [160] (80 shape, 80 texture) from standard normals [160].

  Standard normal, but for sex, which is bimodal (about -1 or +1: women and men, with few faces in
  between; identity mixup fills the middle).
  """
  return z.at[_SEX].set(1.1 * jnp.tanh(4.0 * z[_SEX]))


def _expression_scales():
  scale = np.full(factor_lib.EXPRESSION_DIM, 0.6, np.float32)
  named = {'smile': 0.75, 'jaw_open': 0.8, 'blink': 0.35, 'squint': 0.4, 'eyes_wide': 0.4,
           'brow_raise': 0.55, 'frown': 0.5, 'gaze_side': 0.7, 'gaze_up': 0.6}
  for i, name in enumerate(EXPRESSION_NAMES):
    scale[i] = named.get(name, 0.45)
  return scale


_EXPRESSION_SCALE = _expression_scales()
_SMILE = EXPRESSION_NAMES.index('smile')
_JAW = EXPRESSION_NAMES.index('jaw_open')


def expression(z):
  """Expression coefficients [64] from standard normals [64]."""
  e = z * _EXPRESSION_SCALE
  e = e.at[_SMILE].add(0.25)
  return e.at[_JAW].set(jnp.maximum(e[_JAW] - 0.2, 0.0) * 1.2)


def pose(z):
  """(pitch, yaw, roll) radians from standard normals [3]."""
  return jnp.array([0.35 * jnp.tanh(0.6 * z[0]), 0.8 * jnp.tanh(0.55 * z[1]), 0.17 * jnp.tanh(0.6 * z[2])])


def light(z):
  """Lighting coefficients [27] (3 colours x 9 SH bands) from standard normals [27]."""
  ambient = 0.16 + 0.12 * jnp.tanh(0.8 * z[0])
  tint = 0.04 * jnp.tanh(z[1:4])
  direction = jnp.array([0.8 * z[4], 0.35 + 0.45 * z[5], 1.1 + 0.35 * jnp.abs(z[6])])
  direction = direction / jnp.linalg.norm(direction)
  strength = 0.12 + 0.4 * jax.nn.sigmoid(1.2 * z[7])
  colour = 1.0 + 0.06 * jnp.tanh(z[8:11])
  coeffs = lighting.directional(direction, strength, colour).reshape(3, 9)
  coeffs = coeffs.at[:, 0].add(ambient + tint)
  coeffs = coeffs.at[:, 4:].add(0.03 * jnp.tanh(z[11:16])[None, :])
  return coeffs.reshape(27)


def sample_nuisance(key, identity_coeffs) -> factor_lib.Factors:
  """One face of the given identity with freshly drawn expression, pose, lighting and noise."""
  k_exp, k_pose, k_light, k_noise = jax.random.split(key, 4)
  normal = lambda k, n: jax.random.normal(k, (n,), jnp.float32)
  return factor_lib.Factors(
      identity=jnp.asarray(identity_coeffs, jnp.float32),
      expression=expression(normal(k_exp, factor_lib.EXPRESSION_DIM)),
      pose=pose(normal(k_pose, factor_lib.POSE_DIM)),
      lighting=light(normal(k_light, factor_lib.LIGHTING_DIM)),
      noise=normal(k_noise, factor_lib.NOISE_DIM))
