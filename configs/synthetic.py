"""Synthetic faces only, rendered inside the train step (SynFace's Syn_N_S), with identity mixup.

    python -m synface_jax.main --config=configs/synthetic.py:Syn_10K_50,im=synface --workdir=runs/syn

ARG: Syn_N_S (N identities x S fixed nuisance draws each), then optional im=SPEC or im=off
(SPEC: synface, fixed:0.8, linspace:0.6,1.0,11, uniform:a,b, beta:a). Default: Syn_10K_50, IM off.
"""
from synface_jax import config as config_lib


def get_config(arg='Syn_10K_50'):
  c = config_lib.base_config()
  c.regime = 'synthetic'
  c.eval.pairs = ('synthetic',)  # 6,000 pairs of held-out rendered identities.
  return config_lib.apply_preset(c, arg or 'Syn_10K_50')
