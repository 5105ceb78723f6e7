"""Architecture of a DiscoFaceGAN generator: the StyleGAN1 builder arguments that fix its shapes.

The official network is StyleGAN1's `G_style` built with DiscoFaceGAN's input size (286 = 254
3DMM coefficients + 32 noise numbers). These fields are the builder keyword arguments that change
variable shapes; everything else about the network (8-layer mapping without input normalisation,
styles, constant input, stored noise, instance norm, blur [1, 2, 1], fused up-sampling from 128
px) is fixed and checked by `from_static_kwargs`. Other kwargs (truncation, style mixing, ...)
only matter for training or for G_style's own sampling path and are ignored.
"""
import dataclasses
import math

# Builder kwargs whose value must be the one this port implements.
_FIXED_KWARGS = {
    'label_size': 0,
    'normalize_latents': False,
    'use_styles': True,
    'const_input_layer': True,
    'use_noise': True,
    'use_pixel_norm': False,
    'use_instance_norm': True,
    'nonlinearity': 'lrelu',
    'mapping_nonlinearity': 'lrelu',
    'use_wscale': True,
    'fused_scale': 'auto',
    'blur_filter': [1, 2, 1],
}


@dataclasses.dataclass(frozen=True)
class Arch:
  """Shape-determining builder arguments of a DiscoFaceGAN generator (defaults: the real model)."""
  resolution: int = 256
  num_channels: int = 3
  latent_size: int = 286
  dlatent_size: int = 512
  mapping_layers: int = 8
  mapping_fmaps: int = 512
  mapping_lrmul: float = 0.01
  fmap_base: int = 8192
  fmap_decay: float = 1.0
  fmap_max: int = 512

  def __post_init__(self):
    log2 = math.log2(self.resolution)
    if self.resolution < 4 or log2 != int(log2):
      raise ValueError(f'resolution must be a power of two >= 4, got {self.resolution}')

  @property
  def log2_resolution(self) -> int:
    return int(math.log2(self.resolution))

  @property
  def num_layers(self) -> int:
    """Style layers: two per resolution from 4x4 up (14 at 256 px)."""
    return 2 * self.log2_resolution - 2

  def channels(self, stage: int) -> int:
    """Feature maps of a stage (StyleGAN's nf): the block at 2^r px has nf(r - 1) channels."""
    return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

  def block_channels(self, log2_res: int) -> int:
    """Feature maps of the block at 2^log2_res pixels."""
    return self.channels(log2_res - 1)

  @staticmethod
  def fused_upsampling(log2_res: int) -> bool:
    """Whether the block at 2^log2_res px up-samples by transposed conv ('auto': from 128 px)."""
    return log2_res >= 7

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> 'Arch':
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(f'unknown architecture fields {unknown}; known: {sorted(names)}')
    return cls(**values)

  @classmethod
  def from_static_kwargs(cls, kwargs: dict) -> 'Arch':
    """The architecture of a pickled network from its builder kwargs; absent ones take our defaults.

    Raises:
      ValueError: naming a kwarg whose value changes the network in a way this port does not
        implement (for example use_noise=False or label_size > 0).
    """
    for name, supported in _FIXED_KWARGS.items():
      if name in kwargs and _normalise(kwargs[name]) != _normalise(supported):
        raise ValueError(f'builder kwarg {name}={kwargs[name]!r} is not supported '
                         f'(only {supported!r})')
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def _normalise(value):
  return list(value) if isinstance(value, tuple) else value


PRESETS = {
    'full': Arch(),
    # The reduced network of the golden data: 128 px, 12 layers, w size 64, 64..8 channels.
    'small': Arch(resolution=128, dlatent_size=64, mapping_fmaps=64, fmap_base=512, fmap_max=64),
}


def get_arch(spec) -> Arch:
  """An Arch from a preset name ('full', 'small'), a dict of fields, or an Arch."""
  if isinstance(spec, Arch):
    return spec
  if isinstance(spec, str):
    if spec not in PRESETS:
      raise ValueError(f'unknown architecture preset {spec!r}; choose one of {sorted(PRESETS)}')
    return PRESETS[spec]
  return Arch.from_dict(dict(spec))
