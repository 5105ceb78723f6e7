"""Converts insightface arcface_torch IResNet checkpoints (.pth) to Flax variables, without torch.

Usage:
  python -m synface_jax.models.convert --from-pth backbone.pth --arch r50 --out DIR \
      [--input-size 112x112] [--width 1.0]

DIR becomes an orbax CheckpointManager directory with step 0 holding
{'params': {'backbone': params}, 'batch_stats': batch_stats}, the layout the training loop writes,
and DIR/model.json describing the model (see models.model_spec).
"""
import math
import os
import struct
import zipfile
import zlib

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp

from synface_jax import cli, safe_pickle
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


MAX_INFLATE_RATIO = 64        # a compressed zip member may expand at most 64x (+ INFLATE_SLACK)
INFLATE_SLACK = 2 ** 16
MAX_PICKLE_BYTES = 2 ** 28    # data.pkl itself (an r200 state dict's is about 100 KB)
# What a damaged archive raises from zipfile (bad headers, CRC, unknown compression, encryption).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError,
               EOFError, ValueError, KeyError, OverflowError, struct.error)


class _Storage:
  """A storage read from the archive; only `persistent_load` makes these."""

  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Loader:
  """What the pickle's globals and persistent ids build: numpy copies of tensors, bounded.

  Each storage is read once, to exactly the bytes its persistent id declares; a tensor may not
  have more elements than its storage (a stride-0 view cannot multiply it), and all tensors
  together hold at most twice the storage bytes read (+ 1 MiB).
  """

  def __init__(self, read_storage):
    self._read_storage = read_storage
    self._storages = {}
    self.storage_bytes = 0
    self.tensor_bytes = 0

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'
            and isinstance(pid[1], safe_pickle.Global) and pid[1].module == 'torch'
            and pid[1].name in STORAGE_DTYPES):
      raise safe_pickle.Refused(f'unsupported persistent id {safe_pickle.describe(pid)}')
    _, storage_type, key, _, numel = pid[:5]
    key = safe_pickle.as_text(key, 'storage key')
    numel = safe_pickle.as_int(numel, f'storage {key} size')
    if key not in self._storages:
      array = self._read_storage(key, np.dtype(STORAGE_DTYPES[storage_type.name]), numel)
      self.storage_bytes += array.nbytes
      self._storages[key] = _Storage(key, array)
    storage = self._storages[key]
    if storage.array.dtype != np.dtype(STORAGE_DTYPES[storage_type.name]):
      raise safe_pickle.Refused(f'storage {key} is used with two dtypes')
    if storage.array.size < numel:
      raise safe_pickle.Refused(
          f'storage {key} has {storage.array.size} elements, the pickle expects {numel}')
    return storage

  def rebuild_tensor(self, reader, storage, storage_offset, size, stride, *unused_args):
    """Numpy copy of a strided view into a storage, refusing views that reach outside it."""
    del reader
    if not isinstance(storage, _Storage):
      raise safe_pickle.Refused(
          f'tensor storage must be a persistent storage, not {safe_pickle.describe(storage)}')
    size = safe_pickle.as_shape(size, 'tensor size')
    stride = safe_pickle.as_shape(stride, 'tensor stride')
    offset = safe_pickle.as_int(storage_offset, 'tensor storage offset')
    array = storage.array
    if len(size) != len(stride):
      raise safe_pickle.Refused(f'tensor size {size} and stride {stride} differ in length')
    numel = math.prod(size)
    if numel == 0:
      return np.zeros(size, array.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= array.size:
      raise safe_pickle.Refused(
          f'tensor of size {size}, stride {stride}, offset {offset} reaches past its '
          f'storage of {array.size} elements')
    if numel > array.size:
      raise safe_pickle.Refused(
          f'tensor of size {size} has more elements than its storage {storage.key} '
          f'({array.size}); overlapping strides {stride} are refused')
    self.tensor_bytes += numel * array.itemsize
    if self.tensor_bytes > 2 * self.storage_bytes + 2 ** 20:
      raise safe_pickle.Refused('the tensors hold far more bytes than the storages they view')
    view = np.lib.stride_tricks.as_strided(
        array[offset:], shape=size, strides=[s * array.itemsize for s in stride],
        writeable=False)
    return np.array(view)

  def globals(self):
    tensor = lambda module, name: safe_pickle.Global(module, name, call=self.rebuild_tensor)
    out = {k: v for k, v in safe_pickle.BUILTINS.items() if k[0] == 'collections'}
    out[('torch._utils', '_rebuild_tensor_v2')] = tensor('torch._utils', '_rebuild_tensor_v2')
    out[('torch._utils', '_rebuild_tensor')] = tensor('torch._utils', '_rebuild_tensor')
    out[('torch._utils', '_rebuild_parameter')] = safe_pickle.Global(
        'torch._utils', '_rebuild_parameter', call=_rebuild_parameter)
    for name in STORAGE_DTYPES:
      out[('torch', name)] = safe_pickle.Global('torch', name)
    return out


def _rebuild_parameter(reader, data, unused_requires_grad=None, unused_hooks=None, *unused):
  """A torch Parameter is loaded as its data."""
  del reader
  if not isinstance(data, np.ndarray):
    raise safe_pickle.Refused(f'a Parameter of {safe_pickle.describe(data)}, not a tensor')
  return data


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


def _read_member(archive: zipfile.ZipFile, path: str, name: str, size: int) -> bytes:
  """Exactly `size` bytes of a member, refusing one that is shorter or inflates too far."""
  info = archive.getinfo(name)
  if info.file_size < size:
    raise safe_pickle.Refused(f'{name} holds {info.file_size} bytes, the pickle expects {size}')
  if (info.compress_type != zipfile.ZIP_STORED
      and size > MAX_INFLATE_RATIO * info.compress_size + INFLATE_SLACK):
    raise safe_pickle.Refused(f'{name} would inflate {info.compress_size} bytes to {size}: '
                              f'refused as a likely deflate bomb')
  with archive.open(info) as f:
    data = f.read(size)
  if len(data) != size:
    raise safe_pickle.Refused(f'{name} ends after {len(data)} of its {size} bytes')
  return data


def load_pth(path) -> dict[str, np.ndarray]:
  """Reads a torch zip-format .pth state dict into numpy arrays without torch or arbitrary code.

  The pickle is read by `synface_jax.safe_pickle` (plain data only); storages are read to the
  size the pickle declares, compressed members may inflate at most MAX_INFLATE_RATIO times, and
  no tensor may hold more elements than its storage.

  Raises:
    safe_pickle.PickleFileError (a ValueError): naming the file, for anything unreadable.
  """
  path = os.fspath(path)
  try:
    archive = zipfile.ZipFile(path)
  except _ZIP_ERRORS as e:
    raise safe_pickle.PickleFileError(f'{path}: not a torch zip checkpoint ({e})') from None
  with archive:
    names = archive.namelist()
    pickles = [n for n in names if n == 'data.pkl' or n.endswith('/data.pkl')]
    if len(pickles) != 1:
      raise safe_pickle.PickleFileError(f'{path}: not a torch zip checkpoint '
                                        f'(found {len(pickles)} data.pkl entries)')
    prefix = pickles[0][:-len('data.pkl')]
    order = '<'
    try:
      if prefix + 'byteorder' in names:
        name = prefix + 'byteorder'
        raw = _read_member(archive, path, name, min(archive.getinfo(name).file_size, 16))
        byteorder = raw.decode('ascii', 'replace').strip()
        order = '>' if byteorder == 'big' else '<'
      info = archive.getinfo(pickles[0])
      size = min(info.file_size, MAX_PICKLE_BYTES)
      if info.file_size > MAX_PICKLE_BYTES:
        raise safe_pickle.Refused(f'{pickles[0]} is {info.file_size} bytes, more than the '
                                  f'{MAX_PICKLE_BYTES} allowed')
      data_pkl = _read_member(archive, path, pickles[0], size)
    except (safe_pickle.Refused,) + _ZIP_ERRORS as e:
      raise safe_pickle.PickleFileError(f'{path}: {e}') from None

    def read_storage(key, dtype, numel):
      name = f'{prefix}data/{key}'
      if name not in names:
        raise safe_pickle.Refused(f'missing storage {name}')
      nbytes = numel * dtype.itemsize
      if nbytes > archive.getinfo(name).file_size:
        raise safe_pickle.Refused(
            f'storage {key} has {archive.getinfo(name).file_size // dtype.itemsize} elements, '
            f'the pickle expects {numel}')
      raw = _read_member(archive, path, name, nbytes)
      return np.frombuffer(raw, dtype.newbyteorder(order)).astype(dtype)

    loader = _Loader(read_storage)
    obj = safe_pickle.load(data_pkl, name=path, globals=loader.globals(),
                           persistent_load=loader.persistent_load, str8='latin1')
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


def main(argv=None):
  parser = cli.parser('synface_jax.models.convert', __doc__.splitlines()[0])
  parser.add_argument('--from-pth', required=True, help='insightface backbone .pth')
  parser.add_argument('--arch', required=True, help='r18, r34, r50, r100 or r200')
  parser.add_argument('--out', required=True, help='new orbax checkpoint directory')
  parser.add_argument('--input-size', type=cli.size, default=DEFAULT_INPUT_HW,
                      help='HEIGHTxWIDTH of the images the model was trained on')
  parser.add_argument('--width', type=float, default=1.0, help='channel multiplier')
  args = parser.parse_args(argv)
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.from_pth):
      state_dict = load_pth(args.from_pth)
      variables = torch_to_flax(state_dict, args.arch, args.width, args.input_size)
  except file_errors.FILE_ERRORS as e:
    cli.fail(str(e))
  try:
    save_backbone(args.out, variables, insightface_extras(state_dict))
    model_spec.ModelSpec(arch=args.arch, width=args.width,
                         num_features=variables['params']['fc']['kernel'].shape[1],
                         input_size=args.input_size).write(args.out)
  except (OSError, ValueError) as e:
    cli.fail(str(e))
  print(f'wrote {args.arch} from {args.from_pth} to {args.out} (step 0)')


if __name__ == '__main__':
  main()
