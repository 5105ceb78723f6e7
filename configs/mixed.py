"""Synthetic + real faces with identity and domain mixup (SynFace's Mix_N_S, 95.78% LFW at Mix_2K_10).

    python -m synface_jax.main --config=configs/mixed.py:Mix_2K_10,im=synface,dm=synface \
        --workdir=runs/mix --config.real.path=/data/casia-webface

ARG: Mix_N_S (N real identities x S images added to Syn_10K_50; give Syn_N_S too to change the
synthetic part), im=SPEC|off, dm=SPEC|off. Without dm, each example is drawn from the union of the
two sets in proportion to their sizes.
"""
from synface_jax import config as config_lib


def get_config(arg='Mix_2K_10,im=synface,dm=synface'):
  c = config_lib.base_config()
  c.regime = 'mixed'
  c.eval.pairs = ('synthetic',)  # Add LFW etc. with --config.eval.pairs.
  return config_lib.apply_preset(c, arg or 'Mix_2K_10,im=synface,dm=synface')
