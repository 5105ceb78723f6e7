"""SynFace in JAX/Flax: face recognition trained on synthetic faces with identity and domain mixup.

Public API used across the project:

    from synface_jax import SoftLabel, margin_softmax_loss
    from synface_jax import load_embedder      # emb = load_embedder('runs/demo'); emb(images)
"""
__version__ = '0.2.0'

from synface_jax import cpu_flags

cpu_flags.apply()  # Before JAX starts its CPU backend: convolutions on every core.


from synface_jax.losses import margin_softmax_loss  # noqa: E402
from synface_jax.types import SoftLabel  # noqa: E402

__all__ = ['SoftLabel', 'load_embedder', 'margin_softmax_loss']


def __getattr__(name):
  # The embedder (orbax, checkpoints) is imported when first used, not with the package.
  if name == 'load_embedder':
    from synface_jax.embedder import load_embedder
    return load_embedder
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
