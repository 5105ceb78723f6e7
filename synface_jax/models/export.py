"""Exports a backbone as insightface's IResNet state dict (torch `.pth`, safetensors) or as ONNX.

Usage:
  python -m synface_jax.models.export --checkpoint DIR --to pth|safetensors|onnx --out FILE \
      [--step N] [--arch r50 --width 1.0 --input-size 112x112]

DIR is a training workdir, its checkpoints/ folder or a `models.convert` output. The model is
described by DIR's model.json; checkpoints without one need --arch (width and embedding size are
read off the weights, the input size is taken to be square unless given).

The state dict has insightface's key names, order, shapes and dtypes (`arcface_torch`'s
`backbones/iresnet.py`, loads with `load_state_dict(strict=True)`): OIHW conv weights, fc.weight
flattened over NCHW, `num_batches_tracked` buffers. The `.pth` is written without torch, in
torch's zip format (`torch.load(..., weights_only=True)` reads it); safetensors needs the
`safetensors` package (`pip install 'synface_jax[export]'`). A checkpoint converted from a `.pth`
exports the same tensors it was converted from.

ONNX goes through jax2onnx (`pip install 'synface_jax[onnx]'`) in insightface's ONNX layout:
input 'input' [batch, 3, H, W] normalised as (x / 255 - 0.5) / 0.5, output 'embedding'.
"""
import collections
import os
import pickle
import struct
import zipfile

import numpy as np

from synface_jax import cli
from synface_jax.models import convert, model_spec
from synface_jax.models.iresnet import ARCHS, TOTAL_STRIDE

FORMATS = ('pth', 'safetensors', 'onnx')


def flax_to_torch(variables, arch, input_hw, *, features_weight=None, num_batches_tracked=0):
  """insightface state dict (key -> numpy array, in insightface's order) of Flax IResNet variables.

  Inverse of `convert.torch_to_flax` over the same key mapping (`convert.torch_key`,
  `convert.LEAF_NAMES`). `features_weight` is the frozen scale of insightface's last BatchNorm1d
  that the import folded into fc and the running mean; it is unfolded here (None: a scale of 1).
  """
  params, stats = variables['params'], variables['batch_stats']
  features_hw = (input_hw[0] // TOTAL_STRIDE, input_hw[1] // TOTAL_STRIDE)
  num_features = np.shape(params['fc']['kernel'])[1]
  fold = (np.ones(num_features, np.float32) if features_weight is None
          else np.asarray(features_weight, np.float32))
  out = collections.OrderedDict()

  def leaf(tree, path, name):
    node = tree
    for part in path + (name,):
      if part not in node:
        raise ValueError(f'variables lack {"/".join(path + (name,))} (is this IResNet {arch}?)')
      node = node[part]
    return np.asarray(node, np.float32)

  for path in convert.module_order(ARCHS[arch]):
    prefix = convert.torch_key(path)
    module = path[-1]
    if module == 'fc':
      kernel = leaf(params, path, 'kernel')                  # [h * w * C, out], NHWC flatten
      flat, out_features = kernel.shape
      h, w = features_hw
      if flat % (h * w):
        raise ValueError(f'fc kernel has {flat} inputs, not a multiple of the final map {h}x{w}; '
                         'check the input size')
      weight = kernel.T.reshape(out_features, h, w, flat // (h * w)).transpose(0, 3, 1, 2)
      out[f'{prefix}.weight'] = weight.reshape(out_features, flat) / fold[:, None]
      out[f'{prefix}.bias'] = leaf(params, path, 'bias') / fold
    elif module == 'prelu':
      out[f'{prefix}.weight'] = leaf(params, path, 'alpha')
    elif 'conv' in module:
      out[f'{prefix}.weight'] = leaf(params, path, 'kernel').transpose(3, 2, 0, 1)  # HWIO -> OIHW
    else:  # BatchNorm
      if module == 'features':
        out[f'{prefix}.weight'] = fold.copy()
      else:
        out[f'{prefix}.weight'] = leaf(params, path, 'scale')
      out[f'{prefix}.bias'] = leaf(params, path, 'bias')
      mean = leaf(stats, path, 'mean')
      out[f'{prefix}.running_mean'] = mean / fold if module == 'features' else mean
      out[f'{prefix}.running_var'] = leaf(stats, path, 'var')
      out[f'{prefix}.num_batches_tracked'] = np.asarray(num_batches_tracked, np.int64)
  for key in out:  # Every name comes from the one mapping the import uses.
    name = key.rsplit('.', 1)[-1]
    assert name in set(convert.LEAF_NAMES.values()) | {'num_batches_tracked'}, key
  return collections.OrderedDict((k, np.array(v, order="C")) for k, v in out.items())


# --- torch's zip format, written without torch ------------------------------------------------

_STORAGES = {np.dtype(v): k for k, v in convert.STORAGE_DTYPES.items()}


class _Opcodes:
  """The few pickle (protocol 2) opcodes torch's state dicts are made of."""

  def __init__(self):
    self.parts = [pickle.PROTO + b'\x02']

  def emit(self, *parts):
    self.parts.extend(parts)

  def text(self, s):
    data = s.encode()
    self.emit(pickle.BINUNICODE + struct.pack('<I', len(data)) + data)

  def int(self, v):
    v = int(v)
    if 0 <= v < 256:
      self.emit(pickle.BININT1 + bytes([v]))
    elif -2 ** 31 <= v < 2 ** 31:
      self.emit(pickle.BININT + struct.pack('<i', v))
    else:
      data = v.to_bytes((v.bit_length() + 8) // 8, 'little', signed=True)
      self.emit(pickle.LONG1 + bytes([len(data)]) + data)

  def ints(self, values):
    self.emit(pickle.MARK)
    for v in values:
      self.int(v)
    self.emit(pickle.TUPLE)

  def glob(self, module, name):
    self.emit(pickle.GLOBAL + f'{module}\n{name}\n'.encode())

  def tensor(self, key, array):
    """torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())."""
    self.glob('torch._utils', '_rebuild_tensor_v2')
    self.emit(pickle.MARK)
    self.emit(pickle.MARK)  # The persistent id of the storage.
    self.text('storage')
    self.glob('torch', _STORAGES[array.dtype])
    self.text(key)
    self.text('cpu')
    self.int(array.size)
    self.emit(pickle.TUPLE, pickle.BINPERSID)
    self.int(0)
    self.ints(array.shape)
    self.ints([s // array.itemsize for s in array.strides])
    self.emit(pickle.NEWFALSE)
    self.glob('collections', 'OrderedDict')
    self.emit(pickle.EMPTY_TUPLE, pickle.REDUCE)
    self.emit(pickle.TUPLE, pickle.REDUCE)

  def data(self):
    return b''.join(self.parts) + pickle.STOP


def _aligned(archive, name, data, alignment=64):
  """Adds `name` uncompressed with its data starting on a multiple of `alignment` (as torch does)."""
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  start = archive.fp.tell() + 30 + len(name.encode())
  pad = -start % alignment
  if pad and pad < 4:
    pad += alignment
  if pad:  # An extra field of id 'FB' filled with padding bytes.
    info.extra = b'FB' + struct.pack('<H', pad - 4) + b'Z' * (pad - 4)
  archive.writestr(info, data)


def save_pth(path, state_dict, archive_name='archive'):
  """Writes key -> numpy array as a torch zip `.pth` state dict (an OrderedDict of tensors)."""
  ops = _Opcodes()
  ops.glob('collections', 'OrderedDict')
  ops.emit(pickle.EMPTY_TUPLE, pickle.REDUCE, pickle.MARK)
  arrays = []
  for index, (key, value) in enumerate(state_dict.items()):
    array = np.array(value, order="C")
    if array.dtype not in _STORAGES:
      raise ValueError(f'{key}: dtype {array.dtype} has no torch storage type')
    ops.text(key)
    ops.tensor(str(index), array)
    arrays.append((str(index), array))
  ops.emit(pickle.SETITEMS)
  tmp = f'{os.fspath(path)}.tmp{os.getpid()}'
  with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED) as archive:
    _aligned(archive, f'{archive_name}/data.pkl', ops.data())
    _aligned(archive, f'{archive_name}/byteorder', b'little')
    for key, array in arrays:
      _aligned(archive, f'{archive_name}/data/{key}', array.astype(array.dtype.newbyteorder('<'))
               .tobytes())
    _aligned(archive, f'{archive_name}/version', b'3\n')
  os.replace(tmp, path)


def save_onnx(path, variables, spec):
  """The eval-mode backbone as ONNX through jax2onnx, in insightface's ONNX layout: input
  'input' float32 [batch, 3, H, W] normalised as (x / 255 - 0.5) / 0.5, output 'embedding'
  float32 [batch, num_features] (not normalised)."""
  try:
    from jax2onnx import to_onnx
  except ImportError:
    raise ImportError("ONNX export needs jax2onnx: pip install 'synface_jax[onnx]'") from None
  import jax.numpy as jnp
  model = spec.model()
  height, width = spec.input_size
  to_onnx(lambda x: model.apply(variables, x, train=False).astype(jnp.float32),
          [('batch', height, width, 3)], inputs_as_nchw=[0], input_names=['input'],
          output_names=['embedding'], model_name=f'iresnet_{spec.arch}', return_mode='file',
          output_path=os.fspath(path))


def save_safetensors(path, state_dict, metadata=None):
  try:
    from safetensors.numpy import save_file
  except ImportError:
    raise ImportError("safetensors export needs the safetensors package: "
                      "pip install 'synface_jax[export]'") from None
  save_file({k: np.array(v, order="C") for k, v in state_dict.items()}, os.fspath(path),
            metadata={'format': 'pt', **(metadata or {})})


# --- checkpoint -> file -------------------------------------------------------------------------

def _read_extras(path, step):
  """The 'insightface' entry a converted checkpoint keeps (see convert.insightface_extras), or {}."""
  import jax
  import orbax.checkpoint as ocp
  from synface_jax.models.checkpoint import checkpoint_dir
  directory = checkpoint_dir(path)
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False),
                             item_handlers=ocp.PyTreeCheckpointHandler()) as manager:
    tree = manager.item_metadata(step).tree
    if 'insightface' not in tree:
      return {}
    target = {'insightface': tree['insightface']}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True))
  return restored['insightface']


def export_checkpoint(checkpoint, to, out, *, step=None, arch=None, width=None, input_size=None):
  """Writes the backbone of `checkpoint` to `out` as 'pth' or 'safetensors'; returns
  (state dict, step, spec)."""
  from synface_jax import embed
  from synface_jax.models.checkpoint import load_backbone
  if to not in FORMATS:
    raise ValueError(f'unknown export format {to!r}; valid: {", ".join(FORMATS)}')
  variables, step = load_backbone(checkpoint, step)
  spec = model_spec.resolve_spec(checkpoint, variables, arch=arch, width=width,
                                 input_size=input_size)
  embed.check_variables(spec.model(), variables, spec.input_size, checkpoint)
  extras = _read_extras(checkpoint, step)
  state_dict = flax_to_torch(
      variables, spec.arch, spec.input_size, features_weight=extras.get('features_weight'),
      num_batches_tracked=int(extras.get('num_batches_tracked', step)))
  if to == 'pth':
    save_pth(out, state_dict)
  elif to == 'onnx':
    save_onnx(out, variables, spec)
  else:
    save_safetensors(out, state_dict, {
        'arch': spec.arch, 'width': repr(spec.width), 'num_features': str(spec.num_features),
        'input_size': f'{spec.input_size[0]}x{spec.input_size[1]}', 'step': str(step)})
  return state_dict, step, spec


def main(argv=None):
  parser = cli.parser('synface_jax.models.export', __doc__.splitlines()[0])
  parser.add_argument('--checkpoint', required=True,
                      help='training workdir, CheckpointManager directory or convert output')
  parser.add_argument('--to', required=True, choices=FORMATS)
  parser.add_argument('--out', required=True, help='file to write')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--arch', default=None, help="r18 ... r200 (default: the checkpoint's)")
  parser.add_argument('--width', type=float, default=None, help='channel multiplier')
  parser.add_argument('--input-size', type=cli.size, default=None,
                      help='HEIGHTxWIDTH (default: the checkpoint\'s)')
  args = parser.parse_args(argv)
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.checkpoint):
      state_dict, step, spec = export_checkpoint(args.checkpoint, args.to, args.out,
                                                 step=args.step, arch=args.arch, width=args.width,
                                                 input_size=args.input_size)
  except ImportError as e:
    cli.fail(str(e))
  except file_errors.FILE_ERRORS as e:
    cli.fail(str(e))
  what = 'the graph' if args.to == 'onnx' else f'{len(state_dict)} tensors'
  print(f'wrote {what} of IResNet {spec.arch} (width {spec.width}, '
        f'{spec.input_size[0]}x{spec.input_size[1]}) from step {step} to {args.out}')


if __name__ == '__main__':
  main()
