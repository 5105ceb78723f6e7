"""Weights out: checkpoint -> insightface state dict (.pth without torch, safetensors)."""
import json
import os

from conftest import exits_with_one_line, reference_file
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synface_jax.models import convert, export, iresnet, model_spec
from conftest import IRESNET_REF as REF, random_torch_state_dict

TINY = 1 / 16


def _assert_same_state_dict(got, want):
  assert list(got) == list(want)  # insightface's names, in insightface's order.
  for key in want:
    assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.fixture(scope='module')
def golden(tmp_path_factory):
  """The golden insightface r18 .pth, converted by the command line."""
  path = reference_file(REF, 'iresnet18_quantized.pth')
  root = tmp_path_factory.mktemp('golden')
  convert.main(['--from-pth', str(path), '--arch', 'r18', '--out', str(root / 'ckpt')])
  return convert.load_pth(path), root


def test_golden_pth_round_trips_exactly(golden, tmp_path):
  original, root = golden
  export.main(['--checkpoint', str(root / 'ckpt'), '--to', 'pth', '--out', str(tmp_path / 'r18.pth')])
  # features.weight != 1 in this file: it was folded into fc on import and is unfolded again;
  # num_batches_tracked (3) was kept beside the weights.
  assert not np.all(original['features.weight'] == 1)
  _assert_same_state_dict(convert.load_pth(tmp_path / 'r18.pth'), original)


def test_golden_safetensors(golden, tmp_path):
  safetensors_numpy = pytest.importorskip('safetensors.numpy')
  original, root = golden
  out = tmp_path / 'r18.safetensors'
  export.main(['--checkpoint', str(root / 'ckpt'), '--to', 'safetensors', '--out', str(out)])
  loaded = safetensors_numpy.load_file(str(out))
  _assert_same_state_dict({k: loaded[k] for k in original}, original)
  assert set(loaded) == set(original)


def test_golden_pth_loads_in_torch(golden, tmp_path):
  torch = pytest.importorskip('torch')
  original, root = golden
  export.main(['--checkpoint', str(root / 'ckpt'), '--to', 'pth', '--out', str(tmp_path / 'r18.pth')])
  for mmap in (False, True):  # mmap needs torch's 64-byte alignment of every storage.
    loaded = torch.load(tmp_path / 'r18.pth', weights_only=True, mmap=mmap)
    _assert_same_state_dict({k: v.numpy() for k, v in loaded.items()}, original)


def test_r50_names_order_and_shapes():
  """flax_to_torch at full size gives exactly insightface's iresnet50 state dict keys."""
  keys = json.loads(reference_file(REF, 'iresnet50_keys.json').read_text())
  shapes = jax.eval_shape(lambda: iresnet('r50').init(
      jax.random.key(0), jnp.zeros((1, 112, 112, 3)), train=False))
  variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), dict(shapes))
  state_dict = export.flax_to_torch(variables, 'r50', (112, 112))
  assert [[k, list(v.shape)] for k, v in state_dict.items()] == keys


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """A tiny r18 at 112x96 with random weights (features.weight != 1), converted."""
  root = tmp_path_factory.mktemp('tiny')
  state_dict = random_torch_state_dict('r18', TINY, (112, 96))
  for key in list(state_dict):
    if key.endswith(('running_var', 'running_mean')):
      state_dict[key.rsplit('.', 1)[0] + '.num_batches_tracked'] = np.array(5, np.int64)
  variables = convert.torch_to_flax(state_dict, 'r18', TINY, (112, 96))
  convert.save_backbone(root / 'ckpt', variables, convert.insightface_extras(state_dict))
  model_spec.ModelSpec('r18', TINY, input_size=(112, 96)).write(root / 'ckpt')
  return root, state_dict, variables


def test_flax_to_torch_inverts_the_import(tiny, tmp_path):
  root, state_dict, variables = tiny
  out = tmp_path / 'tiny.pth'
  export.main(['--checkpoint', str(root / 'ckpt'), '--to', 'pth', '--out', str(out)])
  exported = convert.load_pth(out)
  # Back through the importer: the same Flax variables, bit for bit.
  jax.tree.map(np.testing.assert_array_equal,
               convert.torch_to_flax(exported, 'r18', TINY, (112, 96)), variables)
  # fc.weight is flattened over NCHW (the channel index varies slowest) in the exported file.
  kernel = variables['params']['fc']['kernel'] / state_dict['features.weight'][None]
  c = kernel.shape[0] // (7 * 6)
  np.testing.assert_allclose(exported['fc.weight'][:, 1 * 42 + 2 * 6 + 3],
                             kernel[(2 * 6 + 3) * c + 1], rtol=1e-6)
  np.testing.assert_allclose(exported['fc.weight'], state_dict['fc.weight'], rtol=1e-6)
  assert int(exported['layer2.0.bn1.num_batches_tracked']) == 5


def test_checkpoint_without_model_json(tiny, tmp_path, capsys):
  root, _, variables = tiny
  bare = tmp_path / 'bare'
  convert.save_backbone(bare, variables)
  assert not os.path.exists(bare / model_spec.FILENAME)
  # Arch, width and embedding size are read off the weights; 112x96 is not square, so it is asked for.
  with exits_with_one_line(capsys, 'give the input size'):
    export.main(['--checkpoint', str(bare), '--to', 'pth', '--out', str(tmp_path / 'x.pth')])
  export.main(['--checkpoint', str(bare), '--to', 'pth', '--out', str(tmp_path / 'x.pth'),
               '--input-size', '112x96'])
  exported = convert.load_pth(tmp_path / 'x.pth')
  np.testing.assert_array_equal(exported['features.weight'], np.ones(512, np.float32))
  assert int(exported['bn1.num_batches_tracked']) == 0  # Step 0 of a bare checkpoint.
  with exits_with_one_line(capsys, 'layer1_2.*missing from the checkpoint'):
    export.main(['--checkpoint', str(bare), '--to', 'pth', '--out', str(tmp_path / 'y.pth'),
                 '--arch', 'r34', '--width', str(TINY), '--input-size', '112x96'])


def test_model_spec_inferred_from_weights(tiny):
  _, _, variables = tiny
  spec = model_spec.infer_spec(variables, (112, 96))
  assert (spec.arch, spec.width, spec.num_features, spec.input_size) == ('r18', TINY, 512, (112, 96))


def test_onnx_matches_the_model(tiny, tmp_path):
  pytest.importorskip('jax2onnx')
  ort = pytest.importorskip('onnxruntime')
  root, _, variables = tiny
  export.main(['--checkpoint', str(root / 'ckpt'), '--to', 'onnx', '--out', str(tmp_path / 'm.onnx')])
  session = ort.InferenceSession(str(tmp_path / 'm.onnx'))
  assert [i.name for i in session.get_inputs()] == ['input']
  x = np.random.default_rng(3).uniform(-1, 1, (3, 112, 96, 3)).astype(np.float32)
  got = session.run(['embedding'], {'input': x.transpose(0, 3, 1, 2)})[0]  # NCHW, as insightface's
  want = np.asarray(iresnet('r18', width=TINY).apply(variables, x, train=False))
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
