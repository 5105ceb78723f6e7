"""What it takes to rebuild a backbone from its weights, kept as `model.json` beside them.

Training (in WORKDIR/checkpoints) and `models.convert` (in its --out directory) write it, so the
embedder and the exporter need no arch or width retyped:

    {"arch": "r18", "width": 0.125, "num_features": 512, "input_size": [112, 112],
     "dtype": "float32"}

Checkpoints written before this file existed still load: `infer_spec` reads arch, width and
num_features off the variables' shapes, and the input size is given by hand (or is square).
"""
import dataclasses
import json
import math
import os

from etils import epath
import numpy as np

from synface_jax.models.iresnet import (ARCHS, STAGE_CHANNELS, STEM_CHANNELS, TOTAL_STRIDE, iresnet,
                                        scaled_channels)

FILENAME = 'model.json'


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  arch: str
  width: float = 1.0
  num_features: int = 512
  input_size: tuple[int, int] = (112, 112)
  dtype: str = 'float32'

  def __post_init__(self):
    if self.arch not in ARCHS:
      raise ValueError(f'unknown IResNet arch {self.arch!r}; valid: {", ".join(ARCHS)}')
    height, width = (int(v) for v in self.input_size)
    if height % TOTAL_STRIDE or width % TOTAL_STRIDE:
      raise ValueError(f'input_size {height}x{width}: sides must be divisible by {TOTAL_STRIDE}')
    object.__setattr__(self, 'input_size', (height, width))
    object.__setattr__(self, 'width', float(self.width))
    object.__setattr__(self, 'num_features', int(self.num_features))

  @classmethod
  def from_config(cls, config) -> 'ModelSpec':
    m = config.model
    return cls(arch=m.arch, width=m.width, num_features=m.num_features,
               input_size=tuple(m.input_size), dtype=str(m.dtype))

  def model(self, **kwargs):
    """The Flax IResNet (eval use: dropout is irrelevant there)."""
    import jax.numpy as jnp
    return iresnet(self.arch, width=self.width, num_features=self.num_features,
                   dtype=jnp.dtype(self.dtype), **kwargs)

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    d['input_size'] = list(self.input_size)
    return json.dumps(d) + "\n"

  def write(self, directory) -> str:
    """Writes DIRECTORY/model.json (atomically) and returns its path."""
    directory = epath.Path(directory)  # A local folder or a gs:// one.
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILENAME
    tmp = directory / f'{FILENAME}.tmp{os.getpid()}'
    tmp.write_text(self.to_json())
    tmp.replace(path)
    return os.fspath(path)


def read_spec(directory) -> ModelSpec | None:
  """The ModelSpec in DIRECTORY/model.json, None when there is none; errors name the file."""
  path = epath.Path(directory) / FILENAME
  if not path.exists():
    return None
  try:
    fields = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(ModelSpec)}
    return ModelSpec(**{k: v for k, v in fields.items() if k in known})
  except (OSError, ValueError, TypeError) as e:
    raise ValueError(f'{path}: not a valid model description ({e})') from None


def infer_spec(variables, input_size=None) -> ModelSpec:
  """Arch, width and num_features read off a backbone's variables ({'params': ...});
  input_size, when not given, is the square one that fits the embedding layer."""
  params = variables['params']
  stages = [sum(1 for name in params if name.startswith(f'layer{s}_')) for s in range(1, 5)]
  arch = next((name for name, sizes in ARCHS.items() if tuple(sizes) == tuple(stages)), None)
  if arch is None:
    raise ValueError(f'blocks per stage {stages} match no IResNet arch ({ARCHS})')
  # The width multiplier that gives every stage its channel count (rounding can hide it in one).
  channels = [np.shape(params['conv1']['kernel'])[-1]] + [
      np.shape(params[f'layer{s}_0']['conv1']['kernel'])[-1] for s in range(1, 5)]
  full = (STEM_CHANNELS,) + tuple(STAGE_CHANNELS)
  fits = lambda w: [scaled_channels(c, w) for c in full] == channels
  width = next((c / f for c, f in zip(channels[::-1], full[::-1]) if fits(c / f)), None)
  if width is None:
    raise ValueError(f'channel counts {channels} fit no width multiplier of {list(full)}')
  num_features = np.shape(params['fc']['kernel'])[1]
  if input_size is None:
    last = np.shape(params['bn2']['scale'])[0]
    cells = np.shape(params['fc']['kernel'])[0] // last
    side = math.isqrt(cells)
    if side * side != cells:
      raise ValueError(f'the embedding layer sees {cells} cells of the last feature map, not a '
                       'square: give the input size (HEIGHTxWIDTH)')
    input_size = (side * TOTAL_STRIDE, side * TOTAL_STRIDE)
  return ModelSpec(arch=arch, width=width, num_features=num_features,
                   input_size=tuple(input_size))


def resolve_spec(path, variables, *, arch=None, width=None, input_size=None) -> ModelSpec:
  """The model of the checkpoint at `path` (workdir, checkpoints/ or convert output): its
  model.json, else read off `variables`; arch, width and input_size, when given, override either."""
  from synface_jax.models.checkpoint import checkpoint_dir
  spec = read_spec(checkpoint_dir(path))
  if spec is None:
    spec = infer_spec(variables, input_size)
  overrides = {k: v for k, v in (('arch', arch), ('width', width), ('input_size', input_size))
               if v is not None}
  return dataclasses.replace(spec, **overrides) if overrides else spec
