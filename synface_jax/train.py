"""The SynFace training loop: checkpoints, logs, pictures, evaluation and safe stopping.

The run is built by `experiment.Experiment.from_config` (model, generator, data, schedule,
optimizer, state and the jitted step); the step itself is `train_step.make_train_step`, with no
I/O. This module feeds it batches and writes what it does.
"""
import os
import time

from absl import logging
import jax
import ml_collections

from synface_jax import checkpointing, experiment, sharding, startup


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
  # Imported here: building a run needs none of the loop's I/O (only real data needs TensorFlow).
  import orbax.checkpoint as ocp
  from synface_jax import config as config_lib, writers
  from synface_jax.eval.evaluator import PairEvaluator
  from synface_jax.models import model_spec

  compilation_cache(config, workdir)
  devices = list(jax.devices() if devices is None else devices)
  config_lib.validate_devices(config, len(devices))
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model, devices=devices)
  writer = writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(_flatten(config.to_dict()))  # Numbers stay numbers; tuples become text.

  # The generator's files are read (and checked) before the real data is built.
  run = experiment.Experiment.from_config(config, mesh)
  # Pair sets are loaded (and checked) before anything compiles for training.
  evaluator = (PairEvaluator(config, run.model, run.generator, run.gen_params)
               if config.eval.pairs else None)
  gen_params = jax.device_put(run.gen_params, sharding.replicated(mesh))
  key = run.key('step')
  compiling = _compile_ahead(run, gen_params, key)  # While the state is set up or restored.
  num_steps = run.num_steps

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
  state = None
  if manager.all_steps():
    restored, start, skipped = checkpointing.restore_latest(manager, run.abstract_state, directory)
    if skipped:
      manager.close()
      manager = make_manager()  # It must not see the checkpoints that were set aside.
    if restored is not None:
      state = restored
      logging.info('Resumed from %s/checkpoints at step %d', workdir, start)
    else:
      logging.warning('No usable checkpoint in %s (%s): starting from step 0', directory,
                      '; '.join(skipped))
  state = run.init_state() if state is None else state
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

  step_fn = run.step
  real_iter = run.real.iterator(start) if run.real else None
  preview = run.batch_preview(config.log_batch_images) if config.log_batch_images else None
  profiler = _Profiler(config.profile_steps, workdir)

  report = writers.ReportProgress(num_train_steps=num_steps, writer=writer,
                                           every_steps=config.log_every_steps)
  train_metrics = None
  summary = {}
  logging.info('Training %s: %d classes, steps %d..%d (%d per epoch), batch %d, mesh %s',
               config.regime, run.num_classes, start + 1, num_steps, run.steps_per_epoch,
               config.optim.batch_size, dict(mesh.shape))
  if compiling is not None:
    logging.info('Train step compiled ahead (alongside the set-up) in %.1fs; set-up waited %.1fs '
                 'for it', *compiling())
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
        logging.info('Step %d took %.1fs (with any compiling left)', step,
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


def _compile_ahead(run, gen_params, key):
  """Traces and lowers the train step here, then compiles it in a background thread (XLA compiles
  without holding Python's lock), so that the compile overlaps the checkpoint manager and the
  state's initialisation or restore; the loop's first call then finds it in JAX's caches. The
  trace is Python and comes first: beside the state's initialisation it took 6 s, not 2.2 s.
  Returns wait() -> (seconds from here to compiled, seconds waited), which re-raises the
  compile's error; None where the step takes a real batch (its shapes are known only once the
  first batch is read).
  """
  if run.real is not None:
    return None
  import concurrent.futures
  started = time.perf_counter()
  lowered = run.step.lower(run.abstract_state, gen_params, None, key)

  def compile_step():
    lowered.compile()
    return time.perf_counter() - started

  pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='compile')
  future = pool.submit(compile_step)
  pool.shutdown(wait=False)

  def wait():
    waited = time.perf_counter()
    seconds = future.result()
    return seconds, time.perf_counter() - waited
  return wait


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
