"""A run never keeps NaN, never trusts a damaged checkpoint, holds its workdir, stops cleanly."""
import fcntl
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO, subprocess_env
from synface_jax import checkpointing, config as config_lib, sharding, train
from conftest import BATCH, SIZE, loop_config, real_batch, run_loop, tiny_config, tiny_experiment
import toy_main  # noqa: F401  (registers the 'toy' generator)


# --- the step: a non-finite update is skipped and counted ----------------------------------------

@pytest.fixture(scope='module')
def compiled_step():
  exp = tiny_experiment(tiny_config('real'))
  return exp.step, exp.init_state(), exp.mesh


def test_nonfinite_update_is_skipped_and_counted(compiled_step):
  step, state, mesh = compiled_step
  good = sharding.host_local_to_global(real_batch(0), mesh)
  bad_images = real_batch(1)
  bad_images['image'][3, 5, 5, 0] = np.nan  # One NaN pixel poisons the loss and the gradients.
  bad = sharding.host_local_to_global(bad_images, mesh)

  state1, m1 = step(jax.tree.map(jnp.copy, state), None, good, jax.random.key(0))
  before = jax.device_get(state1)
  state2, m2 = step(state1, None, bad, jax.random.key(0))
  after = jax.device_get(state2)
  assert int(m1.nonfinite_steps.total) == 0 and int(m2.nonfinite_steps.total) == 1
  assert int(m2.loss.count) == 0 and int(m1.loss.count) == 1  # The NaN loss is left out.
  assert int(after.step) == int(before.step) + 1
  for name in ('params', 'batch_stats', 'opt_state'):
    jax.tree.map(np.testing.assert_array_equal, getattr(after, name), getattr(before, name))
  # The logged loss averages the finite step only; the count is summed.
  merged = m1.merge(m2).compute()
  assert merged['nonfinite_steps'] == 1
  np.testing.assert_allclose(merged['loss'], m1.compute()['loss'], rtol=1e-6)
  # A finite batch after the skipped one updates again.
  state3, m3 = step(state2, None, good, jax.random.key(0))
  assert int(m3.nonfinite_steps.total) == 0
  assert not np.array_equal(jax.device_get(state3.params['head']), after.params['head'])
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b),
                                       jax.device_get(state3.batch_stats), after.batch_stats))
  assert all(moved)  # Every BatchNorm statistic moves again too.


# --- the loop: toy generator, tiny model, in-process ----------------------------------------------

def _restore(workdir, step):
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    return manager.restore(step)


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A 4-step run with checkpoints at 2 and 4 (copied by the tests that damage them)."""
  workdir = str(tmp_path_factory.mktemp('trained'))
  summary = run_loop(loop_config(), workdir)
  assert summary['train/nonfinite_steps'] == 0
  assert _steps(workdir) == [2, 4]
  return workdir


def _copy(src, tmp_path):
  import shutil
  dst = str(tmp_path / 'run')
  shutil.copytree(src, dst)
  return dst


def test_damaged_latest_checkpoint_falls_back_with_a_warning(trained, tmp_path, caplog):
  workdir = _copy(trained, tmp_path)
  os.remove(os.path.join(workdir, 'checkpoints', '4', '_CHECKPOINT_METADATA'))
  for root, _, files in os.walk(os.path.join(workdir, 'checkpoints', '4')):
    for f in files:
      if f == '_METADATA':
        os.remove(os.path.join(root, f))
  summary = run_loop(loop_config(num_train_steps=6), workdir)
  assert summary['train/nonfinite_steps'] == 0
  warnings = ' '.join(r.getMessage() for r in caplog.records if r.levelname == 'WARNING')
  assert 'checkpoints/4' in warnings and 'unusable-0' in warnings, warnings
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '4.unusable-0'))
  assert _steps(workdir) == [2, 4, 6]  # Resumed from 2: steps 3..6 ran and saved again.


def test_nonfinite_checkpoint_is_not_restored(trained, tmp_path, caplog):
  workdir = _copy(trained, tmp_path)
  state = _restore(workdir, 4)
  state['params']['head'] = np.full_like(state['params']['head'], np.nan)  # A "bit flip".
  with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints')) as manager:
    manager.save(5, args=ocp.args.StandardSave(state))
  summary = run_loop(loop_config(num_train_steps=6), workdir)
  warnings = ' '.join(r.getMessage() for r in caplog.records if r.levelname == 'WARNING')
  assert 'NaN or infinite' in warnings and 'checkpoints/5' in warnings, warnings
  assert _steps(workdir) == [2, 4, 6]
  assert np.isfinite(summary['train/loss'])
  assert checkpointing.all_finite(_restore(workdir, 6))


def test_nan_run_stops_with_an_error_and_saves_nothing_nonfinite(tmp_path):
  workdir = str(tmp_path / 'nan')
  # The generator renders NaN faces: every update is skipped, the third in a row stops the run.
  config = loop_config(**{'generator.name': 'toy_nan', 'optim.max_nonfinite_steps': 3,
                          'num_train_steps': 40, 'checkpoint_every_steps': 1,
                          'keep_checkpoints': 0})
  with pytest.raises(checkpointing.NonFiniteError, match='3 non-finite updates in a row'):
    run_loop(config, workdir)
  assert _steps(workdir) == [1, 2]  # keep_checkpoints=0 keeps every one; step 3 stopped it.
  initial = _restore(workdir, 1)
  assert checkpointing.all_finite(initial) and checkpointing.all_finite(_restore(workdir, 2))
  jax.tree.map(np.testing.assert_array_equal, _restore(workdir, 2)['params'], initial['params'])


def test_keep_checkpoints_negative_and_other_bad_fields_are_refused():
  for field, value, words in [('keep_checkpoints', -1, 'keep all'),
                              ('optim.max_nonfinite_steps', -2, 'never stop'),
                              ('checkpoint_every_steps', 0, '>= 1'),
                              ('num_train_steps', -5, '>= 0'),
                              ('log_every_steps', 0, '>= 1'),
                              ('model.arch', 'r51', "'r18'"),
                              ('eval.pairs', ('synthetic:30',), 'multiple of 20')]:
    with pytest.raises(ValueError, match=words) as info:
      loop_config(**{field: value})
    assert f'config field {field}=' in str(info.value)


@pytest.mark.parametrize('data,model,batch,words', [
    (16, 1, 16, 'do not match the 8 available devices'),
    (4, 4, 16, 'do not match the 8 available devices'),
    (8, 1, 12, 'divisible by the mesh data axis (8 devices)'),
    (-1, 3, 24, 'do not match'),
])
def test_mesh_and_batch_are_checked_against_the_devices(data, model, batch, words):
  c = loop_config(**{'mesh.data': data, 'mesh.model': model, 'optim.batch_size': batch})
  with pytest.raises(ValueError, match=words.replace('(', r'\(').replace(')', r'\)')):
    config_lib.validate_devices(c, 8)
  config_lib.validate_devices(loop_config(**{'mesh.data': -1, 'mesh.model': 2,
                                             'optim.batch_size': 16}), 8)


def test_small_eval_pair_file_is_refused_before_training(tmp_path):
  from PIL import Image
  import io
  import pickle
  images = []
  for i in range(8):
    buffer = io.BytesIO()
    Image.new('RGB', (8, 8), (i * 20, 0, 0)).save(buffer, 'PNG')
    images.append(buffer.getvalue())
  pack = tmp_path / 'four.bin'
  pack.write_bytes(pickle.dumps((images, [True, False, True, False])))
  start = time.perf_counter()
  with pytest.raises(ValueError, match='holds 4 pairs'):
    run_loop(loop_config(**{'eval.pairs': (str(pack),)}), str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints')
  assert time.perf_counter() - start < 30


# --- the workdir lock ---------------------------------------------------------------------------

def test_workdir_lock_refuses_a_live_owner_and_ignores_a_dead_one(tmp_path):
  workdir = str(tmp_path)
  holder = subprocess.Popen(
      [sys.executable, '-c',
       'import sys; sys.path.insert(0, sys.argv[1]); from synface_jax import checkpointing\n'
       'with checkpointing.WorkdirLock(sys.argv[2]):\n'
       '  print("locked", flush=True); sys.stdin.read()', str(REPO), workdir],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(checkpointing.WorkdirBusyError, match=f'pid {holder.pid} on '):
      run_loop(loop_config(), workdir)
    holder.kill()  # Dies without releasing anything itself: the kernel drops its flock.
    holder.wait(timeout=30)
    with checkpointing.WorkdirLock(workdir):
      with open(os.path.join(workdir, '.lock')) as f:
        assert f.read().startswith(f'pid {os.getpid()} ')
  finally:
    if holder.poll() is None:
      holder.kill()
      holder.wait()


def test_workdir_lock_is_released_after_a_run_in_process(tmp_path):
  lock = checkpointing.WorkdirLock(str(tmp_path))
  with lock:
    with pytest.raises(checkpointing.WorkdirBusyError):
      checkpointing.WorkdirLock(str(tmp_path)).__enter__()
  with checkpointing.WorkdirLock(str(tmp_path)):
    pass


# --- SIGTERM: finish the step, save, exit 0 -----------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGTERM])
def test_sigterm_saves_and_exits_zero(tmp_path, signum):
  workdir = tmp_path / 'run'
  args = [sys.executable, str(REPO / 'tests' / 'toy_main.py'), '--config=configs/synthetic.py',
          f'--workdir={workdir}', '--config.generator.name=toy', '--config.eval.pairs=()',
          '--config.model.arch=r18', '--config.model.width=0.0625',
          '--config.model.num_features=32', f'--config.model.input_size=({SIZE[0]},{SIZE[1]})',
          '--config.synthetic.num_identities=8', '--config.synthetic.images_per_identity=4',
          f'--config.optim.batch_size={BATCH}', '--config.optim.learning_rate=0.2',
          '--config.num_train_steps=100000',
          '--config.log_every_steps=1', '--config.checkpoint_every_steps=100000',
          '--config.mesh.data=1']
  env = subprocess_env()
  proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  log = []
  try:
    deadline = time.time() + 300
    while time.time() < deadline:
      line = proc.stdout.readline()
      if not line:
        break
      log.append(line)
      if '[3] ' in line and 'train/loss' in line:  # Step 3 is done: training is under way.
        proc.send_signal(signum)
        break
    rest, _ = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
  log = ''.join(log) + rest
  assert proc.returncode == 0, log[-3000:]
  stopped = int(__import__('re').search(r'Stopped by SIGTERM after step (\d+)', log).group(1))
  assert stopped >= 3
  assert _steps(str(workdir)) == [stopped]
  assert not [d for d in os.listdir(workdir / 'checkpoints') if 'tmp' in d]
  assert int(_restore(str(workdir), stopped)['step']) == stopped


def test_the_loop_runs_the_step_it_compiled_ahead(tmp_path, caplog):
  # The step compiles in a background thread while the state is set up; the loop's first call
  # must find that compilation (same shapes, dtypes and shardings), not compile the step again.
  config = loop_config(**{'synthetic.num_identities': 6, 'num_train_steps': 2,
                          'compilation_cache_dir': 'off'})  # Shapes no other test compiles.
  jax.config.update('jax_log_compiles', True)
  try:
    with caplog.at_level('INFO'):
      run_loop(config, str(tmp_path))
  finally:
    jax.config.update('jax_log_compiles', False)
  compiles = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith('Compiling jit(step)')]
  assert len(compiles) == 1, compiles
  assert 'Train step compiled ahead' in caplog.text
