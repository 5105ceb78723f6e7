"""Real data only: IResNet-50 + ArcFace on an identity image folder (e.g. CASIA-WebFace).

    python -m synface_jax.main --config=configs/real.py:Real_10K_50 --workdir=runs/real \
        --config.real.path=/data/casia-webface --config.eval.pairs="('/data/lfw.bin',)"

ARG: Real_N_S picks the first N identities x first S images (Real_10K_50); empty = all images.
"""
from synface_jax import config as config_lib


def get_config(arg=None):
  c = config_lib.base_config()
  c.regime = 'real'
  return config_lib.apply_preset(c, arg)
