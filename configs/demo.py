"""The embedded default: faces rendered and degraded in the train step.

    python -m synface_jax.main --config=configs/demo.py --workdir=runs/demo

A narrow IResNet-18 trains for one epoch of Syn_1K_50 (1,000 procedural identities x 50 fixed
draws of expression, pose and lighting, rendered inside the jitted step). What it learns must carry
over to photographs, so each render then goes through some of what a camera and a face detector do
to a real face (DigiFace-1M's lesson: alignment error, low
resolution, blur, colour casts, occluders, sensor noise, JPEG blocks; see
`synface_jax/generators/augment.py`). At the end it is scored on 1,200 pairs of identities it never
saw, under both verification protocols, and `WORKDIR/results.json` holds the figures. Needs no
downloads; about 15 minutes on 2 CPU cores (docs/results/demo.md).

Identity mixup is off: at this budget it slowed fitting and verified real photographs worse in
both seeds measured (docs/results/demo.md: AUC 0.880 against 0.894 on 75 public photographs, the
opposite of SynFace's gain at scale); `configs/demo.py:Syn_1K_50,im=synface` turns it back on.
"""
from synface_jax import config as config_lib

PRESET = 'Syn_1K_50,im=off'


def get_config(arg=PRESET):
  c = config_lib.base_config()
  c.regime = 'synthetic'
  c.model.arch = 'r18'
  c.model.width = 0.125
  c.optim.batch_size = 64
  c.optim.learning_rate = 0.8  # 0.1 at batch 64 (rates are given at batch 512).
  c.optim.num_epochs = 1
  c.optim.warmup_epochs = 0.05
  c.optim.decay_epochs = (0.7, 0.9)
  a = c.synthetic.augment
  a.flip = 0.5
  a.align, a.align_scale, a.align_shift, a.align_rotate = 0.5, 0.08, 0.04, 8.0
  a.low_res = 0.2
  a.blur, a.blur_sigma = 0.25, 1.5
  a.colour = 0.6
  a.grayscale = 0.1
  a.occlude = 0.05  # The strongest op for a real recogniser: at 1.0 dlib finds half the faces.
  a.noise, a.noise_sigma = 0.3, 0.04
  a.jpeg, a.jpeg_quality = 0.3, (25, 90)
  c.eval.pairs = ('synthetic:1200',)
  c.log_every_steps = 50
  c.checkpoint_every_steps = 200
  return config_lib.apply_preset(c, arg or PRESET)
