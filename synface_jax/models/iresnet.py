"""IResNet face-recognition backbones in the layout of insightface's arcface_torch.

Submodule names follow insightface's state_dict keys one to one (``layer1.0.bn1`` is
``layer1_0/bn1``, ``downsample.0``/``downsample.1`` are ``downsample_conv``/``downsample_bn``),
so a converted checkpoint maps key by key; see ``synface_jax.models.convert``.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from synface_jax.models import conv as conv_lib

ARCHS = {
    'r18': (2, 2, 2, 2),
    'r34': (3, 4, 6, 3),
    'r50': (3, 4, 14, 3),
    'r100': (3, 13, 30, 3),
    'r200': (6, 26, 60, 6),
}

STAGE_CHANNELS = (64, 128, 256, 512)
STEM_CHANNELS = 64
BN_MOMENTUM = 0.9  # Flax convention; torch's momentum 0.1.
BN_EPSILON = 1e-5
TOTAL_STRIDE = 16

# insightface initialises every conv weight from N(0, 0.1) and the Linear layer like torch does.
conv_init = nn.initializers.normal(stddev=0.1)
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')

ModuleDef = Callable[..., nn.Module]


def scaled_channels(channels: int, width: float) -> int:
  """Channel count of a layer with `channels` at full width, scaled by `width`, at least 1."""
  return max(1, int(round(channels * width)))


class PReLU(nn.Module):
  """Parametric ReLU with one learned negative slope per channel (last axis)."""
  init_alpha: float = 0.25
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    alpha = self.param('alpha', nn.initializers.constant(self.init_alpha), (x.shape[-1],),
                       self.param_dtype)
    return jnp.where(x >= 0, x, alpha.astype(x.dtype) * x)


class Conv(nn.Module):
  """Bias-free NHWC convolution with a 'kernel' [kh, kw, in, out] (nn.Conv's parameter layout),
  computed by `synface_jax.models.conv` ('auto': a faster gradient on CPU, XLA's own elsewhere)."""
  features: int
  kernel_size: int
  strides: int = 1
  padding: int = 0
  dtype: Any = jnp.float32
  kernel: str = 'auto'

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    w = self.param('kernel', conv_init, (k, k, x.shape[-1], self.features), jnp.float32)
    pads = ((self.padding, self.padding),) * 2
    x = jnp.asarray(x, self.dtype)
    return conv_lib.conv(x, w.astype(self.dtype), (self.strides,) * 2, pads, self.kernel)


class IBasicBlock(nn.Module):
  """BN -> conv3x3 -> BN -> PReLU -> conv3x3 (strided) -> BN, plus shortcut; no activation after.

  `conv` and `norm` are the network's Conv and BatchNorm with their shared settings bound
  (dtype, kernel, train mode, momentum, epsilon), as IResNet builds them once."""
  features: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  downsample: bool = False

  @nn.compact
  def __call__(self, x):
    y = self.norm(name='bn1')(x)
    y = self.conv(self.features, 3, 1, 1, name='conv1')(y)
    y = self.norm(name='bn2')(y)
    y = PReLU(name='prelu')(y)
    y = self.conv(self.features, 3, self.strides, 1, name='conv2')(y)
    y = self.norm(name='bn3')(y)
    shortcut = x
    if self.downsample:
      shortcut = self.conv(self.features, 1, self.strides, 0, name='downsample_conv')(x)
      shortcut = self.norm(name='downsample_bn')(shortcut)
    return y + shortcut


class IResNet(nn.Module):
  """insightface IResNet: maps NHWC faces to float32 [B, num_features] embeddings (not normalised).

  Attributes:
    stage_sizes: blocks per stage, e.g. ARCHS['r50'].
    width: channel multiplier (1.0 is the published model; small values give tiny test models).
    num_features: embedding size.
    dropout: dropout rate before the embedding layer (insightface's default is 0).
    dtype: compute dtype; params are always float32, and the embedding layer runs in float32.
    conv_kernel: how convolutions are computed (`synface_jax.models.conv`): 'auto' (a custom
      gradient on CPU, XLA's own on GPU/TPU), 'custom' or 'xla'. Values and parameters are the same.
  """
  stage_sizes: Sequence[int]
  width: float = 1.0
  num_features: int = 512
  dropout: float = 0.0
  dtype: Any = jnp.float32
  conv_kernel: str = 'auto'

  @nn.compact
  def __call__(self, x, train: bool):
    height, width = x.shape[-3:-1]
    if height % TOTAL_STRIDE or width % TOTAL_STRIDE:
      raise ValueError(f'IResNet input height and width must be divisible by {TOTAL_STRIDE}, '
                       f'got {height}x{width}')
    conv = functools.partial(Conv, dtype=self.dtype, kernel=self.conv_kernel)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=BN_MOMENTUM,
                             epsilon=BN_EPSILON, dtype=self.dtype, param_dtype=jnp.float32)
    x = jnp.asarray(x, self.dtype)
    x = conv(scaled_channels(STEM_CHANNELS, self.width), 3, 1, 1, name='conv1')(x)
    x = norm(name='bn1')(x)
    x = PReLU(name='prelu')(x)
    for stage, (num_blocks, channels) in enumerate(zip(self.stage_sizes, STAGE_CHANNELS)):
      for block in range(num_blocks):
        x = IBasicBlock(scaled_channels(channels, self.width), conv, norm,
                        strides=2 if block == 0 else 1, downsample=block == 0,
                        name=f'layer{stage + 1}_{block}')(x)
    x = norm(name='bn2')(x)
    self.sow('intermediates', 'bn2_out', x)
    # As in insightface, the flatten/Linear/BatchNorm1d head runs in float32.
    x = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
    x = nn.Dropout(self.dropout, deterministic=not train, name='dropout')(x)
    x = nn.Dense(self.num_features, dtype=jnp.float32, param_dtype=jnp.float32,
                 kernel_init=dense_init, name='fc')(x)
    # insightface freezes this BatchNorm1d's scale at 1, so it has none here.
    x = norm(use_scale=False, dtype=jnp.float32, name='features')(x)
    return x


def iresnet(arch: str, **kwargs) -> IResNet:
  """IResNet of a named depth ('r18', 'r34', 'r50', 'r100', 'r200'); kwargs go to IResNet."""
  if arch not in ARCHS:
    raise ValueError(f'unknown IResNet arch {arch!r}; valid: {", ".join(ARCHS)}')
  return IResNet(stage_sizes=ARCHS[arch], **kwargs)
