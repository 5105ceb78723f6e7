"""The embedded default: faces rendered in the train step, identity mixup, synthetic verification.

    python -m synface_jax.main --config=configs/demo.py --workdir=runs/demo

A narrow IResNet-18 trains for one epoch of Syn_500_100 (500 procedural identities x 100 fixed
draws of expression, pose and lighting, rendered inside the jitted step) with SynFace's identity
mixup, then is scored on 1,200 pairs of identities it never saw, under both verification
protocols. Needs no downloads; about 15 minutes on 2 CPU cores.
"""
from synface_jax import config as config_lib


def get_config(arg='Syn_500_100,im=synface'):
  c = config_lib.base_config()
  c.regime = 'synthetic'
  c.model.arch = 'r18'
  c.model.width = 0.125
  c.optim.batch_size = 64
  c.optim.learning_rate = 0.8  # 0.1 at batch 64 (rates are given at batch 512).
  c.optim.num_epochs = 1
  c.optim.warmup_epochs = 0.05
  c.optim.decay_epochs = (0.7, 0.9)
  c.eval.pairs = ('synthetic:1200',)
  c.log_every_steps = 50
  c.checkpoint_every_steps = 200
  return config_lib.apply_preset(c, arg or 'Syn_500_100,im=synface')
