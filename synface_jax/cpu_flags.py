"""XLA:CPU's convolutions on every core: the one XLA flag the package sets (at import).

XLA:CPU (jaxlib 0.10) hands each convolution to YNNPACK, which runs it on one thread; with
`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` it runs them through Eigen on
all cores instead, leaving YNNPACK's other fusions as they are. On 2 cores one 3x3, 64-channel,
56x56, B = 32 convolution's forward and gradients take 157 ms against 388 ms, and the r18 train
step (B = 32) 4.1 s against 5.75 s (docs/results/performance.md). Values stay within float32
rounding. The flag must be in XLA_FLAGS before JAX starts its CPU backend, hence at import.

Left alone when XLA_FLAGS already sets that option (yours wins), and on jaxlib releases other
than the ones it was measured on (an unknown flag stops XLA at start-up).
"""
import importlib.metadata
import logging
import os
import sys

FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
_MEASURED = ((0, 10, 2), (0, 11))  # jaxlib versions [low, high) where the flag exists as used.


def _jaxlib_version():
  try:
    text = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return None
  parts = []
  for piece in text.split('.')[:3]:
    digits = ''.join(c for c in piece if c.isdigit())
    parts.append(int(digits or 0))
  return tuple(parts)


_late = False  # FLAG was added after JAX had started its backends: XLA never read it.


def _backends_started() -> bool:
  if 'jax' not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge
    return bool(getattr(xla_bridge, '_backends', None))
  except ImportError:
    return False


def apply() -> bool:
  """Adds FLAG to XLA_FLAGS unless the option is there already or jaxlib is another release;
  returns whether XLA_FLAGS now carries FLAG. Added after JAX started (JAX used before the
  package was imported), it has no effect: a warning says so and eigen_convolutions() is False."""
  global _late
  flags = os.environ.get('XLA_FLAGS', '')
  if _OPTION not in flags:
    version = _jaxlib_version()
    if version is not None and _MEASURED[0] <= version < _MEASURED[1]:
      os.environ['XLA_FLAGS'] = f'{flags} {FLAG}'.strip()
      _late = _backends_started()
      if _late:
        logging.getLogger(__name__).warning(
            'JAX started before synface_jax was imported: its CPU convolutions stay on one thread; '
            'import synface_jax first, or set XLA_FLAGS=%s', FLAG)
  return eigen_convolutions()


def eigen_convolutions() -> bool:
  """Whether XLA:CPU sends convolutions to Eigen (all cores): FLAG in XLA_FLAGS when JAX started."""
  return FLAG in os.environ.get('XLA_FLAGS', '') and not _late
