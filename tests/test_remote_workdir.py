"""A gs:// workdir stays in its bucket: checkpoints, model.json and event files go there, the run
resumes from there, and nothing lands in a local ./gs: folder.

The bucket is a local folder behind a fake `gs` filesystem: etils.epath's gs backend, orbax's
TensorStore kvstore for GCS and tensorboardX's gs writer are pointed at it, so orbax takes its own
GCS code paths (commit_success.txt instead of renames) while the bytes stay on this machine.
"""
import os
import subprocess
from unittest import mock

from etils.epath import backend as backend_lib, gpath
import numpy as np
import pytest

from conftest import REPO
from synface_jax import checkpointing
from synface_jax.models import checkpoint as model_checkpoint, model_spec
from conftest import loop_config, run_loop
import toy_main  # noqa: F401  (registers the 'toy' generator)


class _LocalBucket(backend_lib._OsPathBackend):  # pylint: disable=protected-access
  """epath's backend for gs://NAME/... reading and writing ROOT/NAME/... (epath's own local
  backend on the translated paths)."""

  def __init__(self, root):
    self.root = root

  def local(self, path) -> str:
    path = os.fspath(path)
    assert path.startswith('gs://'), path
    return os.path.join(self.root, path[len('gs://'):])

  def url(self, path) -> str:
    return 'gs://' + os.path.relpath(path, self.root)


def _one_path(name):
  def method(self, path, *args, **kwargs):
    return getattr(backend_lib.os_backend, name)(self.local(path), *args, **kwargs)
  return method


def _two_paths(name):
  def method(self, path, dst, *args, **kwargs):
    return getattr(backend_lib.os_backend, name)(self.local(path), self.local(dst), *args,
                                                 **kwargs)
  return method


for _name in ('open', 'exists', 'isdir', 'listdir', 'makedirs', 'mkdir', 'rmtree', 'remove',
              'stat'):
  setattr(_LocalBucket, _name, _one_path(_name))
for _name in ('rename', 'replace', 'copy'):
  setattr(_LocalBucket, _name, _two_paths(_name))
_LocalBucket.glob = lambda self, p: [self.url(x) for x in backend_lib.os_backend.glob(
    self.local(p))]


def _walk(self, top, **kwargs):
  for folder, dirs, files in backend_lib.os_backend.walk(self.local(top), **kwargs):
    yield self.url(folder), dirs, files
_LocalBucket.walk = _walk


class _TensorBoardBucket:
  """tensorboardX's record-writer factory for gs://, writing into the same local bucket."""

  def __init__(self, bucket):
    self.bucket = bucket

  def directory_check(self, path):
    os.makedirs(self.bucket.local(path), exist_ok=True)

  def open(self, path):
    return open(self.bucket.local(path), 'wb')


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  from orbax.checkpoint._src.path import gcs_utils
  from tensorboardX import record_writer
  bucket = _LocalBucket(str(tmp_path / 'buckets'))
  os.makedirs(bucket.root)
  monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, 'gs', bucket)  # pylint: disable=protected-access
  monkeypatch.setattr(gpath, '_is_tf_installed', lambda: False)  # Not TF's GCS client either.
  monkeypatch.setattr(gcs_utils, 'get_kvstore_for_gcs',
                      lambda path: {'driver': 'file', 'path': bucket.local(path)})
  monkeypatch.setattr(gcs_utils, 'is_hierarchical_namespace_enabled', lambda path: False)
  monkeypatch.setattr(gcs_utils, 'rmtree', lambda path, missing_ok=False: bucket.rmtree(path))
  monkeypatch.setitem(record_writer.REGISTERED_FACTORIES, 'gs', _TensorBoardBucket(bucket))
  # A relative ./gs: folder, the old failure, would appear in the working directory.
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  return bucket


def _local_steps(folder):
  return sorted(int(d) for d in os.listdir(folder) if d.isdigit())


@pytest.mark.slow
def test_training_on_a_gs_workdir_writes_resumes_and_falls_back_in_the_bucket(fake_gcs, tmp_path,
                                                                             caplog):
  workdir = 'gs://bucket/runs/demo'
  local = os.path.join(fake_gcs.local(workdir), 'checkpoints')
  summary = run_loop(loop_config(), workdir)  # JAX's cache: the tests' local one.
  assert summary['train/nonfinite_steps'] == 0
  assert _local_steps(local) == [2, 4]
  assert os.path.isfile(os.path.join(local, '4', 'commit_success.txt'))  # orbax's GCS commit.
  assert any(f.startswith('events.') for f in os.listdir(fake_gcs.local(workdir)))
  assert os.listdir(tmp_path / 'cwd') == []  # No ./gs:/bucket/... folder.
  # model.json in the bucket, read back through the gs:// path the tools are given.
  spec = model_spec.read_spec(model_checkpoint.checkpoint_dir(workdir))
  assert spec == model_spec.ModelSpec.from_config(loop_config())
  variables, step = model_checkpoint.load_backbone(workdir)
  assert step == 4 and checkpointing.all_finite(variables)

  # A damaged newest checkpoint in the bucket is moved aside there; the run resumes from the
  # one before it and saves again.
  os.remove(os.path.join(local, '4', '_CHECKPOINT_METADATA'))
  for root, _, files in os.walk(os.path.join(local, '4')):
    for f in files:
      if f == '_METADATA':
        os.remove(os.path.join(root, f))
  caplog.clear()
  with caplog.at_level('INFO'):
    summary = run_loop(loop_config(num_train_steps=6), workdir)
  messages = ' '.join(r.getMessage() for r in caplog.records)
  assert 'Resumed from gs://bucket/runs/demo/checkpoints at step 2' in messages
  assert 'unusable-0' in messages
  assert os.path.isdir(os.path.join(local, '4.unusable-0'))
  assert _local_steps(local) == [2, 4, 6]
  assert np.isfinite(summary['train/loss'])
  assert os.listdir(tmp_path / 'cwd') == []


def test_workdir_paths():
  assert str(checkpointing.workdir_path('gs://b/run')) == 'gs://b/run'
  assert str(checkpointing.workdir_path('rel/run')) == os.path.abspath('rel/run')
  with pytest.raises(ValueError, match='memory://x: unsupported filesystem memory://'):
    checkpointing.workdir_path('memory://x')


# --- launch scripts ------------------------------------------------------------------------------

def _constraint(name):
  with open(os.path.join(REPO, 'constraints.txt')) as f:
    for line in f:
      if line.startswith(f'{name}=='):
        return line.split('==')[1].strip()
  raise AssertionError(f'{name} not in constraints.txt')


def test_tpu_extra_pins_the_tested_jax():
  import tomllib
  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    extras = tomllib.load(f)['project']['optional-dependencies']
  assert extras['tpu'] == [f'jax[tpu]=={_constraint("jax")}']


def test_tpu_pod_script_quotes_config_and_workdir_and_pins_jax(tmp_path):
  """A fake gcloud records the commands the script would run on the workers; running them with
  bash (as ssh does) must give python exactly the values given, spaces and quotes included."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  log = tmp_path / 'commands'
  (bin_dir / 'gcloud').write_text(
      '#!/usr/bin/env bash\n'
      'for a in "$@"; do case "$a" in --command=*) printf "%s\\0" "${a#--command=}" >> '
      f'"{log}";; esac; done\n')
  (bin_dir / 'gcloud').chmod(0o755)
  config = "configs/my run's.py:Mix_2K_10,im=synface"
  workdir = 'gs://bucket/runs/a b*'
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', TPU_NAME='t', ZONE='z',
             CONFIG=config, WORKDIR=workdir)
  subprocess.run(['bash', os.path.join(REPO, 'launch', 'tpu_pod.sh'), '--config.seed=3', 'x y'],
                 env=env, check=True, capture_output=True, cwd=REPO)
  install, train = log.read_text().split('\0')[:2]
  assert f"'jax[tpu]=={_constraint('jax')}'" in install and "-e '.[gcs]'" in install
  # Run the worker command with python replaced by a printer of its arguments.
  fake = tmp_path / 'py'
  fake.mkdir()
  (fake / 'python').write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
  (fake / 'python').chmod(0o755)
  (tmp_path / 'home' / 'synface_jax').mkdir(parents=True)
  out = subprocess.run(['bash', '-c', train], env=dict(
      os.environ, HOME=str(tmp_path / 'home'), PATH=f'{fake}:{os.environ["PATH"]}'),
      check=True, capture_output=True, text=True, cwd=tmp_path).stdout.splitlines()
  assert out == ['-m', 'synface_jax.main', '--distributed', f'--config={config}',
                 f'--workdir={workdir}', '--config.seed=3', 'x y']
