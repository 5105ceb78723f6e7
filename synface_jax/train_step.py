"""The SynFace train step: one pure, jitted function (read `make_train_step` top to bottom).

    key -> identity ids, partners, phi        identity mixup on Factors (config.im.fn)
        -> generator.render(params_g, factors) aligned synthetic faces + soft labels
                                              (both in generators/sampling.py)
    real batch (host-sharded input)           -> domain mixup with psi (config.dm.fn)
        -> IResNet -> embeddings -> cosine to the class centres (sharded over 'model')
        -> soft-target margin softmax (config.loss.fn) -> grads -> optax update

Regimes: 'real' uses only the real batch, 'synthetic' only rendered faces, 'mixed' both, with one
head over synthetic classes [0, N_syn) followed by real classes [N_syn, N_syn + N_real).

No I/O and no TensorFlow here: `experiment.Experiment` builds the step from a config, and
`train.py` runs it in the loop with checkpoints, logs and evaluation.
"""
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from clu import metrics as clu_metrics
from jax.sharding import NamedSharding, PartitionSpec as P

from synface_jax import extensions, losses, mixup, seeds, sharding
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


def _state_init(model, tx, num_classes: int, mesh, input_size, head_on_data: bool):
  """(init(key) -> TrainState, the state's shardings on the mesh, its shapes)."""
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
  shapes = jax.eval_shape(init, jax.random.key(0))
  return init, sharding.tree_shardings(mesh, shapes, rules), shapes


def abstract_state(model, tx, num_classes: int, mesh, input_size,
                   head_on_data: bool = False) -> TrainState:
  """The state's shapes, dtypes and shardings (jax.ShapeDtypeStruct leaves); nothing is computed."""
  _, shardings, shapes = _state_init(model, tx, num_classes, mesh, input_size, head_on_data)
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes,
                      shardings)


def init_state(model, tx, num_classes: int, key, mesh, input_size,
               head_on_data: bool = False) -> TrainState:
  """Creates the train state with every array already placed on its shard of the mesh.

  On CPU the initialiser compiles at XLA optimisation level 0 (unless XLA_FLAGS sets a level):
  it runs once (in 0.1 s), and higher levels spend seconds optimising its unrolled threefry
  hashes (7 s at the demo's size by default, 3.2 s at level 1, 2.0 s at level 0), for the same
  draws to float32 rounding (tests/test_experiment.py)."""
  init, shardings, _ = _state_init(model, tx, num_classes, mesh, input_size, head_on_data)
  lowered = jax.jit(init, out_shardings=shardings).lower(key)
  on_cpu = all(d.platform == 'cpu' for d in mesh.devices.flat)
  yours = 'xla_backend_optimization_level' in os.environ.get('XLA_FLAGS', '')
  options = {'xla_backend_optimization_level': 0} if on_cpu and not yours else None
  return lowered.compile(compiler_options=options)(key)


def num_synthetic_classes(config: ml_collections.ConfigDict) -> int:
  """The head's synthetic classes [0, N_syn): the pool's identities, unless the regime is 'real'."""
  return config.synthetic.num_identities if config.regime != 'real' else 0


def synthetic_images(config: ml_collections.ConfigDict) -> int:
  """Images in the synthetic set Syn_N_S (N x S; S = 0, a fresh draw each time, counts as 1)."""
  return num_synthetic_classes(config) * max(config.synthetic.images_per_identity, 1)


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
  num_syn = num_synthetic_classes(config)
  phi_sampler = mixup.make_sampler(config.im.phi) if config.im.enabled else None
  psi_sampler = mixup.make_sampler(config.dm.psi) if config.dm.enabled else None
  identity_mixup = extensions.mixup('im.fn', config.im.fn)
  domain_mixup = extensions.mixup('dm.fn', config.dm.fn)
  augment_options = augment.Augment.from_config(config.synthetic.augment) if uses_syn else None
  batch_size = config.optim.batch_size
  # Without domain mixup the mixed regime samples from the union of both sets: each example is
  # synthetic with probability (synthetic images) / (all images), as one shuffled dataset would be.
  syn_images = synthetic_images(config)
  p_syn = syn_images / max(syn_images + num_real_images, 1)
  draw_seed = seeds.seed(config.seed, 'draws')
  batch_spec = NamedSharding(mesh, P(sharding.DATA))

  def inputs(gen_params, real_batch, key, step):
    key = jax.random.fold_in(key, step)
    k_syn, k_psi, k_model = jax.random.split(key, 3)
    parts = {}
    if uses_syn:
      x_syn, y_syn = synthetic_batch(
          generator, gen_params, k_syn, batch_size, num_syn,
          config.synthetic.images_per_identity, phi_sampler, draw_seed=draw_seed,
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
        # Both full batches are needed: under jit every shape is static, and the number of
        # synthetic examples a Bernoulli draw picks is known only when the step runs. A fixed
        # count per batch, round(B p_syn), would render only those faces but change the sampling
        # (no batch-to-batch spread of the union's shares), and the real pipeline still delivers
        # B images a step.
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
    per_example, _ = loss_of(cos, y, **loss_hyper)
    return per_example.mean(), (batch_stats, nearest_centre_correct(cos, y))

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
    #    statistic is not finite. One cond, not a select of old and new per leaf: XLA then
    #    updates the donated parameters and optimizer state in place, without holding copies of
    #    the head, and reduces the flag once (a select per BatchNorm statistic repeated the whole
    #    reduction inside each one: a quarter of the demo step's HLO, 13% of its compile).
    finite = jnp.isfinite(loss) & tree_all_finite((grads, batch_stats))

    def update(params, opt_state, new_stats, _):
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, new_stats

    def skip(params, opt_state, _, old_stats):
      return params, opt_state, old_stats
    params, opt_state, batch_stats = jax.lax.cond(
        finite, update, skip, state.params, state.opt_state, batch_stats, state.batch_stats)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    metrics = TrainMetrics.single_from_model_output(
        loss=loss, accuracy=correct, learning_rate=schedule(state.step), nonfinite=~finite)
    return new_state, metrics

  return step


def nearest_centre_correct(cos, y) -> jax.Array:
  """[B] float 1/0: the class centre nearest each embedding (cos [B, C]) is its heaviest label.

  The training accuracy, measured as at test time on the cosines: the margin logits would count
  an example wrong until its cosine beats every other class by the whole margin, which a small
  model in a short run never reaches (its accuracy read 0 throughout).
  """
  main_class = jnp.take_along_axis(y.ids, jnp.argmax(y.weights, -1)[:, None], -1)[:, 0]
  return (jnp.argmax(cos, axis=-1) == main_class).astype(jnp.float32)


def tree_all_finite(tree) -> jax.Array:
  """A scalar bool: every floating-point leaf of the pytree is free of NaN and inf (traceable)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves])) if leaves else jnp.bool_(True)


def jit_train_step(step, state: TrainState, mesh):
  """jax.jit with the state's shardings in and out, the batch on 'data', and the state donated.

  state: a TrainState, or its abstract_state (only the leaves' shardings are read)."""
  state_shardings = jax.tree.map(lambda x: x.sharding, state)
  return jax.jit(
      step,
      in_shardings=(state_shardings, sharding.replicated(mesh), sharding.batch_sharding(mesh),
                    sharding.replicated(mesh)),
      out_shardings=(state_shardings, sharding.replicated(mesh)),
      donate_argnums=(0,))

