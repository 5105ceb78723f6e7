"""IResNet model, the insightface checkpoint converter, checkpoint reading and the embed CLI."""
import json
import os
import pickle
import struct
import zipfile

from conftest import IRESNET_REF, exits_with_one_line, random_torch_state_dict, reference_file
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from synface_jax import embed
from synface_jax.models import ARCHS, convert, iresnet
from synface_jax.models.checkpoint import load_backbone

TINY = 1 / 16


# --- a torch zip checkpoint writer (pickle opcodes by hand, so no torch is needed) -------------

def _text(s):
  data = s.encode()
  return b'X' + struct.pack('<I', len(data)) + data


def _ints(values):
  return b'(' + b''.join(b'J' + struct.pack('<i', v) for v in values) + b't'


def _tensor_pickle(index, array, numel=None):
  storage = {np.float32: 'FloatStorage', np.int64: 'LongStorage'}[array.dtype.type]
  strides = [s // array.itemsize for s in array.strides]
  return (b'ctorch._utils\n_rebuild_tensor_v2\n('
          + b'(' + _text('storage') + f'ctorch\n{storage}\n'.encode() + _text(str(index))
          + _text('cpu') + b'J' + struct.pack('<i', array.size if numel is None else numel) + b'tQ'
          + b'J\x00\x00\x00\x00' + _ints(array.shape) + _ints(strides)
          + b'\x89ccollections\nOrderedDict\n)RtR')


def write_pth(path, state_dict, data_pkl=None):
  """Writes state_dict in torch's zip format; data_pkl replaces the pickle when given."""
  arrays = [np.ascontiguousarray(v) for v in state_dict.values()]
  if data_pkl is None:
    data_pkl = b'\x80\x02ccollections\nOrderedDict\n)R(' + b''.join(
        _text(k) + _tensor_pickle(i, a) for i, (k, a) in enumerate(zip(state_dict, arrays)))
    data_pkl += b'u.'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', data_pkl)
    archive.writestr('archive/byteorder', 'little')
    for i, array in enumerate(arrays):
      archive.writestr(f'archive/data/{i}', array.tobytes())


# --- golden: insightface's own iresnet18 forward pass ------------------------------------------

@pytest.fixture(scope='module')
def golden_r18():
  variables = convert.torch_to_flax(
      convert.load_pth(reference_file(IRESNET_REF, 'iresnet18_quantized.pth')), 'r18')
  io = np.load(reference_file(IRESNET_REF, 'iresnet18_io.npz'))
  model = iresnet('r18')
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=['intermediates']))
  embedding, state = forward(variables, io['input_nhwc'])
  return io, np.asarray(embedding), np.asarray(state['intermediates']['bn2_out'][0])


@pytest.mark.slow
def test_golden_r18_embedding(golden_r18):
  io, embedding, _ = golden_r18
  assert embedding.dtype == np.float32 and embedding.shape == (4, 512)
  np.testing.assert_allclose(embedding, io['embedding'], rtol=0, atol=1e-3)


@pytest.mark.slow
def test_golden_r18_bn2(golden_r18):
  io, _, bn2 = golden_r18
  np.testing.assert_allclose(bn2.transpose(0, 3, 1, 2), io['bn2_out_nchw'], rtol=0, atol=1e-3)


def test_load_pth_reads_golden_state_dict():
  state_dict = convert.load_pth(reference_file(IRESNET_REF, 'iresnet18_quantized.pth'))
  assert len(state_dict) == 187
  assert state_dict['conv1.weight'].shape == (64, 3, 3, 3)
  assert state_dict['fc.weight'].shape == (512, 25088)
  assert state_dict['bn1.num_batches_tracked'].dtype == np.int64
  assert not np.all(state_dict['features.weight'] == 1)


# --- converter key mapping on insightface's r50 names ------------------------------------------

@pytest.fixture(scope='module')
def r50_state_dict():
  with open(reference_file(IRESNET_REF, 'iresnet50_keys.json')) as f:
    keys = json.load(f)
  return {k: np.zeros(shape, np.int64 if k.endswith('num_batches_tracked') else np.float32)
          for k, shape in keys}


def test_r50_mapping_covers_every_key(r50_state_dict):
  assert len(r50_state_dict) == 475
  variables = convert.torch_to_flax(r50_state_dict, 'r50')
  converted = sum(x.size for x in jax.tree.leaves(variables))
  expected = sum(v.size for k, v in r50_state_dict.items()
                 if not k.endswith('num_batches_tracked') and k != 'features.weight')
  assert converted == expected


def test_r50_unexpected_key(r50_state_dict):
  state_dict = dict(r50_state_dict, **{'layer5.0.conv1.weight': np.zeros((3, 3), np.float32)})
  with pytest.raises(ValueError, match=r'layer5\.0\.conv1\.weight'):
    convert.torch_to_flax(state_dict, 'r50')


def test_r50_missing_key(r50_state_dict):
  state_dict = dict(r50_state_dict)
  del state_dict['layer3.13.bn2.running_var']
  with pytest.raises(ValueError, match=r'layer3\.13\.bn2\.running_var'):
    convert.torch_to_flax(state_dict, 'r50')


def test_wrong_shape_names_key(r50_state_dict):
  with pytest.raises(ValueError, match=r"'fc\.weight'"):
    convert.torch_to_flax(r50_state_dict, 'r50', input_hw=(112, 96))


# --- .pth reading is safe ----------------------------------------------------------------------

class _Evil:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def test_malicious_pickle_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil.pth'
  write_pth(path, {}, data_pkl=pickle.dumps({'conv1.weight': _Evil(marker)}, protocol=2))
  with pytest.raises(pickle.UnpicklingError, match=r'refused global \w+\.system'):
    convert.load_pth(path)
  assert not marker.exists()


@pytest.mark.parametrize('claimed_numel,problem', [(4, 'has 2 elements'), (2, 'reaches past')])
def test_tensor_outside_its_storage_is_refused(tmp_path, claimed_numel, problem):
  path = tmp_path / 'short.pth'
  data_pkl = (b'\x80\x02ccollections\nOrderedDict\n)R(' + _text('w')
              + _tensor_pickle(0, np.zeros(4, np.float32), numel=claimed_numel) + b'u.')
  write_pth(path, {'w': np.zeros(2, np.float32)}, data_pkl=data_pkl)
  with pytest.raises(pickle.UnpicklingError, match=problem):
    convert.load_pth(path)


def test_load_pth_unwraps_and_strips_module(tmp_path):
  path = tmp_path / 'plain.pth'
  write_pth(path, {'module.w': np.arange(6, dtype=np.float32).reshape(2, 3)})
  assert list(convert.load_pth(path)) == ['w']
  np.testing.assert_array_equal(convert.load_pth(path)['w'], np.arange(6).reshape(2, 3))


# --- model shapes, dtypes and sizes ------------------------------------------------------------

@pytest.mark.parametrize('input_hw,dtype', [
    ((112, 112), jnp.float32), ((112, 96), jnp.float32), ((112, 96), jnp.bfloat16)])
def test_tiny_model_outputs(input_hw, dtype):
  model = iresnet('r18', width=TINY, dtype=dtype)
  x = jnp.linspace(-1, 1, 2 * input_hw[0] * input_hw[1] * 3).reshape(2, *input_hw, 3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes['params']))
  assert shapes['params']['fc']['kernel'].shape == (
      input_hw[0] // 16 * input_hw[1] // 16 * int(512 * TINY), 512)
  # Random values from the converter (a jitted init spends most of its time compiling the RNG).
  variables = convert.torch_to_flax(
      random_torch_state_dict('r18', TINY, input_hw), 'r18', TINY, input_hw)
  out, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, x)
  assert out.shape == (2, 512) and out.dtype == jnp.float32
  assert np.all(np.isfinite(out))
  assert jax.tree.map(lambda a: a.dtype, state['batch_stats']) == jax.tree.map(
      lambda a: a.dtype, shapes['batch_stats'])


@pytest.mark.parametrize('arch,published', [('r18', 24.0e6), ('r50', 43.6e6)])
def test_parameter_count(arch, published):
  model = iresnet(arch)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 112, 112, 3)), train=False))
  count = sum(x.size for x in jax.tree.leaves(shapes['params']))
  assert abs(count - published) / published < 0.005


def test_unknown_arch():
  with pytest.raises(ValueError, match=r"'r19'.*r18.*r200"):
    iresnet('r19')
  assert set(ARCHS) == {'r18', 'r34', 'r50', 'r100', 'r200'}


def test_input_not_divisible_by_16():
  with pytest.raises(ValueError, match='divisible by 16'):
    jax.eval_shape(lambda: iresnet('r18', width=TINY).init(
        jax.random.key(0), jnp.zeros((1, 112, 100, 3)), train=False))


# --- command lines: convert -> checkpoint -> embed ---------------------------------------------

@pytest.fixture(scope='module')
def tiny_converted(tmp_path_factory):
  root = tmp_path_factory.mktemp('tiny')
  state_dict = random_torch_state_dict('r18', TINY, (112, 96))
  write_pth(root / 'backbone.pth', state_dict)
  convert.main(['--from-pth', str(root / 'backbone.pth'), '--arch', 'r18', '--width', str(TINY),
                '--input-size', '112x96', '--out', str(root / 'ckpt')])
  return root, convert.torch_to_flax(state_dict, 'r18', TINY, (112, 96))


def test_convert_refuses_to_overwrite(tiny_converted, capsys):
  root, _ = tiny_converted
  with exits_with_one_line(capsys, 'already holds checkpoints'):
    convert.main(['--from-pth', str(root / 'backbone.pth'), '--arch', 'r18', '--width',
                  str(TINY), '--input-size', '112x96', '--out', str(root / 'ckpt')])


def test_checkpoint_round_trip(tiny_converted, tmp_path):
  root, variables = tiny_converted
  restored, step = load_backbone(root / 'ckpt')
  assert step == 0
  jax.tree.map(np.testing.assert_array_equal, restored, variables)
  # A training workdir: checkpoints/ with the head, optimizer state and step next to the backbone.
  item = {'params': {'backbone': variables['params'], 'head': {'w': np.ones((3, 2), np.float32)}},
          'batch_stats': variables['batch_stats'], 'step': 7,
          'opt_state': {'mu': np.zeros(5, np.float32)}}
  with ocp.CheckpointManager(tmp_path / 'checkpoints') as manager:
    manager.save(7, args=ocp.args.StandardSave(item))
  restored, step = load_backbone(tmp_path)
  assert step == 7
  jax.tree.map(np.testing.assert_array_equal, restored, variables)
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    load_backbone(tmp_path / 'checkpoints' / '7' / 'default')


@pytest.mark.slow
def test_embed_cli_with_and_without_flip(tiny_converted, tmp_path):
  root, variables = tiny_converted
  images = np.random.default_rng(1).integers(0, 256, (2, 112, 96, 3), dtype=np.uint8)
  np.save(tmp_path / 'x.npy', images)
  outputs = {}
  for flip in (False, True):
    out = tmp_path / f'flip{flip}.npy'
    embed.main(['--checkpoint', str(root / 'ckpt'), '--arch', 'r18', '--width', str(TINY),
                '--images', str(tmp_path / 'x.npy'), '--out', str(out), '--batch', '4']
               + (['--flip'] if flip else []))
    outputs[flip] = np.load(out)
  model = iresnet('r18', width=TINY)
  x = (images.astype(np.float32) / 255 - 0.5) / 0.5
  apply = jax.jit(lambda x: model.apply(variables, x, train=False))
  direct, direct_flipped = np.asarray(apply(x)), np.asarray(apply(x[:, :, ::-1]))
  assert outputs[False].shape == (2, 512) and outputs[False].dtype == np.float32
  # Random weights give large outputs; compare relative to their scale.
  scale = np.abs(direct).max()
  np.testing.assert_allclose(outputs[False], direct, rtol=0, atol=1e-5 * scale)
  np.testing.assert_allclose(outputs[True], direct + direct_flipped, rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize('array,problem', [
    (np.zeros((2, 112, 96), np.uint8), '4 dims'),
    (np.zeros((2, 112, 96, 1), np.uint8), 'channels'),
    (np.zeros((2, 112, 96, 3), np.int32), 'dtype'),
])
def test_embed_rejects_bad_images(tiny_converted, tmp_path, array, problem, capsys):
  root, _ = tiny_converted
  np.save(tmp_path / 'bad.npy', array)
  with exits_with_one_line(capsys, rf'bad\.npy.*{problem}'):
    embed.main(['--checkpoint', str(root / 'ckpt'), '--arch', 'r18', '--images',
                str(tmp_path / 'bad.npy'), '--out', str(tmp_path / 'y.npy')])


def test_embed_rejects_checkpoint_of_another_arch(tiny_converted, tmp_path, capsys):
  root, _ = tiny_converted
  np.save(tmp_path / 'x.npy', np.zeros((1, 112, 96, 3), np.uint8))
  with exits_with_one_line(capsys, r'ckpt.*layer1_2.*missing from the checkpoint'):
    embed.main(['--checkpoint', str(root / 'ckpt'), '--arch', 'r34', '--width', str(TINY),
                '--images', str(tmp_path / 'x.npy'), '--out', str(tmp_path / 'y.npy')])
