"""Converts insightface arcface_torch IResNet checkpoints (.pth) to Flax variables, without torch.

Usage:
  python -m synface_jax.models.convert --from-pth backbone.pth --arch r50 --out DIR \
      [--input-size 112x112] [--width 1.0]

DIR becomes an orbax CheckpointManager directory with step 0 holding
{'params': {'backbone': params}, 'batch_stats': batch_stats}, the layout the training loop writes,
and DIR/model.json describing the model (see models.model_spec).
"""
import argparse
import collections
import os
import pickle
import sys
import zipfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp

from synface_jax.models import model_spec
from synface_jax.models.iresnet import iresnet

STORAGE_DTYPES = {
    'DoubleStorage': np.float64,
    'FloatStorage': np.float32,
    'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16,
    'LongStorage': np.int64,
    'IntStorage': np.int32,
    'ShortStorage': np.int16,
    'CharStorage': np.int8,
    'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
IGNORED_SUFFIX = 'num_batches_tracked'
DEFAULT_INPUT_HW = (112, 112)


class StorageType:
  """Stands in for a torch typed-storage class inside the pickle: just its element dtype."""

  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


def rebuild_tensor(storage, storage_offset, size, stride, *unused_args):
  """Numpy copy of a strided view into a storage, refusing views that reach outside it."""
  size, stride = tuple(size), tuple(stride)
  if len(size) != len(stride):
    raise pickle.UnpicklingError(f'tensor size {size} and stride {stride} differ in length')
  if not isinstance(storage, np.ndarray):
    raise pickle.UnpicklingError(
        f'tensor storage must be a persistent storage, not {type(storage).__name__}')
  if any(s < 0 for s in size) or any(s < 0 for s in stride) or storage_offset < 0:
    raise pickle.UnpicklingError(f'negative tensor size/stride/offset: {size}, {stride}')
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:
    raise pickle.UnpicklingError(
        f'tensor of size {size}, stride {stride}, offset {storage_offset} reaches past its '
        f'storage of {storage.size} elements')
  view = np.lib.stride_tricks.as_strided(
      storage[storage_offset:], shape=size,
      strides=[s * storage.itemsize for s in stride], writeable=False)
  return np.array(view)


def rebuild_parameter(data, unused_requires_grad, unused_backward_hooks, *unused_state):
  """A torch Parameter is loaded as its data."""
  return data


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler for torch's data.pkl that builds numpy arrays and refuses every other global."""

  def __init__(self, file, read_storage):
    super().__init__(file)
    self._read_storage = read_storage
    self._storages = {}

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
      return rebuild_tensor
    if (module, name) == ('torch._utils', '_rebuild_parameter'):
      return rebuild_parameter
    if module == 'torch' and name in STORAGE_DTYPES:
      return StorageType(STORAGE_DTYPES[name])
    raise pickle.UnpicklingError(f'refused global {module}.{name} in a .pth file')

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'
            and isinstance(pid[1], StorageType)):
      raise pickle.UnpicklingError(f'unsupported persistent id {pid!r}')
    _, storage_type, key, _, numel = pid[:5]
    key = str(key)
    if key not in self._storages:
      storage = self._read_storage(key, storage_type.dtype)
      if storage.size < numel:
        raise pickle.UnpicklingError(
            f'storage {key} has {storage.size} elements, the pickle expects {numel}')
      self._storages[key] = storage
    return self._storages[key]


def _unwrap_state_dict(obj, path):
  """The state dict inside a checkpoint dict ('state_dict' or 'model'), keys without 'module.'."""
  if isinstance(obj, dict):
    for wrapper in ('state_dict', 'model'):
      if isinstance(obj.get(wrapper), dict):
        obj = obj[wrapper]
        break
  if not isinstance(obj, dict):
    raise ValueError(f'{path}: expected a state dict, found {type(obj).__name__}')
  state_dict = {}
  for key, value in obj.items():
    if not isinstance(value, np.ndarray):
      raise ValueError(f'{path}: entry {key!r} is a {type(value).__name__}, not a tensor')
    state_dict[key[len('module.'):] if key.startswith('module.') else key] = value
  return state_dict


def load_pth(path) -> dict[str, np.ndarray]:
  """Reads a torch zip-format .pth state dict into numpy arrays without torch or arbitrary code."""
  path = os.fspath(path)
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n == 'data.pkl' or n.endswith('/data.pkl')]
    if len(pickles) != 1:
      raise ValueError(f'{path}: not a torch zip checkpoint '
                       f'(found {len(pickles)} data.pkl entries)')
    prefix = pickles[0][:-len('data.pkl')]
    order = '<'
    if prefix + 'byteorder' in archive.namelist():
      byteorder = archive.read(prefix + 'byteorder').decode().strip()
      order = '>' if byteorder == 'big' else '<'

    def read_storage(key, dtype):
      name = f'{prefix}data/{key}'
      try:
        raw = archive.read(name)
      except KeyError:
        raise pickle.UnpicklingError(f'{path}: missing storage {name}') from None
      return np.frombuffer(raw, dtype.newbyteorder(order)).astype(dtype)

    with archive.open(pickles[0]) as f:
      try:
        obj = RestrictedUnpickler(f, read_storage).load()
      except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f'{path}: {e}') from None
  return _unwrap_state_dict(obj, path)


def torch_key(flax_path) -> str:
  """insightface state_dict key prefix of a Flax module path, e.g. layer1_0/downsample_bn."""
  names = {'downsample_conv': 'downsample.0', 'downsample_bn': 'downsample.1'}
  parts = []
  for name in flax_path:
    name = names.get(name, name)
    if name.startswith('layer') and '_' in name:
      name = name.replace('_', '.', 1)
    parts.append(name)
  return '.'.join(parts)


def module_order(stage_sizes):
  """Flax module paths of an IResNet in insightface's state_dict order (its modules' creation order)."""
  yield from (('conv1',), ('bn1',), ('prelu',))
  for stage, num_blocks in enumerate(stage_sizes):
    for block in range(num_blocks):
      names = ('bn1', 'conv1', 'bn2', 'prelu', 'conv2', 'bn3')
      names += ('downsample_conv', 'downsample_bn') if block == 0 else ()
      yield from ((f'layer{stage + 1}_{block}', name) for name in names)
  yield from (('bn2',), ('fc',), ('features',))


LEAF_NAMES = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('params', 'alpha'): 'weight',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}


def _fc_kernel(weight, features_hw):
  """Dense kernel [h*w*C, out] from torch's fc.weight [out, C*h*w] (flattened over NCHW)."""
  out, flat = weight.shape
  h, w = features_hw
  if flat % (h * w):
    raise ValueError(f"key 'fc.weight' has {flat} inputs, not a multiple of the final map "
                     f'{h}x{w}; check the input size')
  channels = flat // (h * w)
  return weight.reshape(out, channels, h, w).transpose(0, 2, 3, 1).reshape(out, flat).T


def torch_to_flax(state_dict, arch, width=1.0, input_hw=DEFAULT_INPUT_HW):
  """Maps an insightface IResNet state dict to Flax {'params': ..., 'batch_stats': ...}.

  Args:
    state_dict: key -> numpy array, as returned by `load_pth`.
    arch: 'r18', 'r50', ... (see ARCHS).
    width: channel multiplier of the model the weights belong to.
    input_hw: (height, width) of the input images; fixes the layout of fc.weight.

  Returns:
    Flax variables for `iresnet(arch, width=width)` in float32.

  Raises:
    ValueError: naming a missing or unexpected key, or a key whose shape does not match.
  """
  height, width_px = input_hw
  model = iresnet(arch, width=width)
  expected = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, height, width_px, 3)), train=False))
  features_hw = (height // 16, width_px // 16)
  sd = {k: np.asarray(v) for k, v in state_dict.items() if not k.endswith(IGNORED_SUFFIX)}
  used = set()

  def take(key):
    if key not in sd:
      raise ValueError(f'missing key {key!r} in the state dict for IResNet {arch}')
    used.add(key)
    return sd[key].astype(np.float32)

  # insightface's final BatchNorm1d `features` has a scale frozen at 1 that our Flax BN lacks.
  # Eval-mode BN is (z - mean) / sqrt(var + eps) * g + b with z = fc(x); for a checkpoint with
  # g != 1 we fold g exactly into fc's kernel and bias and into the running mean (the running
  # variance stays), which gives the same eval output. (Training statistics would differ.)
  fold = take('features.weight')
  if fold.shape != expected['params']['features']['bias'].shape:
    raise ValueError(f"key 'features.weight' has shape {fold.shape}, expected "
                     f"{expected['params']['features']['bias'].shape}")

  def convert(path, leaf):
    names = tuple(p.key for p in path)
    collection, modules, leaf_name = names[0], names[1:-1], names[-1]
    key = f'{torch_key(modules)}.{LEAF_NAMES[(collection, leaf_name)]}'
    value = take(key)
    is_fc_kernel = modules == ('fc',) and leaf_name == 'kernel'
    if value.ndim != (2 if is_fc_kernel else leaf.ndim):
      raise ValueError(f'key {key!r} has shape {value.shape}, which does not fit the Flax '
                       f'{"/".join(names)} of shape {leaf.shape}')
    if is_fc_kernel:
      value = _fc_kernel(value, features_hw) * fold[None, :]
    elif leaf_name == 'kernel':
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    elif modules == ('fc',) or (modules == ('features',) and leaf_name == 'mean'):
      value = value * fold
    if value.shape != leaf.shape:
      raise ValueError(f'key {key!r} has shape {sd[key].shape}, which does not fit the Flax '
                       f'{"/".join(names)} of shape {leaf.shape} (arch {arch}, width {width}, '
                       f'input {height}x{width_px})')
    return np.asarray(value, np.float32)

  variables = jax.tree_util.tree_map_with_path(convert, dict(expected))
  unexpected = sorted(set(sd) - used)
  if unexpected:
    raise ValueError(f'unexpected key {unexpected[0]!r} in the state dict for IResNet {arch} '
                     f'({len(unexpected)} unexpected: {unexpected[:5]})')
  return {'params': variables['params'], 'batch_stats': variables['batch_stats']}


def insightface_extras(state_dict) -> dict:
  """What torch_to_flax folds away or drops, kept so that an export gives the same state dict:
  `features.weight` (folded into fc and the running mean) and the BatchNorm batch count."""
  counts = {int(np.asarray(v).reshape(-1)[0]) for k, v in state_dict.items()
            if k.endswith(IGNORED_SUFFIX) and np.size(v) == 1}
  return {'features_weight': np.asarray(state_dict['features.weight'], np.float32),
          'num_batches_tracked': np.asarray(max(counts) if counts else 0, np.int64)}


def save_backbone(directory, variables, extras=None):
  """Writes variables at step 0 of a new CheckpointManager directory (the training layout),
  with `extras` (see insightface_extras) under the item's 'insightface' key when given."""
  directory = os.path.abspath(os.fspath(directory))
  with ocp.CheckpointManager(directory) as manager:
    if manager.latest_step() is not None:
      raise FileExistsError(f'{directory} already holds checkpoints (step '
                            f'{manager.latest_step()}); choose an empty --out directory')
    item = {'params': {'backbone': variables['params']}, 'batch_stats': variables['batch_stats']}
    if extras is not None:
      item['insightface'] = extras
    manager.save(0, args=ocp.args.StandardSave(item))
    manager.wait_until_finished()


def parse_hw(text) -> tuple[int, int]:
  """'112x96' -> (112, 96)."""
  try:
    height, width = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected HEIGHTxWIDTH such as 112x112, got {text!r}')
  return height, width


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--from-pth', required=True, help='insightface backbone .pth')
  parser.add_argument('--arch', required=True, help='r18, r34, r50, r100 or r200')
  parser.add_argument('--out', required=True, help='new orbax checkpoint directory')
  parser.add_argument('--input-size', type=parse_hw, default=DEFAULT_INPUT_HW,
                      help='HEIGHTxWIDTH of the images the model was trained on')
  parser.add_argument('--width', type=float, default=1.0, help='channel multiplier')
  args = parser.parse_args(argv)
  try:
    state_dict = load_pth(args.from_pth)
  except (OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
    sys.exit(f'convert: cannot read {args.from_pth}: {e}')
  try:
    variables = torch_to_flax(state_dict, args.arch, args.width, args.input_size)
  except ValueError as e:
    sys.exit(f'convert: {args.from_pth}: {e}')
  try:
    save_backbone(args.out, variables, insightface_extras(state_dict))
    model_spec.ModelSpec(arch=args.arch, width=args.width,
                         num_features=variables['params']['fc']['kernel'].shape[1],
                         input_size=args.input_size).write(args.out)
  except OSError as e:
    sys.exit(f'convert: {e}')
  print(f'wrote {args.arch} from {args.from_pth} to {args.out} (step 0)')


if __name__ == '__main__':
  main()
