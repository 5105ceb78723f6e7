"""The loop's TensorBoard writer (tensorboardX, no TensorFlow) and progress lines."""
import numpy as np
import pytest

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
  from tensorboard.plugins.hparams import plugin_data_pb2
  content = acc.PluginTagToContent('hparams')['_hparams_/session_start_info']
  hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
  assert hparams['optim.batch_size'].number_value == 64
  assert hparams['optim.learning_rate'].number_value == 0.5
  assert hparams['im.enabled'].bool_value is True
  assert hparams['regime'].string_value == 'synthetic'
  assert hparams['model.input_size'].string_value == '(112, 96)'


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
