"""Identity mixup of three identities with Dirichlet weights, in a module of your own.

    python -m synface_jax.main --config=examples/dirichlet_mixup.py --workdir=runs/dirichlet

The config below asks for two partners per face (config.im.partners = 2) and names
`examples.dirichlet_mixup:mix` as config.im.fn. Each face's identity coefficients are
w_0 * a + w_1 * b_1 + w_2 * b_2 with (w_0, w_1, w_2) ~ Dirichlet(ALPHA, ALPHA, ALPHA) drawn
from the mixup's own key, and its label is those three identities with those weights (K = 3).
config.im.phi is not used. Expression, pose, lighting and noise stay the anchor's.
"""
import jax
import jax.numpy as jnp

from synface_jax import config as config_lib
from synface_jax.types import Factors, SoftLabel

ALPHA = 1.0


def mix(key, a: Factors, label_a: SoftLabel, b: Factors, label_b: SoftLabel, phi):
  """A `synface_jax.types.Mixup` on Factors: a [B], b [B, 2] (two partners); phi is ignored."""
  del phi
  sources = b.identity.shape[1] + 1
  w = jax.random.dirichlet(key, jnp.full((sources,), ALPHA), a.identity.shape[:1])  # [B, 3]
  identities = jnp.concatenate([a.identity[:, None], b.identity], 1)               # [B, 3, 160]
  mixed = a._replace(identity=jnp.einsum('bk,bkd->bd', w, identities))
  return mixed, SoftLabel(jnp.concatenate([label_a.ids, label_b.ids], -1), w)


def get_config(arg='Syn_10K_50'):
  c = config_lib.base_config()
  c.regime = 'synthetic'
  c = config_lib.apply_preset(c, arg or 'Syn_10K_50')
  c.im.enabled = True
  c.im.partners = 2
  c.im.fn = 'examples.dirichlet_mixup:mix'
  return c
