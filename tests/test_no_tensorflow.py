"""The core (models, losses, mixups, the step, generators, benchmark) must work without TensorFlow.

Accelerator machines often have only jax/flax/optax/orbax; TensorFlow is for the input pipeline.
"""
import subprocess
import sys

from conftest import REPO

SCRIPT = """
import sys
for name in ('tensorflow', 'tensorflow_datasets'):
  sys.modules[name] = None  # Any import of these now fails.
import synface_jax
from synface_jax import benchmark, embed, evaluate, generators, losses, mixup, sharding, train
from synface_jax.models import convert, checkpoint
result = benchmark.main(['step', '--arch', 'r18', '--width', '0.0625', '--size', '32x32',
                         '--batch', '8', '--classes', '8', '--steps', '1'])
assert result['images_per_s'] > 0
print('core ran without tensorflow')
"""


def test_core_runs_without_tensorflow():
  proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'core ran without tensorflow' in proc.stdout
