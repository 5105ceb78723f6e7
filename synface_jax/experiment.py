"""One training run built from its config: `Experiment.from_config(config, mesh)`.

    config -> model (config.model)             -> head classes: synthetic ids, then real ids
           -> generator, its params            (config.generator; not in the 'real' regime)
           -> the real set, or its counts      (config.real; not in the 'synthetic' regime)
           -> steps per epoch -> schedule -> optimizer -> the state's shapes and shardings
           -> the jitted train step            (train_step.py)

The training loop (train.py), the benchmark and the tests build their runs here; random keys come
from `config.seed` by name (`seeds.py`, e.g. `experiment.key('step')`). Nothing here imports
TensorFlow unless the real set is built (give `real` its counts to avoid that). One run;
`experiments.py` runs grids of them.
"""
import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from synface_jax import models, seeds, sharding, train_step
from synface_jax.train_step import TrainState


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


def steps_per_epoch(config: ml_collections.ConfigDict, num_real_images: int) -> int:
  """SynFace counts epochs over the synthetic set (the real set is oversampled to its length)."""
  images = num_real_images if config.regime == 'real' else train_step.synthetic_images(config)
  return max(1, images // config.optim.batch_size)


class RealCounts(NamedTuple):
  """What the step needs to know of a real set, without the set (benchmarks, tests)."""
  num_classes: int
  num_images: int


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything a run is built from; `from_config` derives each piece once."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  model: Any                  # The backbone, a flax module (models.IResNet).
  generator: Any              # A types.Generator; None in the 'real' regime.
  gen_params: Any             # Its params (as generator.init returns them); None without it.
  real: Any                   # data.RealData, or RealCounts; None in the 'synthetic' regime.
  num_classes: int            # Head classes: synthetic identities, then real identities.
  steps_per_epoch: int
  num_steps: int              # config.num_train_steps, or optim.num_epochs of steps.
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  abstract_state: TrainState  # The state's shapes, dtypes and shardings (a restore target).
  step: Callable              # Jitted step(state, gen_params, real_batch, key) -> (state, metrics).

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, mesh, *, real=None, model=None,
                  generator=None, schedule=None) -> 'Experiment':
    """Builds the run of `config` on `mesh`; compiles nothing (the step compiles when called).

    real: the real set's counts (RealCounts) or the set itself; None builds data.real_dataset
      (which needs TensorFlow) when the regime uses real images.
    model, generator, schedule: replace the config's (tests with smaller networks, a fixed rate).
    """
    if config.regime != 'real' and generator is None:  # Its files are read before the real set.
      from synface_jax import generators
      generator = generators.get_generator(config.generator)
    if config.regime == 'real':
      generator = None
    gen_params = None if generator is None else generator.init(seeds.key(config.seed, 'generator'))
    if config.regime == 'synthetic':
      real = None
    elif real is None:
      from synface_jax import data, file_errors
      with file_errors.reading(config.real.path):  # A damaged source: one error naming it.
        real = data.real_dataset(config, mesh)
    num_real_images = real.num_images if real else 0
    num_classes = train_step.num_synthetic_classes(config) + (real.num_classes if real else 0)
    model = create_model(config) if model is None else model
    per_epoch = steps_per_epoch(config, num_real_images)
    schedule = learning_rate_schedule(config, per_epoch) if schedule is None else schedule
    tx = make_optimizer(config, schedule)
    abstract = train_step.abstract_state(model, tx, num_classes, mesh,
                                         tuple(config.model.input_size), config.mesh.head_on_data)
    step = train_step.jit_train_step(
        train_step.make_train_step(config, model, tx, schedule, mesh, num_classes=num_classes,
                                   generator=generator, num_real_images=num_real_images),
        abstract, mesh)
    return cls(config=config, mesh=mesh, model=model, generator=generator, gen_params=gen_params,
               real=real, num_classes=num_classes, steps_per_epoch=per_epoch,
               num_steps=config.num_train_steps or int(config.optim.num_epochs * per_epoch),
               schedule=schedule, tx=tx, abstract_state=abstract, step=step)

  def key(self, name: str) -> jax.Array:
    """The run's PRNG key of the named stream (seeds.NAMES), from config.seed."""
    return seeds.key(self.config.seed, name)

  def init_state(self) -> TrainState:
    """A fresh state (stream 'params'), each array on its shard of the mesh. The step donates
    the state it is given: pass each state to it once."""
    return train_step.init_state(self.model, self.tx, self.num_classes, self.key('params'),
                                 self.mesh, tuple(self.config.model.input_size),
                                 self.config.mesh.head_on_data)

  def batch_preview(self, count: int):
    """train_step.make_batch_preview of this run: the first `count` examples of each part."""
    return train_step.make_batch_preview(
        self.config, self.mesh, generator=self.generator,
        num_real_images=self.real.num_images if self.real else 0, count=count)
