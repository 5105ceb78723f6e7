"""Shared test set-up.

Eight simulated CPU devices are requested before JAX is imported, so the sharding tests can build
meshes; everything else runs on the first device.
"""
import atexit
import contextlib
import os
import pathlib
import re
import shutil
import struct
import tempfile
import zlib

# XLA:CPU spends most of a test's time in LLVM's optimiser; at -O0 a step compiles about a third
# faster (measured on the tiny train step of test_train) and the tests' tiny shapes run as fast.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
os.environ.setdefault('XLA_FLAGS', f'--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Compilation is most of a JAX test's cost: reuse compiled programs across runs.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(os.path.expanduser('~'), '.cache', 'synface_jax', 'jax'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')
# Datasets the tests prepare go to a temporary folder, not the user's ~/tensorflow_datasets; the
# process that made it removes it at exit.
if 'TFDS_DATA_DIR' not in os.environ:
  os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='synface_jax_tfds_')
  atexit.register(shutil.rmtree, os.environ['TFDS_DATA_DIR'], ignore_errors=True)

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
# --- the loop: toy generator, tiny model, in-process ------------------------------------------

def loop_config(**overrides):
  """The tiny set-up on the 'toy' generator (tests/toy_main.py registers it): a 4-step synthetic
  run logging every step and checkpointing every 2; overrides are dotted field names."""
  from synface_jax import config as config_lib
  c = config_lib.base_config()
  c.regime = 'synthetic'
  c.generator.name = 'toy'
  c.model.arch = 'r18'
  c.model.width = 1 / 16
  c.model.num_features = 32
  c.model.input_size = SIZE
  c.synthetic.num_identities = 8
  c.synthetic.images_per_identity = 4
  c.optim.batch_size = BATCH
  c.optim.learning_rate = 0.2
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.num_train_steps = 4
  for key, value in overrides.items():
    target = c
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  config_lib.validate(c)
  return c


def run_loop(config, workdir):
  """The training loop on one device (compiles once for every test that uses it)."""
  import jax
  from synface_jax import train
  return train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])


# --- files in the formats the loaders read ------------------------------------------------------

def _mat_element(kind, payload):
  return struct.pack('<II', kind, len(payload)) + payload + b'\0' * (-len(payload) % 8)


def write_mat(path, arrays, compress=()):
  """A level-5 .mat file of double matrices (a few of them zlib-compressed)."""
  import numpy as np
  body = b''
  for name, value in arrays.items():
    a = np.atleast_2d(np.asarray(value, np.float64))
    content = (_mat_element(6, struct.pack('<II', 6, 0)) + _mat_element(5, struct.pack(f'<{a.ndim}i', *a.shape))
               + _mat_element(1, name.encode()) + _mat_element(9, a.tobytes(order='F')))
    element = struct.pack('<II', 14, len(content)) + content
    if name in compress:  # A compressed element is not padded to 8 bytes.
      element = struct.pack('<II', 15, len(zipped := zlib.compress(element))) + zipped
    body += element
  header = b'MATLAB 5.0 MAT-file, test'.ljust(116, b' ') + b'\0' * 8 + struct.pack('<H', 0x0100) + b'IM'
  with open(path, 'wb') as f:
    f.write(header + body)


def tiny_bfm(rows=28, cols=28):
  """A face-like half ellipsoid in the BFM_model_front.mat layout (1-based tri and keypoints)."""
  import numpy as np
  y, x = np.meshgrid(np.linspace(1.0, -1.2, rows), np.linspace(-0.75, 0.75, cols), indexing='ij')
  z = 0.9 * np.sqrt(np.clip(1 - (x / 0.8) ** 2 - ((y + 0.1) / 1.2) ** 2, 0.02, 1))
  verts = np.stack([x, y, z], -1).reshape(-1, 3)
  idx = np.arange(rows * cols).reshape(rows, cols)
  tri = np.concatenate([np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:]], -1).reshape(-1, 3),
                        np.stack([idx[:-1, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 3)])
  nearest = lambda px, py: int(np.argmin((verts[:, 0] - px) ** 2 + (verts[:, 1] - py) ** 2))
  keypoints = np.zeros(68, int)
  keypoints[36:42] = [nearest(-0.31 + d, 0.0) for d in (-0.05, -0.03, 0.0, 0.03, 0.05, 0.0)]
  keypoints[42:48] = [nearest(0.31 + d, 0.0) for d in (-0.05, -0.03, 0.0, 0.03, 0.05, 0.0)]
  keypoints[30], keypoints[48], keypoints[54] = nearest(0, -0.36), nearest(-0.25, -0.72), nearest(0.25, -0.72)
  rng = np.random.default_rng(0)
  n = verts.size
  return {'meanshape': verts.reshape(1, -1), 'idBase': 0.01 * rng.normal(size=(n, 6)),
          'exBase': 0.01 * rng.normal(size=(n, 4)), 'meantex': np.tile([[200.0, 150.0, 130.0]], (1, rows * cols)),
          'texBase': 5.0 * rng.normal(size=(n, 3)), 'tri': tri + 1, 'keypoints': keypoints[None] + 1}


# Identity image folders: FOLDER_SIZE x FOLDER_SIZE PNGs of seeded random pixels.
FOLDER_SIZE = 16


def folder_pixels(seed):
  import numpy as np
  return np.random.default_rng(seed).integers(0, 256, (FOLDER_SIZE, FOLDER_SIZE, 3), dtype=np.uint8)


def make_folder(root, counts, fmt='PNG'):
  """Identity folders id000, id001, ... with counts[i] PNGs, pixels folder_pixels(100 i + j)."""
  from PIL import Image
  for i, n in enumerate(counts):
    os.makedirs(root / f'id{i:03d}', exist_ok=True)
    for j in range(n):
      Image.fromarray(folder_pixels(100 * i + j)).save(root / f'id{i:03d}' / f'{j:03d}.png', fmt)
  return root


# --- IResNet checkpoints -----------------------------------------------------------------------

IRESNET_REF = 'insightface_synface'


def random_torch_state_dict(arch, width, input_hw, seed=0):
  """insightface-layout state dict with random values in the shapes of our model's variables."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from synface_jax.models import convert, iresnet
  model = iresnet(arch, width=width)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_hw, 3)), train=False))
  rng = np.random.default_rng(seed)
  state_dict = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(dict(shapes))[0]:
    names = [p.key for p in path]
    collection, modules, leaf_name = names[0], tuple(names[1:-1]), names[-1]
    key = f'{convert.torch_key(modules)}.{convert.LEAF_NAMES[(collection, leaf_name)]}'
    shape = leaf.shape
    if leaf_name == 'kernel':
      shape = shape[::-1] if modules == ('fc',) else (shape[3], shape[2], shape[0], shape[1])
    if leaf_name in ('var', 'scale', 'alpha'):
      value = rng.uniform(0.5, 1.5, shape)
    else:
      value = rng.normal(0.0, 0.1, shape)
    state_dict[key] = value.astype(np.float32)
  state_dict['features.weight'] = rng.uniform(0.5, 1.5, (512,)).astype(np.float32)
  state_dict['bn1.num_batches_tracked'] = np.array(3, np.int64)
  return state_dict
