"""A per-factor identity mixup that also mixes expression, in a module of your own.

    python -m synface_jax.main --config=examples/expression_mixup.py --workdir=runs/expression

The config below names `examples.expression_mixup:mix` as config.im.fn. Identity coefficients
are mixed with phi (drawn from config.im.phi, and the label says so); expression is mixed with a
second coefficient eta ~ U(0, 1) drawn from the mixup's own key, so a face may wear its partner's
expression without being labelled as the partner (expression carries no identity). Pose,
lighting and noise stay the anchor's.
"""
import jax
import jax.numpy as jnp

from synface_jax import config as config_lib
from synface_jax.types import Factors, SoftLabel


def mix(key, a: Factors, label_a: SoftLabel, b: Factors, label_b: SoftLabel, phi):
  """A `synface_jax.types.Mixup` on Factors: a [B], b [B, 1] (one partner), phi [B]."""
  partner = jax.tree.map(lambda x: x[:, 0], b)
  eta = jax.random.uniform(key, phi.shape)[:, None]
  w = phi[:, None]
  mixed = a._replace(identity=w * a.identity + (1 - w) * partner.identity,
                     expression=eta * a.expression + (1 - eta) * partner.expression)
  label = SoftLabel(jnp.concatenate([label_a.ids, label_b.ids[:, :1]], -1),
                    jnp.stack([phi, 1 - phi], -1))
  return mixed, label


def get_config(arg='Syn_10K_50'):
  c = config_lib.base_config()
  c.regime = 'synthetic'
  c = config_lib.apply_preset(c, arg or 'Syn_10K_50')
  c.im.enabled = True
  c.im.fn = 'examples.expression_mixup:mix'
  return c
