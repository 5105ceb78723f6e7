"""The SynFace train step and training loop.

One step is one pure, jitted function (read `make_train_step` top to bottom):

    key -> identity ids, partners, phi        identity mixup on Factors (config.im.fn)
        -> generator.render(params_g, factors) aligned synthetic faces + soft labels
                                              (both in generators/sampling.py)
    real batch (host-sharded input)           -> domain mixup with psi (config.dm.fn)
        -> IResNet -> embeddings -> cosine to the class centres (sharded over 'model')
        -> soft-target margin softmax (config.loss.fn) -> grads -> optax update

Regimes: 'real' uses only the real batch, 'synthetic' only rendered faces, 'mixed' both, with one
head over synthetic classes [0, N_syn) followed by real classes [N_syn, N_syn + N_real).
"""
import os
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from clu import metrics as clu_metrics
from jax.sharding import NamedSharding, PartitionSpec as P

from synface_jax import checkpointing, extensions, losses, mixup, models, sharding, startup
from synface_jax.types import SoftLabel
from synface_jax.generators import augment
from synface_jax.generators.sampling import synthetic_batch  # The step's synthetic input.
from synface_jax.models import head as head_lib

class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any        # {'backbone': ..., 'head': [classes padded to the head shards, features]}
  batch_stats: Any   # the backbone's BatchNorm statistics
  opt_state: Any


@flax.struct.dataclass
class _FiniteAverage(clu_metrics.Average):
  """Average of the finite values only (a skipped step's NaN loss does not poison the mean)."""

  @classmethod
  def from_model_output(cls, values, mask=None, **_):
    del mask
    values = jnp.atleast_1d(values)
    return super().from_model_output(values, mask=jnp.isfinite(values))


@flax.struct.dataclass
class _Count(clu_metrics.Metric):
  """A sum over steps (e.g. of skipped updates)."""
  total: jax.Array

  @classmethod
  def from_model_output(cls, values, **_):
    return cls(total=jnp.asarray(values, jnp.int32).sum())

  def merge(self, other):
    return type(self)(total=self.total + other.total)

  def compute(self):
    return self.total


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
  loss: _FiniteAverage.from_output('loss')
  accuracy: clu_metrics.Average.from_output('accuracy')
  learning_rate: clu_metrics.LastValue.from_output('learning_rate')
  nonfinite_steps: _Count.from_output('nonfinite')  # Updates skipped for NaN / inf.


def create_model(config: ml_collections.ConfigDict) -> models.IResNet:
  return models.iresnet(
      config.model.arch, width=config.model.width, num_features=config.model.num_features,
      dropout=config.model.dropout, dtype=jnp.dtype(config.model.dtype),
      conv_kernel=config.model.get('conv_kernel', 'auto'))


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Linear warmup, then x0.1 at each of optim.decay_epochs; base lr scaled by batch / 512."""
  o = config.optim
  base = o.learning_rate * o.batch_size / 512
  warmup = int(o.warmup_epochs * steps_per_epoch)
  boundaries = {int(e * steps_per_epoch) - warmup: 0.1 for e in o.decay_epochs}
  decay = optax.piecewise_constant_schedule(base, {b: s for b, s in boundaries.items() if b > 0})
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), decay], [warmup])


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule):
  """SGD with momentum; weight decay added to the gradient first, as torch's SGD does."""
  o = config.optim
  parts = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip > 0 else []
  parts += [optax.add_decayed_weights(o.weight_decay), optax.sgd(schedule, momentum=o.momentum)]
  return optax.chain(*parts)


def init_state(model, tx, num_classes: int, key, mesh, input_size,
               head_on_data: bool = False) -> TrainState:
  """Creates the train state with every array already placed on its shard of the mesh."""
  rows = head_lib.padded_rows(num_classes, sharding.head_shards(mesh, head_on_data))

  def init(key):
    k_model, k_head = jax.random.split(key)
    x = jnp.zeros((1, *input_size, 3), jnp.float32)
    variables = model.init(k_model, x, train=False)
    params = {'backbone': variables['params'],
              'head': head_lib.init_head(k_head, rows, model.num_features)}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables['batch_stats'], opt_state=tx.init(params))
  rules = sharding.partition_rules(head_on_data)
  shardings = sharding.tree_shardings(mesh, jax.eval_shape(init, key), rules)
  return jax.jit(init, out_shardings=shardings)(key)


def real_label(batch: dict, offset: int) -> SoftLabel:
  """The real batch's labels as a SoftLabel, class ids shifted by `offset` (empty slots stay -1)."""
  if 'label_ids' not in batch:
    return SoftLabel.one_hot(batch['label'] + offset)
  ids = batch['label_ids']
  return SoftLabel(jnp.where(ids >= 0, ids + offset, -1), batch['label_weights'])


def make_inputs(config: ml_collections.ConfigDict, mesh, *, generator=None,
                num_real_images: int = 0):
  """The input part of the train step: inputs(gen_params, real_batch, key, step) ->
  (x, y, model key, parts), where key is the step's key before it is folded with `step`.

  parts names the batch's pieces for pictures: 'synthetic' (rendered, identity-mixed, augmented),
  'real', 'mixed' (after domain mixup) as float [B, H, W, 3] in [-1, 1], and 'phi' (the identity
  weight of each synthetic face) and 'psi' (the synthetic share of each mixed one) as float [B].
  The step uses x, y and the model key; the rest is dropped by the compiler there.
  """
  regime = config.regime
  uses_syn = regime in ('synthetic', 'mixed')
  num_syn = config.synthetic.num_identities if uses_syn else 0
  phi_sampler = mixup.make_sampler(config.im.phi) if config.im.enabled else None
  psi_sampler = mixup.make_sampler(config.dm.psi) if config.dm.enabled else None
  identity_mixup = extensions.mixup('im.fn', config.im.fn)
  domain_mixup = extensions.mixup('dm.fn', config.dm.fn)
  augment_options = augment.Augment.from_config(config.synthetic.augment) if uses_syn else None
  batch_size = config.optim.batch_size
  # Without domain mixup the mixed regime samples from the union of both sets: each example is
  # synthetic with probability (synthetic images) / (all images), as one shuffled dataset would be.
  syn_images = num_syn * max(config.synthetic.images_per_identity, 1)
  p_syn = syn_images / max(syn_images + num_real_images, 1)
  batch_spec = NamedSharding(mesh, P(sharding.DATA))

  def inputs(gen_params, real_batch, key, step):
    key = jax.random.fold_in(key, step)
    k_syn, k_psi, k_model = jax.random.split(key, 3)
    parts = {}
    if uses_syn:
      x_syn, y_syn = synthetic_batch(
          generator, gen_params, k_syn, batch_size, num_syn,
          config.synthetic.images_per_identity, phi_sampler, draw_seed=config.seed + 1,
          augment_options=augment_options, mix=identity_mixup, num_partners=config.im.partners)
      x_syn = jax.lax.with_sharding_constraint(x_syn, batch_spec)
      parts['synthetic'] = x_syn
      if phi_sampler is not None:
        parts['phi'] = y_syn.weights[:, 0]
    if regime != 'synthetic':
      x_real = real_batch['image'].astype(jnp.float32)
      y_real = real_label(real_batch, num_syn)
      parts['real'] = x_real
    if regime == 'real':
      x, y = x_real, y_real
    elif regime == 'synthetic':
      x, y = x_syn, y_syn
    else:
      if psi_sampler is not None:
        psi = psi_sampler(k_psi, (batch_size,) if config.dm.per_example else ())
        # The mixup's own draws, if it makes any, come from a key of their own.
        x, y = domain_mixup(jax.random.fold_in(k_psi, 1), x_syn, y_syn, x_real, y_real, psi)
      else:  # Each example is either synthetic or real: a selection, not a mixup.
        psi = jax.random.bernoulli(k_psi, p_syn, (batch_size,)).astype(jnp.float32)
        x, y = mixup.domain_mixup(x_syn, y_syn, x_real, y_real, psi)
      parts['mixed'] = x
      parts['psi'] = jnp.broadcast_to(psi, (batch_size,)).astype(jnp.float32)
    return x, y, k_model, parts

  return inputs


def make_batch_preview(config: ml_collections.ConfigDict, mesh, *, generator=None,
                       num_real_images: int = 0, count: int = 8):
  """A jitted preview(gen_params, real_batch, key, step) -> the first `count` examples of each
  part of the batch the train step made from the same arguments (`make_inputs`' parts).

  The step itself stays as it is (no pictures in its outputs); this re-runs only its input part,
  once per log, on the real batch the step was given.
  """
  inputs = make_inputs(config, mesh, generator=generator, num_real_images=num_real_images)

  def preview(gen_params, real_batch, key, step):
    parts = inputs(gen_params, real_batch, key, step)[3]
    return {name: value[:count] for name, value in parts.items()}
  return jax.jit(preview, out_shardings=sharding.replicated(mesh))


def make_train_step(config: ml_collections.ConfigDict, model, tx, schedule, mesh, *,
                    num_classes: int, generator=None, num_real_images: int = 0):
  """Returns step(state, gen_params, real_batch, key) -> (state, TrainMetrics), to jit on `mesh`.

  num_classes: synthetic identities + real identities; head rows beyond it are padding.
  real_batch: {'image': float [B, H, W, 3] normalised to [-1, 1], 'label': int32 [B]}, with
  'label_ids' int32 [B, K] and 'label_weights' float32 [B, K] too when the real source carries
  soft labels (SynFace's released set); None in the synthetic regime. Real labels are offset by
  the number of synthetic identities.
  """
  inputs = make_inputs(config, mesh, generator=generator, num_real_images=num_real_images)
  batch_size = config.optim.batch_size
  accum = config.optim.grad_accum_steps
  data_shards = mesh.shape[sharding.DATA]
  if batch_size % (data_shards * accum):
    raise ValueError(f'optim.batch_size={batch_size} is not divisible by the mesh data axis '
                     f'({data_shards} devices) x optim.grad_accum_steps ({accum})')
  compute_dtype = jnp.dtype(config.model.dtype)
  batch_spec = NamedSharding(mesh, P(sharding.DATA))
  head_shards = sharding.head_shards(mesh, config.mesh.head_on_data)
  logits_spec = NamedSharding(mesh, sharding.logits_spec(config.mesh.head_on_data))
  bn_groups = 1 if config.mesh.global_batch_norm else data_shards
  loss_hyper = extensions.loss_hyper(config.loss)  # scale, m1, m2, m3, fallback, ...
  loss_of = extensions.loss('loss.fn', config.loss.fn, loss_hyper)

  def embed(params, batch_stats, x, key):
    """Backbone forward in train mode; BN statistics over the global batch or per device."""
    def apply(x):
      return model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                         mutable=['batch_stats'], rngs={'dropout': key})
    if bn_groups == 1:
      embeddings, updates = apply(x)
      return embeddings, updates['batch_stats']
    groups = x.reshape(bn_groups, -1, *x.shape[1:])  # One group per data shard.
    embeddings, updates = jax.vmap(apply)(groups)
    stats = jax.tree.map(lambda v: v.mean(0), updates['batch_stats'])
    return embeddings.reshape(-1, embeddings.shape[-1]), stats

  def loss_fn(params, batch_stats, x, y, key):
    k_dropout, k_sample = jax.random.split(key)
    embeddings, batch_stats = embed(params['backbone'], batch_stats, x, k_dropout)
    centres = params['head']
    if config.loss.sample_rate < 1.0:
      centres, y, valid = head_lib.partial_fc(k_sample, centres, y, num_classes, head_shards,
                                              config.loss.sample_rate)
    else:
      valid = head_lib.class_mask(centres.shape[0], num_classes)
    cos = losses.cosine(embeddings, centres)
    cos = jax.lax.with_sharding_constraint(jnp.where(valid, cos, -1.0), logits_spec)
    per_example, logits = loss_of(cos, y, **loss_hyper)
    main_class = jnp.take_along_axis(y.ids, jnp.argmax(y.weights, -1)[:, None], -1)[:, 0]
    correct = (jnp.argmax(logits, axis=-1) == main_class).astype(jnp.float32)
    return per_example.mean(), (batch_stats, correct)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, gen_params, real_batch, key):
    # 1. Inputs: rendered (identity-mixed) faces and/or real faces, domain-mixed (make_inputs).
    x, y, k_model, _ = inputs(gen_params, real_batch, key, state.step)
    x = jax.lax.with_sharding_constraint(x.astype(compute_dtype), batch_spec)

    # 2. Backbone, head and soft-target margin softmax: gradients of the mean loss, summed over
    #    optim.grad_accum_steps micro-batches when the batch does not fit at once.
    if accum == 1:
      (loss, (batch_stats, correct)), grads = grad_fn(state.params, state.batch_stats, x, y, k_model)
    else:
      split = lambda a: a.reshape(accum, -1, *a.shape[1:])
      micro = (split(x), jax.tree.map(split, y), jax.random.split(k_model, accum))

      def accumulate(carry, inputs):
        batch_stats, grad_sum, loss_sum = carry
        (loss, (batch_stats, correct)), grads = grad_fn(state.params, batch_stats, *inputs)
        return (batch_stats, jax.tree.map(jnp.add, grad_sum, grads), loss_sum + loss), correct

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (batch_stats, grad_sum, loss_sum), correct = jax.lax.scan(
          accumulate, (state.batch_stats, zeros, 0.0), micro)
      grads = jax.tree.map(lambda g: g / accum, grad_sum)
      loss, correct = loss_sum / accum, correct.reshape(-1)

    # 3. Optimiser update, skipped (and counted) when the loss, a gradient or a BatchNorm
    #    statistic is not finite. A cond, not a select of old and new: XLA then updates the
    #    donated parameters and optimizer state in place, without holding copies of the head.
    finite = jnp.isfinite(loss) & tree_all_finite((grads, batch_stats))

    def update(params, opt_state):
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state
    params, opt_state = jax.lax.cond(finite, update, lambda *old: old, state.params,
                                     state.opt_state)
    batch_stats = jax.tree.map(lambda n, o: jnp.where(finite, n, o), batch_stats,
                               state.batch_stats)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    metrics = TrainMetrics.single_from_model_output(
        loss=loss, accuracy=correct, learning_rate=schedule(state.step), nonfinite=~finite)
    return new_state, metrics

  return step


def tree_all_finite(tree) -> jax.Array:
  """A scalar bool: every floating-point leaf of the pytree is free of NaN and inf (traceable)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves])) if leaves else jnp.bool_(True)


def jit_train_step(step, state: TrainState, mesh):
  """jax.jit with the state's shardings in and out, the batch on 'data', and the state donated."""
  state_shardings = jax.tree.map(lambda x: x.sharding, state)
  return jax.jit(
      step,
      in_shardings=(state_shardings, sharding.replicated(mesh), sharding.batch_sharding(mesh),
                    sharding.replicated(mesh)),
      out_shardings=(state_shardings, sharding.replicated(mesh)),
      donate_argnums=(0,))


def steps_per_epoch(config: ml_collections.ConfigDict, num_real_images: int) -> int:
  """SynFace counts epochs over the synthetic set (the real set is oversampled to its length)."""
  if config.regime == 'real':
    images = num_real_images
  else:
    images = config.synthetic.num_identities * max(config.synthetic.images_per_identity, 1)
  return max(1, images // config.optim.batch_size)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
  """Trains (resuming from the latest usable checkpoint in workdir), evaluates, returns metrics.

  Holds the workdir lock for the whole run. SIGTERM / SIGINT stop it after the current step with
  a checkpoint saved (the returned dict then has 'stopped_by'). Raises NonFiniteError when
  optim.max_nonfinite_steps updates in a row were non-finite (the last finite state is on disk).
  `devices` (default: all) are the devices of the mesh.
  """
  # Process 0 holds the lock. In multi-process runs SIGTERM is left to JAX's preemption notice
  # (orbax then saves at the next step).
  single = jax.process_count() == 1
  with checkpointing.WorkdirLock(workdir, enabled=jax.process_index() == 0), \
      checkpointing.StopSignals(enabled=single) as stop:
    return _train_and_evaluate(config, workdir, stop, devices)


class _NonFiniteGuard:
  """Counts skipped (non-finite) updates in a row, reading each step's flag one step late so
  that the host does not wait for the device on every step."""

  def __init__(self, limit: int):
    self.limit, self.in_a_row, self.first, self._pending = limit, 0, None, None

  def update(self, step, flag):
    pending, self._pending = self._pending, (step, flag)
    if pending is not None:
      self._check(*pending)

  def flush(self):
    if self._pending is not None:
      self._check(*self._pending)
      self._pending = None

  def _check(self, step, flag):
    if not bool(jax.device_get(flag)):
      self.in_a_row, self.first = 0, None
      return
    self.in_a_row += 1
    self.first = self.first or step
    logging.warning('Step %d: non-finite loss or gradients, update skipped (%d in a row)', step,
                    self.in_a_row)
    if self.limit and self.in_a_row >= self.limit:
      raise checkpointing.NonFiniteError(
          f'training stopped: steps {self.first}..{step} gave {self.in_a_row} non-finite updates '
          f'in a row (optim.max_nonfinite_steps={self.limit}); every one was skipped and no '
          f'non-finite state was saved. Lower optim.learning_rate or set optim.grad_clip.')


def _train_and_evaluate(config, workdir, stop, devices) -> dict:
  # Imported here: the step above needs none of the loop's I/O (only real data needs TensorFlow).
  import orbax.checkpoint as ocp
  from synface_jax import config as config_lib, data, file_errors, generators, writers
  from synface_jax.eval.evaluator import PairEvaluator
  from synface_jax.models import model_spec

  compilation_cache(config, workdir)
  devices = list(jax.devices() if devices is None else devices)
  config_lib.validate_devices(config, len(devices))
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model, devices=devices)
  writer = writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(_flatten(config.to_dict()))  # Numbers stay numbers; tuples become text.

  generator = gen_params = None
  if config.regime != 'real':  # Its files are read (and checked) before the real data is built.
    generator = generators.get_generator(config.generator)
    gen_params = generator.init(jax.random.key(config.seed + 2))
  real = None
  if config.regime != 'synthetic':
    with file_errors.reading(config.real.path):  # A damaged source: one error naming it.
      real = data.real_dataset(config, mesh)
  num_real = real.num_classes if real else 0
  num_real_images = real.num_images if real else 0
  num_syn = config.synthetic.num_identities if config.regime != 'real' else 0
  num_classes = num_syn + num_real
  model = create_model(config)
  # Pair sets are loaded (and checked) before anything compiles for training.
  evaluator = PairEvaluator(config, model, generator, gen_params) if config.eval.pairs else None

  per_epoch = steps_per_epoch(config, num_real_images)
  num_steps = config.num_train_steps or int(config.optim.num_epochs * per_epoch)
  schedule = learning_rate_schedule(config, per_epoch)
  tx = make_optimizer(config, schedule)
  state = init_state(model, tx, num_classes, jax.random.key(config.seed), mesh,
                     tuple(config.model.input_size), config.mesh.head_on_data)

  directory = checkpointing.workdir_path(workdir) / 'checkpoints'  # gs:// stays gs://.
  # Asked every step: saves every checkpoint_every_steps, and when orbax sees a preemption notice.
  policy = ocp.checkpoint_managers.AnySavePolicy([
      ocp.checkpoint_managers.FixedIntervalPolicy(config.checkpoint_every_steps),
      ocp.checkpoint_managers.PreemptionCheckpointingPolicy()])
  make_manager = lambda: ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      max_to_keep=config.keep_checkpoints or None, create=True, save_decision_policy=policy))
  manager = make_manager()
  if jax.process_index() == 0:  # What the embedder and exporter need to rebuild the backbone.
    model_spec.ModelSpec.from_config(config).write(manager.directory)
  if manager.all_steps():
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored, start, skipped = checkpointing.restore_latest(manager, abstract, directory)
    if skipped:
      manager.close()
      manager = make_manager()  # It must not see the checkpoints that were set aside.
    if restored is not None:
      state = restored
      logging.info('Resumed from %s/checkpoints at step %d', workdir, start)
    else:
      logging.warning('No usable checkpoint in %s (%s): starting from step 0', directory,
                      '; '.join(skipped))
  start = int(state.step)

  def save(step, force=False):
    """A checkpoint at `step` when it is due (or preemption is near, or force); never NaN."""
    if not (force or manager.should_save(step)):
      return
    if not checkpointing.all_finite(state):
      raise checkpointing.NonFiniteError(f'step {step}: the state to save is not finite; '
                                         f'not saved (the last checkpoint is kept)')
    started = time.perf_counter()
    manager.save(step, args=ocp.args.StandardSave(state), force=True)
    logging.info('Checkpoint of step %d saved in %.1fs (written on in the background)', step,
                 time.perf_counter() - started)

  step_fn = jit_train_step(
      make_train_step(config, model, tx, schedule, mesh, num_classes=num_classes,
                      generator=generator, num_real_images=num_real_images), state, mesh)
  real_iter = real.iterator(start) if real else None
  gen_params = jax.device_put(gen_params, sharding.replicated(mesh))
  key = jax.random.key(config.seed + 3)
  preview = make_batch_preview(config, mesh, generator=generator, num_real_images=num_real_images,
                               count=config.log_batch_images) if config.log_batch_images else None
  profiler = _Profiler(config.profile_steps, workdir)

  report = writers.ReportProgress(num_train_steps=num_steps, writer=writer,
                                           every_steps=config.log_every_steps)
  train_metrics = None
  summary = {}
  logging.info('Training %s: %d classes, steps %d..%d (%d per epoch), batch %d, mesh %s',
               config.regime, num_classes, start + 1, num_steps, per_epoch,
               config.optim.batch_size, dict(mesh.shape))
  guard = _NonFiniteGuard(config.optim.max_nonfinite_steps)
  stopped_at = None
  try:
    for step in range(start + 1, num_steps + 1):
      profiler.before(step)
      first_step_start = time.perf_counter() if step == start + 1 else None
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = next(real_iter) if real_iter else None
        state, metrics = step_fn(state, gen_params, batch, key)
      if first_step_start is not None:
        jax.block_until_ready(state)
        logging.info('Step %d (tracing, compiling and running the step) took %.1fs', step,
                     time.perf_counter() - first_step_start)
        logging.info('Time to first step (process start -> step %d done): %s', step,
                     startup.describe(startup.seconds_since_process_start()))
      profiler.after(step, state)
      guard.update(step, metrics.nonfinite_steps.total)
      train_metrics = metrics if train_metrics is None else train_metrics.merge(metrics)
      report(step)
      if step % config.log_every_steps == 0 or step == num_steps or stop.requested:
        guard.flush()
        summary = {f'train/{k}': float(v) for k, v in train_metrics.compute().items()}
        writer.write_scalars(step, summary)
        train_metrics = None
        if preview is not None:
          with report.timed('pictures'):
            _write_batch_picture(writer, step, preview(gen_params, batch, key, step - 1))
      if stop.requested:  # SIGTERM / SIGINT: this step is done; save it and stop.
        with report.timed('checkpoint'):
          save(step, force=True)
        stopped_at = step
        break
      if evaluator and config.eval.every_steps and step % config.eval.every_steps == 0:
        with report.timed('eval'):
          summary.update(_evaluate(evaluator, state, writer, step))
      with report.timed('checkpoint'):
        save(step, force=step == num_steps)
    else:
      guard.flush()
      if evaluator and (not config.eval.every_steps or num_steps % config.eval.every_steps):
        with report.timed('eval'):
          summary.update(_evaluate(evaluator, state, writer, num_steps))
  finally:  # Whatever stops the loop, a checkpoint being written is finished.
    profiler.close()
    waited = time.perf_counter()
    manager.wait_until_finished()
    logging.info('Checkpoints written (waited %.1fs for the last)', time.perf_counter() - waited)
    manager.close()
    writer.close()
  if stopped_at is not None:
    logging.warning('Stopped by %s after step %d; checkpoint saved in %s', stop.received,
                    stopped_at, directory)
    return dict(summary, stopped_by=stop.received, step=stopped_at)
  return summary


def _evaluate(evaluator, state, writer, step) -> dict:
  results = evaluator(state.params['backbone'], state.batch_stats)
  writer.write_scalars(step, results)
  if writer.logdir:  # ROC curves and score histograms (drawn on the process that writes them).
    writer.write_images(step, evaluator.images())
    writer.write_histograms(step, evaluator.scores())
  return results


def compilation_cache(config: ml_collections.ConfigDict, workdir: str) -> str | None:
  """Turns on JAX's persistent compilation cache, so a restarted or resumed run skips compiling
  again; returns its folder (None: off).

  config.compilation_cache_dir: a folder; 'off'; or '' for the one JAX already has
  (JAX_COMPILATION_CACHE_DIR), else WORKDIR/.jax_cache. Takes effect before the process's first
  compilation only (JAX opens its cache once).
  """
  path = config.compilation_cache_dir
  if path == 'off':
    jax.config.update('jax_enable_compilation_cache', False)
    logging.info('JAX compilation cache: off')
    return None
  path = path or jax.config.jax_compilation_cache_dir or os.fspath(
      checkpointing.workdir_path(workdir) / '.jax_cache')
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', path)
  logging.info('JAX compilation cache: %s', path)
  return path


def batch_picture(parts: dict) -> tuple:
  """(uint8 grid, text) of a batch preview (make_batch_preview): one row per part, phi under
  each synthetic face and psi under each domain-mixed one."""
  parts = jax.device_get(parts)
  rows, captions, text = {}, {}, []
  if 'synthetic' in parts:
    rows['synthetic'] = parts['synthetic']
    if 'phi' in parts:
      captions['synthetic'] = [f'phi {v:.2f}' for v in parts['phi']]
      text.append('phi ' + ', '.join(f'{v:.3f}' for v in parts['phi']))
  if 'real' in parts:
    rows['real'] = parts['real']
  if 'mixed' in parts:
    rows['mixed'] = parts['mixed']
    captions['mixed'] = [f'psi {v:.2f}' for v in parts['psi']]
    text.append('psi ' + ', '.join(f'{v:.3f}' for v in parts['psi']))
  from synface_jax import writers
  return writers.image_grid(rows, captions), '; '.join(text)


def _write_batch_picture(writer, step: int, parts: dict) -> None:
  grid, text = batch_picture(parts)
  writer.write_images(step, {'train/batch': grid})
  if text:
    writer.write_texts(step, {'train/batch': text})


class _Profiler:
  """A jax.profiler trace of config.profile_steps = (first, last) into WORKDIR/profile."""

  def __init__(self, steps, workdir: str):
    steps = tuple(steps or ())
    if steps and (len(steps) != 2 or not 0 < steps[0] <= steps[1]):
      raise ValueError(f'profile_steps={steps}: expected (first, last) step numbers, first <= last')
    self.first, self.last = steps or (None, None)
    self.directory = os.fspath(checkpointing.workdir_path(workdir) / 'profile')
    self.active = False

  def before(self, step: int) -> None:
    if step == self.first:
      jax.profiler.start_trace(self.directory)
      self.active = True
      logging.info('Profiling steps %d..%d into %s', self.first, self.last, self.directory)

  def after(self, step: int, state) -> None:
    if self.active and step >= self.last:
      jax.block_until_ready(state)
      self.close()

  def close(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
      logging.info('Profile written to %s', self.directory)


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out
