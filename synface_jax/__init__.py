"""SynFace in JAX/Flax: face recognition trained on synthetic faces with identity and domain mixup.

Public API used across the project:

    from synface_jax import SoftLabel, margin_softmax_loss
"""
__version__ = '0.2.0'

from synface_jax.losses import margin_softmax_loss
from synface_jax.mixup import SoftLabel

__all__ = ['SoftLabel', 'margin_softmax_loss']
