"""Shared test set-up.

Eight simulated CPU devices are requested before JAX is imported, so the sharding tests can build
meshes; everything else runs on the first device.
"""
import contextlib
import os
import pathlib
import re
import tempfile

# XLA:CPU spends most of a test's time in LLVM's optimiser; at -O0 a step compiles about a third
# faster (measured on the tiny train step of test_train) and the tests' tiny shapes run as fast.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
os.environ.setdefault('XLA_FLAGS', f'--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Compilation is most of a JAX test's cost: reuse compiled programs across runs.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(os.path.expanduser('~'), '.cache', 'synface_jax', 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
# Datasets the tests prepare go to a temporary folder, not the user's ~/tensorflow_datasets.
os.environ.setdefault('TFDS_DATA_DIR', tempfile.mkdtemp(prefix='synface_jax_tfds_'))

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('SYNFACE_SHARED', REPO.parent / 'shared'))
REFERENCE = SHARED / 'reference'


def subprocess_env(**extra):
  """The environment of a command a test runs: one CPU device, the tests' compiler flags and
  compilation cache, unbuffered output."""
  return dict(os.environ, XLA_FLAGS=TEST_XLA_FLAGS, PYTHONUNBUFFERED='1', **extra)


def reference_file(*parts) -> pathlib.Path:
  """Path to a golden file under shared/reference, or skip the test with the reason."""
  path = REFERENCE.joinpath(*parts)
  if not path.exists():
    pytest.skip(f'golden data not available: {path} (set SYNFACE_SHARED to the shared/ folder)')
  return path


VERIFICATION = 'insightface_synface'  # The verification goldens under shared/reference.


@pytest.fixture(scope='module')
def verification_golden():
  """Embeddings, labels and every figure of the two reference protocols on them."""
  import numpy as np
  with np.load(reference_file(VERIFICATION, 'verification.npz')) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='module')
def tiny_pairs_decoded():
  """(images, issame) the reference decoded from the tiny .bin packs."""
  import numpy as np
  with np.load(reference_file(VERIFICATION, 'tiny_pairs_decoded.npz')) as data:
    return data['images'], data['issame']


def write_tiny_checkpoint(root, hw, seed, width=1 / 16):
  """A training-workdir layout under root (checkpoints/ with model.json) holding a random r18 at
  input size hw; returns its Flax variables."""
  from synface_jax.models import convert, model_spec
  from test_iresnet import random_torch_state_dict
  state = random_torch_state_dict('r18', width, hw, seed=seed)
  variables = convert.torch_to_flax(state, 'r18', width, hw)
  convert.save_backbone(pathlib.Path(root) / 'checkpoints', variables)
  model_spec.ModelSpec('r18', width, input_size=hw).write(pathlib.Path(root) / 'checkpoints')
  return variables


def raw_embedder(variables, width=1 / 16):
  """Independent of the embedder: the r18 applied to normalised pixels, float64, not L2-normalised."""
  import jax
  import numpy as np
  from synface_jax.models import iresnet
  apply = jax.jit(lambda v, x: iresnet('r18', width=width).apply(v, x, train=False))
  return lambda x: np.asarray(apply(variables, x), np.float64)


@contextlib.contextmanager
def exits_with_one_line(capsys, pattern):
  """The command inside ends with SystemExit(2) and exactly one stderr line matching `pattern`
  (no traceback)."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    yield
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2, (exit_info.value.code, err)
  assert len(err.splitlines()) == 1 and re.search(pattern, err), err


# The tiny training set-up the step, loop and multi-process tests share: a 1/16-width r18 on
# 32x32 faces, batch 8, 8 synthetic and 8 real identities.
SIZE = (32, 32)
BATCH = 8
NUM_SYN = 8
NUM_REAL = 8


def tiny_config(regime='mixed'):
  """The base config shrunk to the tiny set-up; identity mixup on with synthetic faces, domain
  mixup on in the mixed regime."""
  from synface_jax import config as config_lib
  c = config_lib.base_config()
  c.regime = regime
  c.model.arch = 'r18'
  c.model.width = 1 / 16
  c.model.input_size = SIZE
  c.synthetic.num_identities = NUM_SYN
  c.synthetic.images_per_identity = 4
  c.real.path = '/unused'
  c.im.enabled = regime != 'real'
  c.dm.enabled = regime == 'mixed'
  c.optim.batch_size = BATCH
  c.optim.learning_rate = 0.2
  return c


def tiny_model():
  from synface_jax.models import IResNet
  return IResNet(stage_sizes=(1, 1, 1, 1), width=1 / 16, num_features=32)


def real_batch(seed=0):
  """A random real batch of the tiny set-up: images in [-1, 1] and labels < NUM_REAL."""
  import numpy as np
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (BATCH, *SIZE, 3)).astype(np.float32),
          'label': rng.integers(0, NUM_REAL, BATCH).astype(np.int32)}


def tiny_experiment(config, mesh_shape=(1, 1), *, real_classes=NUM_REAL, model=None,
                    schedule=None):
  """The run of `config` built as the loop builds it (Experiment.from_config), on a (data, model)
  mesh of the first devices, with tiny_model, the toy generator and a real set of `real_classes`
  identities x 8 images (random batches stand in for it: `real_batch`)."""
  import jax
  from synface_jax import experiment, sharding
  from toy_generator import ToyGenerator
  mesh = sharding.make_mesh(*mesh_shape, devices=jax.devices()[:mesh_shape[0] * mesh_shape[1]])
  return experiment.Experiment.from_config(
      config, mesh, real=experiment.RealCounts(real_classes, real_classes * 8),
      model=model or tiny_model(), generator=ToyGenerator(SIZE), schedule=schedule)
