"""The loop's TensorBoard writer (tensorboardX, no TensorFlow) and progress lines."""
import os

import numpy as np
import pytest

from conftest import loop_config
from synface_jax import writers


def _events(logdir):
  event_accumulator = pytest.importorskip('tensorboard.backend.event_processing.event_accumulator')
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={'images': 0, 'scalars': 0})
  acc.Reload()
  return acc


def test_event_file_has_scalars_images_histograms_and_numeric_hparams(tmp_path):
  writer = writers.create_default_writer(str(tmp_path))
  writer.write_hparams({'optim.batch_size': 64, 'optim.learning_rate': np.float32(0.5),
                        'im.enabled': True, 'regime': 'synthetic', 'model.input_size': (112, 96)})
  writer.write_scalars(3, {'train/loss': 1.5, 'train/accuracy': np.float32(0.25)})
  writer.write_scalars(6, {'train/loss': 0.75})
  writer.write_images(6, {'batch': np.zeros((4, 8, 8, 3), np.uint8)})
  writer.write_histograms(6, {'cos': np.linspace(-1, 1, 100)})
  writer.close()
  acc = _events(tmp_path)
  assert [(e.step, e.value) for e in acc.Scalars('train/loss')] == [(3, 1.5), (6, 0.75)]
  assert acc.Scalars('train/accuracy')[0].value == 0.25
  assert acc.Images('batch')[0].step == 6 and acc.Histograms('cos')[0].step == 6
  hparams = _hparams(acc)
  assert hparams['optim.batch_size'].number_value == 64
  assert hparams['optim.learning_rate'].number_value == 0.5
  assert hparams['im.enabled'].bool_value is True
  assert hparams['regime'].string_value == 'synthetic'
  assert hparams['model.input_size'].string_value == '(112, 96)'


def _hparams(acc):
  """The hparams an event file's session-start record holds, by name."""
  from tensorboard.plugins.hparams import plugin_data_pb2
  content = acc.PluginTagToContent('hparams')['_hparams_/session_start_info']
  return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams


def test_just_logging_writes_no_files(tmp_path):
  writer = writers.create_default_writer(str(tmp_path), just_logging=True)
  writer.write_scalars(1, {'x': 1.0})
  writer.close()
  assert list(tmp_path.iterdir()) == []


def test_progress_rate_excludes_timed_parts(monkeypatch):
  now = [0.0]
  monkeypatch.setattr(writers.time, 'monotonic', lambda: now[0])
  report = writers.ReportProgress(num_train_steps=100, every_steps=10)
  assert report(1) is None           # Starts the clock (the first step compiles).
  now[0] = 9.0
  assert report(5) is None           # Not a reporting step.
  with report.timed('eval'):
    now[0] += 6.0                    # 6 s of evaluation between the reports...
  now[0] = 24.0                      # ...and 18 s of training for steps 2..10.
  message = report(10)
  assert message.startswith('step 10/100 (10.0%), 0.50 steps/s')
  # 90 steps at 2 s plus evaluation's share so far (6 s over 9 steps).
  assert 'ETA 0:04:00' in message and '(eval 0:00:06)' in message
  now[0] = 300.0
  assert report(100).startswith('step 100/100 (100.0%)')


# ---------------------------------------------------------------------------------------------
# A training run's TensorBoard: numeric hparams, the batch it trained on, evaluation pictures.
# ---------------------------------------------------------------------------------------------

SIZE = 32


class _Toy:
  """The tests' toy generator under the registry's calling convention."""

  def __new__(cls, image_size=(SIZE, SIZE), num_identities=16, seed=0):
    from toy_generator import ToyGenerator
    generator = ToyGenerator(image_size=image_size, seed=seed)
    generator.num_identities = num_identities  # Held-out evaluation identities start here.
    return generator


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  from synface_jax import generators, train
  generators.register('test_toy')(_Toy)
  c = loop_config(**{
      'generator.name': 'test_toy', 'synthetic.num_identities': 16, 'im.enabled': True,
      'log_every_steps': 2, 'checkpoint_every_steps': 4, 'log_batch_images': 4,
      'eval.pairs': ('synthetic:20',), 'eval.protocols': ('synface',), 'profile_steps': (2, 3)})
  workdir = tmp_path_factory.mktemp('run')
  train.train_and_evaluate(c, str(workdir))
  return workdir, _events(workdir)


def test_run_writes_numeric_hparams_and_the_batch_it_trained_on(run):
  workdir, acc = run
  hparams = _hparams(acc)
  assert hparams['optim.batch_size'].number_value == 8
  assert hparams['model.width'].number_value == 0.0625
  assert hparams['im.enabled'].bool_value is True
  assert hparams['regime'].string_value == 'synthetic'
  assert hparams['model.input_size'].string_value == '(32, 32)'
  batch = acc.Images('train/batch')
  assert [e.step for e in batch] == [2, 4]
  from PIL import Image
  import io
  grid = np.asarray(Image.open(io.BytesIO(batch[0].encoded_image_string)))
  # One row of 4 faces (enlarged to 64 pixels, 80 pixels of row name, a caption strip).
  assert grid.shape[:2] == (64 + 12 + 2, 80 + 4 * 66)
  texts = acc.Tensors('train/batch/text_summary')
  phi = texts[0].tensor_proto.string_val[0].decode()
  assert phi.startswith('phi ') and len(phi.split(',')) == 4


def test_run_writes_evaluation_pictures_and_a_profile(run):
  workdir, acc = run
  tags = acc.Tags()
  assert {'eval/roc/synface', 'eval/synthetic/synface/histogram'} <= set(tags['images'])
  assert {'eval/synthetic/synface/genuine', 'eval/synthetic/synface/impostor'} <= set(
      tags['histograms'])
  assert any(files for _, _, files in os.walk(workdir / 'profile'))


def test_compilation_cache_follows_the_config(tmp_path):
  import jax
  from synface_jax import config as config_lib, train
  c = config_lib.base_config()
  before = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
  try:
    jax.config.update('jax_compilation_cache_dir', None)
    assert train.compilation_cache(c, str(tmp_path)) == str(tmp_path / '.jax_cache')
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / '.jax_cache')
    assert train.compilation_cache(c, 'elsewhere') == str(tmp_path / '.jax_cache')  # JAX's own.
    c.compilation_cache_dir = str(tmp_path / 'cache')
    assert train.compilation_cache(c, str(tmp_path)) == str(tmp_path / 'cache')
    c.compilation_cache_dir = 'off'
    assert train.compilation_cache(c, str(tmp_path)) is None
    assert not jax.config.jax_enable_compilation_cache
  finally:
    jax.config.update('jax_compilation_cache_dir', before[0])
    jax.config.update('jax_enable_compilation_cache', before[1])


def test_preview_is_the_input_part_of_the_step():
  """The pictured parts are the step's own: same key derivation, domain mixup with psi."""
  import jax
  import jax.numpy as jnp
  from synface_jax import config as config_lib, mixup, seeds, sharding, train, train_step
  from synface_jax.generators import sampling
  from toy_generator import ToyGenerator
  c = config_lib.base_config()
  c.regime = 'mixed'
  c.model.input_size = (SIZE, SIZE)
  c.synthetic.num_identities = 8
  c.synthetic.images_per_identity = 4
  c.im.enabled = c.dm.enabled = c.dm.per_example = True
  c.optim.batch_size = 8
  mesh = sharding.make_mesh(-1, 1)
  generator = ToyGenerator(image_size=(SIZE, SIZE))
  params = generator.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  real = {'image': rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32),
          'label': np.arange(8, dtype=np.int32)}
  preview = train_step.make_batch_preview(c, mesh, generator=generator, num_real_images=32, count=3)
  key = jax.random.key(5)
  parts = jax.device_get(preview(params, real, key, 7))
  assert sorted(parts) == ['mixed', 'phi', 'psi', 'real', 'synthetic']
  k_syn = jax.random.split(jax.random.fold_in(key, 7), 3)[0]
  # Compiled: op by op, each of the batch's many small operations would be compiled on its own.
  x_syn, label = jax.jit(lambda k: sampling.synthetic_batch(
      generator, params, k, 8, 8, 4, mixup.make_sampler(c.im.phi),
      draw_seed=seeds.seed(c.seed, 'draws'), augment_options=None))(k_syn)
  np.testing.assert_allclose(parts['synthetic'], x_syn[:3], atol=1e-6)
  np.testing.assert_allclose(parts['phi'], label.weights[:3, 0], atol=1e-6)
  np.testing.assert_allclose(parts['real'], real['image'][:3])
  psi = parts['psi'][:, None, None, None]
  np.testing.assert_allclose(parts['mixed'], psi * x_syn[:3] + (1 - psi) * real['image'][:3],
                             atol=1e-5)
  grid, text = train.batch_picture(parts)
  assert grid.shape == (3 * (64 + 12 + 2), 80 + 3 * 66, 3) and 'phi ' in text and 'psi ' in text
  del jnp
