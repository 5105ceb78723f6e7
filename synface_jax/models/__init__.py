"""Face-recognition backbones."""
from synface_jax.models.iresnet import ARCHS, IResNet, iresnet

__all__ = ['ARCHS', 'IResNet', 'iresnet']
