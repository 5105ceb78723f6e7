"""Trains and evaluates a face-recognition model.

    python -m synface_jax.main --config=configs/real.py:Real_2K_10 --workdir=runs/real \
        --config.real.path=/data/casia

Rerunning the same command resumes from the latest usable checkpoint in --workdir. Exit status:
0 when training finished or was stopped by SIGTERM / SIGINT (a checkpoint is saved first), 2 for a
bad config or a workdir in use by another run, 3 when training kept producing NaN / inf.
"""
import json
import logging as pylogging
import os
import re

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging  # noqa: E402
import jax  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from synface_jax import checkpointing, cli, config as config_lib, train  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Where checkpoints and TensorBoard metrics go.')
flags.DEFINE_bool('distributed', False,
                  'Join a multi-process run with jax.distributed.initialize(); TPU pods, SLURM and '
                  'Open MPI set it up from the environment, else give the three flags below.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (implies --distributed).')
flags.DEFINE_integer('num_processes', None, 'Number of processes in the run.')
flags.DEFINE_integer('process_id', None, 'This process, 0 .. num_processes - 1.')
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file, optionally with :ARG.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(pylogging.Filter):
  """Keeps the libraries' INFO chatter (checkpoint I/O, backend probing) out of the progress log."""
  NOISY = ('/orbax/', '/jax/_src/', '/etils/')

  def filter(self, record):
    return record.levelno >= pylogging.WARNING or not any(n in record.pathname for n in self.NOISY)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  pylogging.captureWarnings(True)  # Data warnings (skipped files, labels) go to absl's log files too.
  config = FLAGS.config
  try:
    config_lib.validate(config)
  except ValueError as e:
    _fail(f'config: {e}', 2)
  if FLAGS.distributed or FLAGS.coordinator_address:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  # tf.data must not grab an accelerator that JAX needs. TensorFlow is only there for real data
  # (a synthetic run does not import it: that saves seconds of start-up).
  if config.regime != 'synthetic':
    try:
      import tensorflow as tf
    except ImportError:
      _fail(f"config field regime={config.regime!r}: real data needs TensorFlow: pip install "
            "'synface_jax[data]'", 2)
    tf.config.set_visible_devices([], 'GPU')
  logging.info('JAX process %d / %d, devices: %s', jax.process_index(), jax.process_count(),
               jax.devices())
  try:
    workdir = checkpointing.workdir_path(FLAGS.workdir)  # gs://... stays a bucket path.
    workdir.mkdir(parents=True, exist_ok=True)
  except (ValueError, OSError, ImportError) as e:  # ImportError: gs:// without gcsfs.
    _fail(f'--workdir: {e}', 2)
  if jax.process_index() == 0:  # The resolved config, for the tools that read a run later.
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  try:
    summary = train.train_and_evaluate(config, FLAGS.workdir)
  except checkpointing.WorkdirBusyError as e:
    _fail(str(e), 2)
  except checkpointing.NonFiniteError as e:
    _fail(str(e), 3)
  except (ValueError, OSError) as e:  # Bad data, pair sets or paths, named by the message.
    logging.debug('traceback', exc_info=True)
    _fail(str(e), 2)
  if jax.process_index() == 0:
    path = workdir / 'results.json'
    path.write_text(json.dumps(summary, indent=2, sort_keys=True))
    print(f'results: {path}')
    print(summary_line(summary))


def summary_line(summary: dict) -> str:
  """The run's end in one line: train loss and accuracy, then each evaluated set's accuracy."""
  parts = [f'{k.split("/")[-1]} {summary[k]:.4f}' for k in ('train/loss', 'train/accuracy')
           if k in summary]
  parts += [f'{k[len("eval/"):-len("/accuracy")]} {v:.4f}' for k, v in sorted(summary.items())
            if k.startswith('eval/') and k.endswith('/accuracy')]
  return 'final: ' + ', '.join(parts)


def _fail(message: str, status: int):
  """One line on stderr (`cli.fail`), no traceback, and the exit status; in the log files too."""
  if FLAGS.is_parsed() and FLAGS.log_dir:
    logging.error('%s', message)
  cli.fail(message, status)


def parse_flags(argv):
  """absl's flag parsing, with a bad flag or config file told in one line (exit 2): the flag and
  what is wrong with it, without the traceback config_flags wraps around a config file's error."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    cli.fail(lines[0] if len(lines) == 1 else f'{lines[0]} {lines[-1]}')
  except (AttributeError, KeyError) as e:  # config_flags on --config.FIELD=VALUE of no field.
    text = str(e).replace('\\n', ' ').replace("\\'", "'")
    name, hint = re.search(r"'(\w+)'", text), re.search(r'Did you mean[^?]*\?', text)
    cli.fail(f'--config.FIELD=VALUE: no config field {name.group(1) if name else text!r}'
             + (f'; {hint.group(0)}' if hint else ''))
  except Exception as e:  # pylint: disable=broad-except  # A config file missing or failing to run.
    cli.fail(' '.join(str(e).split()))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
