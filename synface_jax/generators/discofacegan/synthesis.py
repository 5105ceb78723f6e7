"""The StyleGAN1 synthesis network as DiscoFaceGAN builds it: dlatents [B, L, D] -> images NHWC.

Parameter tree (stored values of the official checkpoint, unscaled; names as the official
variables, the resolution blocks as '4x4', '8x8', ...):

    noise{i}                       [H, W]        stored noise map of layer i (official [1, 1, H, W])
    4x4/Const/const                [4, 4, C]     learned constant (official [1, C, 4, 4])
    {R}x{R}/{Conv,Conv0_up,Conv1}/weight   [3, 3, I, O]
    <layer>/Noise/weight [C], <layer>/bias [C], <layer>/StyleMod/{weight [D, 2C], bias [2C]}
    ToRGB_lod0/{weight [1, 1, C, 3], bias [3]}

Layer i: (conv or up-sampling conv + blur), + noise_i * Noise/weight, + bias, leaky ReLU,
instance norm, style modulation x * (s[:C] + 1) + s[C:] with s = w_i @ StyleMod/weight /
sqrt(D) + StyleMod/bias. Layer 0 is the constant, layer 1 the 4x4 conv, then Conv0_up and Conv1
of each resolution. Up-sampling is nearest x2 then 3x3 conv; from 128 px the official code uses
a fused transposed conv, which equals the same with the kernel rotated by 180 degrees.
"""
import math

import flax.linen as nn
import jax.numpy as jnp

from synface_jax.generators.discofacegan import layers
from synface_jax.generators.discofacegan.arch import Arch


class Noise(nn.Module):
  """Adds a stored noise map [H, W] times a learned per-channel strength."""

  @nn.compact
  def __call__(self, x, noise):
    weight = self.param('weight', nn.initializers.zeros, (x.shape[-1],))
    return x + (noise[None, :, :, None] * weight).astype(x.dtype)


class StyleMod(nn.Module):
  """x * (s[:C] + 1) + s[C:] with s an equalized dense (gain 1) of the layer's w."""

  @nn.compact
  def __call__(self, x, w):
    channels = x.shape[-1]
    weight = self.param('weight', nn.initializers.normal(1.0), (w.shape[-1], 2 * channels))
    bias = self.param('bias', nn.initializers.zeros, (2 * channels,))
    style = jnp.dot(w.astype(jnp.float32), weight / math.sqrt(w.shape[-1])) + bias
    style = style.astype(x.dtype)[:, None, None, :]
    return x * (style[..., :channels] + 1) + style[..., channels:]


class StyledLayer(nn.Module):
  """One synthesis layer: its convolution ('const', 'conv', 'up' or 'fused_up') and epilogue."""
  channels: int
  kind: str
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, w, noise):
    if self.kind == 'const':
      const = self.param('const', nn.initializers.ones, (4, 4, self.channels))
      x = jnp.broadcast_to(const.astype(self.dtype), (w.shape[0], 4, 4, self.channels))
    else:
      fan_in = 9 * x.shape[-1]
      weight = self.param('weight', nn.initializers.normal(1.0),
                          (3, 3, x.shape[-1], self.channels))
      kernel = weight * (math.sqrt(2.0) / math.sqrt(fan_in))
      if self.kind == 'conv':
        x = layers.conv(x, kernel)
      else:
        if self.kind == 'fused_up':
          kernel = kernel[::-1, ::-1]
        x = layers.blur(layers.upsample_conv(x, kernel))
    x = Noise(name='Noise')(x, noise)
    bias = self.param('bias', nn.initializers.zeros, (self.channels,))
    x = layers.leaky_relu(x + bias.astype(x.dtype))
    x = layers.instance_norm(x)
    return StyleMod(name='StyleMod')(x, w)


class Block(nn.Module):
  """The two layers of one resolution (4x4: Const and Conv; above: Conv0_up and Conv1)."""
  log2_res: int
  channels: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, w0, w1, noise0, noise1):
    if self.log2_res == 2:
      first = StyledLayer(self.channels, 'const', self.dtype, name='Const')
      second = StyledLayer(self.channels, 'conv', self.dtype, name='Conv')
    else:
      up = 'fused_up' if Arch.fused_upsampling(self.log2_res) else 'up'
      first = StyledLayer(self.channels, up, self.dtype, name='Conv0_up')
      second = StyledLayer(self.channels, 'conv', self.dtype, name='Conv1')
    return second(first(x, w0, noise0), w1, noise1)


class ToRGB(nn.Module):
  """1x1 equalized conv (gain 1) + bias to the output channels."""
  num_channels: int

  @nn.compact
  def __call__(self, x):
    weight = self.param('weight', nn.initializers.normal(1.0),
                        (1, 1, x.shape[-1], self.num_channels))
    bias = self.param('bias', nn.initializers.zeros, (self.num_channels,))
    kernel = (weight[0, 0] / math.sqrt(x.shape[-1])).astype(x.dtype)
    return jnp.dot(x, kernel).astype(jnp.float32) + bias


def noise_shape(layer: int) -> tuple[int, int]:
  """[H, W] of layer i's stored noise map: 2^(i // 2 + 2) square."""
  size = 2 ** (layer // 2 + 2)
  return size, size


class Synthesis(nn.Module):
  """dlatents [B, num_layers, dlatent_size] -> raw images [B, R, R, num_channels] float32."""
  arch: Arch
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, dlatents):
    arch = self.arch
    noise = [self.param(f'noise{i}', nn.initializers.normal(1.0), noise_shape(i))
             for i in range(arch.num_layers)]
    x = None
    for r in range(2, arch.log2_resolution + 1):
      i = 2 * r - 4
      block = Block(r, arch.block_channels(r), self.dtype, name=f'{2 ** r}x{2 ** r}')
      x = block(x, dlatents[:, i], dlatents[:, i + 1], noise[i], noise[i + 1])
    return ToRGB(arch.num_channels, name='ToRGB_lod0')(x)
