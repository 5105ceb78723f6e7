"""The experiment description every config file starts from, its presets and its checks.

A config file in `configs/` calls `base_config()`, sets the regime and its data, and returns it.
`validate(config)` runs before any compute and names the field that is wrong.
"""
import ast
import dataclasses
import importlib.util
import os
import re
from typing import Sequence

import ml_collections
from ml_collections.config_dict import placeholder

from synface_jax.generators import augment

REGIMES = ('real', 'synthetic', 'mixed')
MIN_EVAL_PAIRS = 10  # Both verification protocols score 10 folds.


def base_config() -> ml_collections.ConfigDict:
  """Defaults: SynFace's recipe (IResNet-50, ArcFace s=30 m=0.5, SGD 0.1 at batch 512, 40 epochs)."""
  c = ml_collections.ConfigDict()
  c.regime = 'real'
  c.seed = 0                      # The run's random streams, drawn from it by name (seeds.py).

  c.model = ml_collections.ConfigDict()
  c.model.arch = 'r50'
  c.model.width = 1.0             # Channel multiplier; tiny models for tests.
  c.model.num_features = 512
  c.model.dropout = 0.0
  c.model.dtype = 'float32'       # Compute dtype: 'float32' or 'bfloat16' (params stay float32).
  c.model.input_size = (112, 112)  # (H, W); SynFace trains at (112, 96).
  c.model.conv_kernel = 'auto'    # 'auto' (custom gradient on CPU, XLA's own on GPU/TPU), 'custom', 'xla'.

  c.loss = ml_collections.ConfigDict()
  c.loss.scale = 30.0
  c.loss.m1 = 1.0
  c.loss.m2 = 0.5
  c.loss.m3 = 0.0
  c.loss.fallback = True          # SynFace's cos(t) - m sin(m) when t + m > pi; False = insightface.
  c.loss.sample_rate = 1.0        # Partial FC: share of each head shard's classes scored per step.
  # The loss, a types.Loss as module:callable; it gets the other loss fields as keyword arguments.
  c.loss.fn = 'synface_jax.losses:margin_softmax_loss'

  # Real images: identity image folders (CASIA-WebFace layout), insightface RecordIO (train.rec),
  # SynFace's released set or a prepared TFDS dataset; prepared once as TFDS (synface_jax/data).
  c.real = ml_collections.ConfigDict()
  c.real.path = ''
  c.real.source = 'auto'          # auto | folder | synface | rec | tfds (auto: detected from path).
  c.real.data_dir = ''            # Where prepared TFDS data goes; '' = TFDS's default.
  c.real.num_identities = 0       # N: the first N identities (sorted); 0 = all.
  c.real.images_per_identity = 0  # S: the first S images of each; 0 = all.
  c.real.flip = True
  c.real.zoom_crop = 0.0          # Probability of a random zoom-crop (SynFace: 0.5).
  c.real.zoom = 112 / 96          # Its zoom factor (SynFace's Resize(112) + RandomCrop(112x96)).
  c.real.random_erasing = 0.0     # Probability of random erasing (SynFace: 0.5).
  c.real.max_skipped_fraction = 0.01  # Unusable images (corrupt, truncated) above it stop the run.

  # Synthetic identities rendered online inside the train step.
  c.synthetic = ml_collections.ConfigDict()
  c.synthetic.num_identities = 10_000  # N
  c.synthetic.images_per_identity = 50  # S fixed nuisance draws per identity; 0 = a fresh draw every time.
  # Camera and detector effects on the renders, inside the step (synface_jax/generators/augment.py):
  # a probability per op (0 = off) and its strength. SynFace trains on clean renders: all off.
  c.synthetic.augment = ml_collections.ConfigDict({
      f.name: f.default for f in dataclasses.fields(augment.Augment)})

  c.generator = ml_collections.ConfigDict()
  c.generator.name = 'procedural'
  c.generator.image_size = c.model.get_ref('input_size')
  c.generator.num_identities = c.synthetic.get_ref('num_identities')  # Held-out ids start here.
  # Each backend's own options (None = the backend's default); only the named backend's are used.
  c.generator.procedural = ml_collections.ConfigDict()
  c.generator.procedural.seed = 0                # Fixes the identity pool.
  c.generator.procedural.resolution = 1.0        # Mesh density.
  c.generator.procedural.bfm_path = placeholder(str)  # A BFM_model_front.mat instead of the built-in model.
  c.generator.discofacegan = ml_collections.ConfigDict()
  c.generator.discofacegan.checkpoint = placeholder(str)  # From generators.discofacegan.convert.
  c.generator.discofacegan.seed = 0
  c.generator.discofacegan.psi = 0.7             # Truncation on style layers 0-7.
  c.generator.discofacegan.dtype = 'float32'     # Synthesis compute dtype ('bfloat16' on TPU/GPU).
  c.generator.discofacegan.preset = placeholder(str)  # 'small'/'full': RANDOM weights, benchmarks only.

  c.im = ml_collections.ConfigDict()  # Identity mixup.
  c.im.enabled = False
  c.im.phi = 'synface'                # A sampler spec, see synface_jax.mixup.make_sampler.
  c.im.fn = 'synface_jax.mixup:mix_identities'  # A types.Mixup on Factors, as module:callable.
  c.im.partners = 1                   # Partner identities per face (SynFace: 1).

  c.dm = ml_collections.ConfigDict()  # Domain mixup.
  c.dm.enabled = False
  c.dm.psi = 'synface'
  c.dm.per_example = False            # SynFace draws one psi per batch.
  c.dm.fn = 'synface_jax.mixup:mix_domains'  # A types.Mixup on images, as module:callable.

  c.optim = ml_collections.ConfigDict()
  c.optim.batch_size = 512           # Global batch.
  c.optim.learning_rate = 0.1         # At batch 512; scaled linearly with the batch.
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.num_epochs = 40
  c.optim.warmup_epochs = 0.0
  c.optim.decay_epochs = (24, 30, 36)  # x0.1 at each.
  c.optim.grad_clip = 0.0             # Global-norm clip; 0 = off.
  c.optim.grad_accum_steps = 1        # Micro-batches per update (the batch stays optim.batch_size).
  # An update with a NaN / inf loss, gradient or result is skipped (the state is kept) and counted
  # in train/nonfinite_steps; this many in a row stop the run with an error. 0 = never stop.
  c.optim.max_nonfinite_steps = 10

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.model = 1
  c.mesh.head_on_data = False         # Split the head's classes over 'data' too (huge heads).
  c.mesh.global_batch_norm = True     # BN statistics over the global batch; False = per device.

  c.eval = ml_collections.ConfigDict()
  c.eval.pairs = ()                   # '.bin' files, 'IMAGE_ROOT:pairs.txt' or 'synthetic[:N]'.
  c.eval.protocols = ('insightface', 'synface')  # Each pair set is scored under each protocol.
  c.eval.batch_size = 128
  c.eval.every_steps = 0              # 0 = at the end of training only.

  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3              # The newest N checkpoints are kept; 0 = keep all.
  c.num_train_steps = 0               # 0 = derived from optim.num_epochs.
  c.log_batch_images = 8              # Examples of each part of the batch pictured every log; 0 = none.
  c.profile_steps = ()                # (first, last): a jax.profiler trace of them in WORKDIR/profile.
  c.compilation_cache_dir = ''        # JAX's persistent compilation cache; '' = WORKDIR/.jax_cache, 'off'.
  return c


_COUNT = re.compile(r'^(\d+)([KkMm]?)$')


def parse_count(text: str, what: str) -> int:
  """'10K' -> 10000, '2K' -> 2000, '50' -> 50."""
  m = _COUNT.match(text)
  if not m:
    raise ValueError(f'{what}: {text!r} is not a count like 50, 2K or 10K')
  return int(m.group(1)) * {'': 1, 'k': 1000, 'm': 1_000_000}[m.group(2).lower()]


def apply_preset(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies 'PRESET[,im=SPEC][,dm=SPEC]' where PRESET is Real_N_S, Syn_N_S or Mix_N_S.

  For Mix_N_S, N x S are the real identities and images added to the synthetic set (SynFace's
  Mix_2K_10 = Syn_10K_50 + 2K real identities x 10 images). SPEC is a sampler spec or 'off'.
  """
  if not arg:
    return c
  # Split on the commas that start a new token: sampler specs have commas of their own.
  tokens = [t.strip() for t in re.split(r',(?=\s*(?:\w+=|(?:Real|Syn|Mix)_))', arg) if t.strip()]
  for token in tokens:
    if '=' in token:
      key, value = token.split('=', 1)
      if key not in ('im', 'dm'):
        raise ValueError(f'config argument {token!r}: only im=SPEC and dm=SPEC are known')
      block = c[key]
      if value == 'off':
        block.enabled = False
      else:
        block.enabled = True
        block['phi' if key == 'im' else 'psi'] = value
      continue
    m = re.match(r'^(Real|Syn|Mix)_([^_]+)_([^_]+)$', token)
    if not m:
      raise ValueError(f'config argument {token!r}: expected Real_N_S, Syn_N_S or Mix_N_S')
    kind, n, s = m.group(1), parse_count(m.group(2), token), parse_count(m.group(3), token)
    if kind == 'Syn':
      c.synthetic.num_identities, c.synthetic.images_per_identity = n, s
    else:
      c.real.num_identities, c.real.images_per_identity = n, s
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first field that cannot work."""
  def need(ok, field, why):
    if not ok:
      raise ValueError(f'config field {field}={_get(c, field)!r}: {why}')

  need(c.regime in REGIMES, 'regime', f'must be one of {REGIMES}')
  from synface_jax.models.iresnet import ARCHS  # pylint: disable=g-import-not-at-top
  need(c.model.arch in ARCHS, 'model.arch', f'must be one of {sorted(ARCHS)}')
  need(_is_int(c.num_train_steps) and c.num_train_steps >= 0, 'num_train_steps',
       'must be an integer >= 0 (0 = from optim.num_epochs)')
  need(_is_int(c.checkpoint_every_steps) and c.checkpoint_every_steps >= 1,
       'checkpoint_every_steps', 'must be an integer >= 1')
  need(_is_int(c.log_every_steps) and c.log_every_steps >= 1, 'log_every_steps',
       'must be an integer >= 1')
  need(_is_int(c.keep_checkpoints) and c.keep_checkpoints >= 0, 'keep_checkpoints',
       'must be an integer >= 0 (0 = keep all)')
  need(_is_int(c.optim.max_nonfinite_steps) and c.optim.max_nonfinite_steps >= 0,
       'optim.max_nonfinite_steps', 'must be an integer >= 0 (0 = never stop)')
  need(_is_int(c.eval.every_steps) and c.eval.every_steps >= 0, 'eval.every_steps',
       'must be an integer >= 0 (0 = at the end only)')
  need(c.eval.batch_size >= 1, 'eval.batch_size', 'must be >= 1')
  for source in c.eval.pairs:
    kind, _, count = str(source).partition(':')
    if kind == 'synthetic' and count:
      need(count.isdigit() and int(count) >= 2 * MIN_EVAL_PAIRS
           and int(count) % (2 * MIN_EVAL_PAIRS) == 0, 'eval.pairs',
           f'{source!r}: a synthetic pair set holds a positive multiple of {2 * MIN_EVAL_PAIRS} '
           f'pairs (10 folds, each half same and half different)')
  need(c.model.dtype in ('float32', 'bfloat16'), 'model.dtype', "must be 'float32' or 'bfloat16'")
  need(len(c.model.input_size) == 2 and all(int(v) % 16 == 0 and v > 0 for v in c.model.input_size),
       'model.input_size', '(H, W) must both be positive multiples of 16')
  need(c.model.width > 0, 'model.width', 'must be > 0')
  need(c.model.get('conv_kernel', 'auto') in ('auto', 'custom', 'xla'), 'model.conv_kernel',
       "must be 'auto', 'custom' or 'xla'")
  need(0.0 <= c.model.dropout < 1.0, 'model.dropout', 'must be in [0, 1)')
  need(c.loss.scale > 0, 'loss.scale', 'must be > 0')
  need(c.optim.batch_size > 0, 'optim.batch_size', 'must be > 0')
  need(c.optim.learning_rate > 0, 'optim.learning_rate', 'must be > 0')
  need(c.optim.num_epochs > 0 or c.num_train_steps > 0, 'optim.num_epochs',
       'must be > 0 (or set num_train_steps)')
  need(list(c.optim.decay_epochs) == sorted(c.optim.decay_epochs), 'optim.decay_epochs',
       'must be increasing')
  need(c.optim.grad_clip >= 0, 'optim.grad_clip', 'must be >= 0 (0 = off)')
  need(c.optim.grad_accum_steps >= 1 and c.optim.batch_size % c.optim.grad_accum_steps == 0,
       'optim.grad_accum_steps', 'must be >= 1 and divide optim.batch_size')
  need(0.0 < c.loss.sample_rate <= 1.0, 'loss.sample_rate', 'must be in (0, 1]')
  need(len(c.eval.protocols) > 0 and set(c.eval.protocols) <= {'insightface', 'synface'},
       'eval.protocols', "must list 'insightface' and/or 'synface'")
  uses_real = c.regime in ('real', 'mixed')
  uses_syn = c.regime in ('synthetic', 'mixed')
  if uses_real:
    need(bool(c.real.path), 'real.path', f'the {c.regime} regime needs real identity data')
    need(c.real.source in ('auto', 'folder', 'synface', 'rec', 'tfds'), 'real.source',
         "must be 'auto', 'folder', 'synface', 'rec' or 'tfds'")
    need(c.real.num_identities >= 0, 'real.num_identities', 'must be >= 0 (0 = all)')
    need(c.real.images_per_identity >= 0, 'real.images_per_identity', 'must be >= 0 (0 = all)')
    need(0.0 <= c.real.zoom_crop <= 1.0, 'real.zoom_crop', 'is a probability, in [0, 1]')
    need(c.real.zoom >= 1.0, 'real.zoom', 'must be >= 1 (a zoom in)')
    need(0.0 <= c.real.random_erasing <= 1.0, 'real.random_erasing', 'is a probability, in [0, 1]')
    need(0.0 <= c.real.max_skipped_fraction <= 1.0, 'real.max_skipped_fraction',
         'is a fraction of the images, in [0, 1]')
  if uses_syn:
    from synface_jax import extensions, generators  # pylint: disable=g-import-not-at-top
    known = generators.names()  # Or module:callable, checked by extensions.check below.
    need(c.generator.name in known or extensions.is_reference(c.generator.name), 'generator.name',
         f'is not a known generator; choose one of {known} or give module:callable')
    if c.generator.name == 'discofacegan':
      g = c.generator.discofacegan
      need(g.checkpoint is not None or g.preset is not None, 'generator.discofacegan.checkpoint',
           'DiscoFaceGAN needs a converted checkpoint directory (python -m '
           'synface_jax.generators.discofacegan.convert)')
      need(g.checkpoint is None or os.path.isdir(g.checkpoint), 'generator.discofacegan.checkpoint',
           'is not a directory')
    if c.generator.name == 'procedural':
      bfm_path = c.generator.procedural.bfm_path
      need(bfm_path is None or os.path.isfile(bfm_path), 'generator.procedural.bfm_path',
           'is not a file')
    need(c.synthetic.num_identities >= 2, 'synthetic.num_identities', 'must be >= 2')
    need(c.synthetic.images_per_identity >= 0, 'synthetic.images_per_identity', 'must be >= 0')
    augment.Augment.from_config(c.synthetic.augment).check()
  need(not c.dm.enabled or c.regime == 'mixed', 'dm.enabled', 'domain mixup needs the mixed regime')
  need(not c.im.enabled or uses_syn, 'im.enabled', 'identity mixup needs synthetic identities')
  need(_is_int(c.im.partners) and 1 <= c.im.partners < max(c.synthetic.num_identities, 2),
       'im.partners', 'must be an integer >= 1, below synthetic.num_identities')
  from synface_jax import mixup  # Checks the sampler specs.
  for field in ('im.phi', 'dm.psi'):
    try:
      mixup.make_sampler(_get(c, field))
    except ValueError as e:
      raise ValueError(f'config field {field}: {e}') from None
  from synface_jax import extensions  # Imports and checks im.fn, dm.fn, loss.fn, generator.name.
  extensions.check(c)


def validate_devices(c: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError when the mesh or the batch cannot be laid out on num_devices devices."""
  def need_ok(ok, why):
    if not ok:
      raise ValueError(why)

  data, model = c.mesh.data, c.mesh.model
  need_ok(data == -1 or (_is_int(data) and data >= 1),
          f'config field mesh.data={data!r}: must be -1 (all that is left) or >= 1')
  need_ok(model == -1 or (_is_int(model) and model >= 1),
          f'config field mesh.model={model!r}: must be -1 (all that is left) or >= 1')
  need_ok(not (data == -1 and model == -1),
          'config fields mesh.data and mesh.model: at most one may be -1')
  if data == -1:
    data = num_devices // model if num_devices % model == 0 else 0
  if model == -1:
    model = num_devices // data if num_devices % data == 0 else 0
  need_ok(data >= 1 and model >= 1 and data * model == num_devices,
          f'config fields mesh.data={c.mesh.data} x mesh.model={c.mesh.model}: do not match the '
          f'{num_devices} available devices')
  accum = c.optim.grad_accum_steps
  need_ok(c.optim.batch_size % (data * accum) == 0,
          f'config field optim.batch_size={c.optim.batch_size}: must be divisible by the mesh '
          f'data axis ({data} devices) x optim.grad_accum_steps ({accum})')


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _get(c, dotted):
  for part in dotted.split('.'):
    c = c[part]
  return c


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config of `path[:arg]` (a configs/*.py file with get_config) with FIELD=VALUE overrides,
  as main's --config and --config.FIELD=VALUE flags give it; for the commands that are not main.

  A value is read as a Python literal unless the field holds a string. Raises ValueError naming
  the file, or the field and value, that cannot be used.
  """
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise ValueError(f'{path}: no such config file')
  module_spec = importlib.util.spec_from_file_location('synface_jax_config_file', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except (ValueError, SyntaxError, ImportError, AttributeError, TypeError) as e:
    raise ValueError(f'{spec}: {e}') from None
  for item in overrides:
    field, sep, text = item.partition('=')
    if not sep or not field:
      raise ValueError(f'--config.{item}: expected --config.FIELD=VALUE')
    *parents, leaf = field.split('.')
    target = config
    try:
      for part in parents:
        target = target[part]
      kind = target.get_ref(leaf).get_type()
    except (KeyError, AttributeError):
      raise ValueError(f'--config.{field}: no such config field') from None
    value = text
    if kind is not str:
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        raise ValueError(f'--config.{field}={text!r}: not a {kind.__name__} value') from None
    try:
      target[leaf] = value
    except TypeError as e:
      raise ValueError(f'--config.{field}={text!r}: {e}') from None
  return config


def split_overrides(argv: Sequence[str]):
  """(the --config.FIELD=VALUE arguments as FIELD=VALUE, the other arguments)."""
  prefix = '--config.'
  overrides = [a[len(prefix):] for a in argv if a.startswith(prefix)]
  return overrides, [a for a in argv if not a.startswith(prefix)]
