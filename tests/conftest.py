"""Shared test set-up.

Eight simulated CPU devices are requested before JAX is imported, so the sharding tests can build
meshes; everything else runs on the first device.
"""
import os
import pathlib
import tempfile

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
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


def reference_file(*parts) -> pathlib.Path:
  """Path to a golden file under shared/reference, or skip the test with the reason."""
  path = REFERENCE.joinpath(*parts)
  if not path.exists():
    pytest.skip(f'golden data not available: {path} (set SYNFACE_SHARED to the shared/ folder)')
  return path
