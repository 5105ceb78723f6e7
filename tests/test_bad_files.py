"""Files from elsewhere, damaged or crafted: each reader and each command ends in a value or in one
line naming the file (exit status 2), never a traceback, a hang or a silent wrong result.

The fuzz cases are seeded and bounded (a few dozen mutations in all).
"""
import io
import json
import os
import pickle
import struct
import threading
import zlib

import numpy as np
from PIL import Image
import pytest

from synface_jax import config as config_lib, evaluate, file_errors
from synface_jax.generators.procedural import bfm

# --- .mat: dimensions and inflation are bounded before scipy reads the file -----------------------


def _mat_header():
  return b'MATLAB 5.0 MAT-file'.ljust(116, b' ') + b'\0' * 8 + struct.pack('<H', 0x0100) + b'IM'


def _element(kind, payload, pad=True):
  data = struct.pack('<II', kind, len(payload)) + payload
  return data + b'\0' * (-len(data) % 8 if pad else 0)


def _matrix(dims, name=b'a', values=b'', array_class=6):
  """A miMATRIX element: double array `name` of `dims` holding `values` (raw float64 bytes)."""
  flags = _element(6, struct.pack('<II', array_class, 0))
  shape = _element(5, struct.pack(f'<{len(dims)}i', *dims))
  return _element(14, flags + shape + _element(1, name) + _element(9, values))


def _compressed(element, declared=None):
  """A miCOMPRESSED element holding `element`, its inner size tag replaced by `declared`."""
  if declared is not None:
    element = element[:4] + struct.pack('<I', declared) + element[8:]
  return _element(15, zlib.compress(element), pad=False)


def _write(tmp_path, name, data):
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def test_mat_reader_reads_a_hand_built_file(tmp_path):
  values = np.arange(6, dtype='<f8')
  path = _write(tmp_path, 'ok.mat', _mat_header() + _matrix([2, 3], b'a', values.tobytes())
                + _compressed(_matrix([3, 2], b'b', values.tobytes())))
  fields = bfm.read_mat(path)
  np.testing.assert_array_equal(fields['a'], values.reshape(3, 2).T)  # MATLAB is column-major.
  np.testing.assert_array_equal(fields['b'], values.reshape(2, 3).T)


@pytest.mark.parametrize('build, words', [
    (lambda: _matrix([2, -3], values=b'\0' * 48), 'negative dimension'),
    (lambda: _matrix([100000, 100000], values=b'\0' * 8), r'need 80000000000 bytes'),
    (lambda: _compressed(_matrix([2, -3], values=b'\0' * 48)), 'negative dimension'),
    (lambda: _compressed(_matrix([65536, 65536], values=b'\0' * 8)), 'need 34359738368'),
    # A data type code scipy does not know: its reader crashed the process on this (SIGSEGV).
    (lambda: _matrix([1, 2], values=b'\0' * 16)[:-24] + struct.pack('<II', 73, 16) + b'\0' * 16,
     'unknown type 73'),
    # A small declared size, a stream that inflates to 4 MB: the bomb stops at the declared size.
    (lambda: _compressed(_matrix([1, 4 << 17], values=b'\0' * (4 << 20)), declared=200),
     'inflates past'),
    (lambda: _element(14, b'\0' * 64)[:8] + struct.pack('<I', 1 << 31), 'past the end'),
])
def test_mat_reader_refuses_crafted_dimensions_and_bombs(tmp_path, build, words):
  path = _write(tmp_path, 'bad.mat', _mat_header() + build())
  with pytest.raises(bfm.MatFileError, match=rf'bad\.mat.*{words}'):
    bfm.read_mat(path)


def test_mat_variables_of_other_classes_are_not_handed_to_scipy(tmp_path):
  values = np.arange(4, dtype='<f8').tobytes()
  cell = _matrix([1, 1], b'c', b'\0' * 8, array_class=1)
  cell = cell[:-16] + struct.pack('<II', 73, 8) + b'\0' * 8  # Content scipy would crash on.
  path = _write(tmp_path, 'mixed.mat', _mat_header() + cell + _compressed(cell)
                + _matrix([2, 2], b'a', values))
  fields = bfm.read_mat(path)
  assert list(fields) == ['a']
  np.testing.assert_array_equal(fields['a'], np.arange(4.0).reshape(2, 2).T)


def test_mat_variable_above_the_bound_is_refused_before_inflating(tmp_path, monkeypatch):
  monkeypatch.setattr(bfm, 'MAX_VARIABLE_BYTES', 1 << 20)
  big = _compressed(_matrix([1, 1 << 18], values=b'\0' * (8 << 18)))  # 2 MB of zeros, ~2 KB.
  path = _write(tmp_path, 'big.mat', _mat_header() + big)
  with pytest.raises(bfm.MatFileError, match='above the'):
    bfm.read_mat(path)


def test_mat_v4_negative_dimension(tmp_path):
  path = _write(tmp_path, 'v4.mat', struct.pack('<5i', 0, -2, 3, 0, 2) + b'a\0' + b'\0' * 48)
  with pytest.raises(bfm.MatFileError, match='v4.mat.*bad header'):
    bfm.read_mat(path)


def test_mat_fuzz_ends_in_a_value_or_a_named_error(tmp_path):
  rng = np.random.default_rng(0)
  values = np.arange(12, dtype='<f8').tobytes()
  good = _mat_header() + _matrix([3, 4], b'a', values) + _compressed(_matrix([4, 3], b'b', values))
  cases = [good[:n] for n in (0, 5, 127, 130, 200, len(good) - 3)]
  for _ in range(30):
    data = bytearray(good)
    for i in rng.integers(116, len(good), size=rng.integers(1, 4)):
      data[i] = rng.integers(0, 256)
    cases.append(bytes(data))
  for i, data in enumerate(cases):
    path = _write(tmp_path, f'f{i}.mat', data)
    try:
      bfm.read_mat(path)
    except bfm.MatFileError as e:
      assert f'f{i}.mat' in str(e)


# --- images: 16-bit PNG, FIFOs, dangling and folder symlinks -------------------------------------


def test_16_bit_png_is_scaled_to_8_bits_not_clipped():
  from synface_jax.data import images
  grey = (np.arange(256 * 4).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
  buffer = io.BytesIO()
  Image.fromarray(grey).save(buffer, 'PNG')
  data, note, hw = images.check_image(buffer.getvalue())
  assert hw == (32, 32) and 'stored as RGB PNG' in note
  expected = np.rint(grey.astype(np.float64) * 255 / 65535).astype(np.uint8)
  stored = np.asarray(Image.open(io.BytesIO(data)))
  assert stored.shape == (32, 32, 3)
  np.testing.assert_array_equal(stored[..., 0], expected)
  np.testing.assert_array_equal(images.decode(buffer.getvalue())[..., 1], expected)
  assert (stored == 255).mean() < 0.01  # Pillow's own conversion leaves 99.6% white.


def _face(value, size=16):
  buffer = io.BytesIO()
  Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, 'PNG')
  return buffer.getvalue()


def _folders(root):
  for name, count in (('a', 3), ('b', 2)):
    os.makedirs(root / name, exist_ok=True)
    for i in range(count):
      (root / name / f'{i}.png').write_bytes(_face(40 * i + 10))
  return root


def _examples_within(fs, seconds=60):
  from synface_jax.data import source_folder
  out = []
  worker = threading.Thread(target=lambda: out.extend(source_folder.examples(fs)), daemon=True)
  worker.start()
  worker.join(seconds)
  assert not worker.is_alive(), 'reading the folder hangs'
  return out


def test_fifo_and_dangling_symlink_are_skipped_without_hanging(tmp_path):
  from synface_jax.data import prepare, source_folder
  root = _folders(tmp_path / 'set')
  os.mkfifo(root / 'a' / 'fifo.jpg')
  os.symlink(root / 'a' / 'gone.png', root / 'b' / 'dangling.png')
  fs = source_folder.list_folders(str(root))  # Probes the size: must not block on the FIFO.
  examples = _examples_within(fs)
  assert sorted(key for key, _ in examples) == ['a/0.png', 'a/1.png', 'a/2.png', 'b/0.png',
                                                 'b/1.png']
  skipped = dict(fs.report.skipped)
  assert skipped['a/fifo.jpg'] == 'not a regular file'
  assert skipped['b/dangling.png'].startswith('cannot read')
  assert prepare.fingerprint(str(root))  # The dangling link does not stop the fingerprint.


def test_symlinked_identity_folders_are_part_of_the_fingerprint(tmp_path):
  from synface_jax.data import prepare
  target = _folders(tmp_path / 'elsewhere')
  root = tmp_path / 'set'
  root.mkdir()
  for name in ('a', 'b'):
    os.symlink(target / name, root / name)
  before = prepare.config_name(str(root))
  (target / 'b' / '1.png').write_bytes(_face(99, size=16) + b'\0')  # New content and size.
  after = prepare.config_name(str(root))
  assert before != after
  (target / 'a' / '3.png').write_bytes(_face(7))
  assert prepare.config_name(str(root)) != after


# --- real.max_skipped_fraction --------------------------------------------------------------------


def test_a_truncated_rec_over_the_skipped_fraction_stops_the_run(tmp_path):
  from synface_jax import data
  from synface_jax.data import recordio, source_rec
  root = tmp_path / 'rec'
  root.mkdir()
  lines = []
  with open(root / 'train.rec', 'wb') as f:
    for key in range(1, 21):
      payload = recordio.pack(recordio.Header(0, float(key % 2), key, 0), _face(key * 10, 8))
      lines.append(f'{key}\t{recordio.write_record(f, payload)}')
  (root / 'train.idx').write_text('\n'.join(lines) + '\n')
  (root / 'property').write_text('2,8,8')
  size = os.path.getsize(root / 'train.rec')
  with open(root / 'train.rec', 'r+b') as f:
    f.truncate(size // 2)  # About half of the records are lost.
  rs = source_rec.open_set(str(root))
  kept = len(list(source_rec.examples(rs)))
  meta = rs.report.to_json()
  lost = meta['skipped']
  assert 0 < kept < 20 and kept + lost == 20
  with pytest.raises(ValueError, match=rf"rec.*{lost} of 20 images could not be used.*"
                     rf"real.max_skipped_fraction=0.01.*truncated record"):
    data.check_skipped(meta, kept, str(root), 0.01)
  data.check_skipped(meta, kept, str(root), 0.6)  # A looser bound lets it train.


def test_files_that_are_not_images_do_not_count_as_skipped():
  from synface_jax import data
  meta = {'skipped_files': [{'file': f'a/{i}.txt', 'reason': 'not an image file'}
                            for i in range(50)] + [{'file': 'c/', 'reason': 'empty identity folder'}]}
  data.check_skipped(meta, 100, 'set', 0.01)
  meta['skipped_files'].append({'file': 'a/x.jpg', 'reason': 'cannot decode: truncated'})
  data.check_skipped(meta, 100, 'set', 0.01)  # 1 of 101 is under 1%.
  meta['skipped_files'].append({'file': 'a/y.jpg', 'reason': 'cannot decode: truncated'})
  with pytest.raises(ValueError, match='2 of 102 images'):
    data.check_skipped(meta, 100, 'set', 0.01)


def test_max_skipped_fraction_is_checked():
  c = config_lib.base_config()
  c.real.path = '/data'
  c.real.max_skipped_fraction = 1.5
  with pytest.raises(ValueError, match='real.max_skipped_fraction=1.5'):
    config_lib.validate(c)


# --- pair sets: issame must be booleans, and there must be pairs ----------------------------------


@pytest.mark.parametrize('issame, words', [
    (np.array(['no', 'yes']), 'issame is <U3'),
    (np.array([0.0, 1.0]), 'issame is float64'),
    (np.array([0, 2]), 'issame is int64'),
    (np.zeros(0, bool), 'no pairs'),
])
def test_pair_set_issame_of_another_dtype_is_refused(tmp_path, issame, words):
  from synface_jax.eval import sets
  path = tmp_path / 'pairs.npz'
  np.savez(path, images=np.zeros((2 * len(issame), 16, 16, 3), np.uint8), issame=issame)
  with pytest.raises(ValueError, match=rf'pairs\.npz: .*{words}'):
    sets.load_pairs(str(path))
  np.testing.assert_array_equal(sets.checked_issame(np.array([1, 0, 1]), 'x'),
                                [True, False, True])


def test_bin_issame_as_strings_and_empty_packs_are_refused(tmp_path, capsys):
  face = _face(5)
  for name, obj, words in [('strings.bin', ([face, face], ['no']), "issame flag 0 is 'no', not a bool"),
                           ('empty.bin', ([], []), 'holds no pairs')]:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj))
    assert evaluate.main(['bin', '--bin', str(path), '--out', str(tmp_path / 'o.npz')]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err, err
    assert words in err, err


# --- generator names and files are checked with the config ----------------------------------------


def test_unknown_generator_and_missing_generator_files_are_refused_by_validate(tmp_path):
  c = config_lib.base_config()
  c.regime = 'synthetic'
  c.generator.name = 'stylegan9'
  with pytest.raises(ValueError, match=r"generator.name='stylegan9'.*procedural"):
    config_lib.validate(c)
  c.generator.name = 'procedural'
  c.generator.procedural.bfm_path = str(tmp_path / 'missing.mat')
  with pytest.raises(ValueError, match='generator.procedural.bfm_path.*not a file'):
    config_lib.validate(c)
  c.generator.procedural.bfm_path = None
  c.generator.name = 'discofacegan'
  with pytest.raises(ValueError, match='generator.discofacegan.checkpoint'):
    config_lib.validate(c)
  c.generator.discofacegan.checkpoint = str(tmp_path / 'nowhere')
  with pytest.raises(ValueError, match='not a directory'):
    config_lib.validate(c)


# --- every command: one line naming the file, exit status 2 ----------------------------------------


def run_cli(main, argv, capsys):
  """(exit status, stdout, stderr) of a command run in-process; other exceptions propagate."""
  capsys.readouterr()
  try:
    code = main(argv) or 0
  except SystemExit as e:
    code = e.code
  out = capsys.readouterr()
  return code, out.out, out.err


def assert_one_line(result, name):
  code, out, err = result
  line = (err.strip() or out.strip()).splitlines()[-1]  # After any progress lines.
  assert code == 2, (code, out[-2000:], err[-2000:])
  assert 'Traceback' not in err and sum('error' in l for l in err.splitlines()) <= 1, err
  assert name in line, line


def _mutations(good: bytes, seed: int, count: int = 8):
  rng = np.random.default_rng(seed)
  cases = [good[:n] for n in sorted({0, 1, 7, len(good) // 3, len(good) // 2, len(good) - 1})]
  for _ in range(count):
    data = bytearray(good)
    for i in rng.integers(0, len(good), size=rng.integers(1, 5)):
      data[i] = rng.integers(0, 256)
    cases.append(bytes(data))
  return cases


def test_evaluate_bin_fuzz(tmp_path, capsys):
  good = pickle.dumps(([_face(10), _face(20), _face(30), _face(40)], [True, False]), protocol=2)
  for i, data in enumerate(_mutations(good, seed=1)):
    path = _write(tmp_path, f'm{i}.bin', data)
    code, out, err = result = run_cli(evaluate.main, ['bin', '--bin', path, '--out',
                                                     str(tmp_path / 'o.npz')], capsys)
    if code != 0:
      assert_one_line(result, f'm{i}.bin')


def test_evaluate_pairs_and_embed_inputs_fuzz(tmp_path, capsys):
  buffer = io.BytesIO()
  np.savez(buffer, embeddings=np.ones((40, 4), np.float32), issame=np.arange(20) % 2 == 0)
  for i, data in enumerate(_mutations(buffer.getvalue(), seed=2)):
    path = _write(tmp_path, f'e{i}.npz', data)
    code, out, err = result = run_cli(
        evaluate.main, ['pairs', '--embeddings', path, '--protocol', 'synface'], capsys)
    if code != 0:
      assert_one_line(result, f'e{i}.npz')
  # .npz and .npy image inputs of embed are read before any checkpoint.
  from synface_jax import embed
  buffer = io.BytesIO()
  np.savez(buffer, images=np.zeros((2, 16, 16, 3), np.uint8), issame=np.array([True]))
  npy = io.BytesIO()
  np.save(npy, np.zeros((2, 16, 16, 3), np.uint8))
  for suffix, good, seed in (('npz', buffer.getvalue(), 3), ('npy', npy.getvalue(), 4)):
    for i, data in enumerate(_mutations(good, seed=seed, count=4)):
      path = _write(tmp_path, f'i{i}.{suffix}', data)
      try:
        embed.load_inputs(path)
        named = 'no-checkpoint'  # Readable: the missing checkpoint is the error.
      except file_errors.FILE_ERRORS:
        named = f'i{i}.{suffix}'
      assert_one_line(run_cli(embed.main, ['--checkpoint', str(tmp_path / 'no-checkpoint'),
                                           '--images', path, '--out', str(tmp_path / 'o.npy')],
                              capsys), named)


def test_converters_and_generate_name_a_damaged_file(tmp_path, capsys):
  from synface_jax import generate
  from synface_jax.generators.discofacegan import convert as gan_convert
  from synface_jax.models import convert, export
  garbage = _write(tmp_path, 'garbage.bin', bytes(range(256)) * 3)
  pth = io.BytesIO()
  import zipfile
  with zipfile.ZipFile(pth, 'w') as archive:
    archive.writestr('archive/data.pkl', pickle.dumps({'fc.weight': 1}, protocol=2))
  cut_pth = _write(tmp_path, 'cut.pth', pth.getvalue()[:-30])
  wrong_pth = _write(tmp_path, 'wrong.pth', pth.getvalue())
  for path in (garbage, cut_pth, wrong_pth):
    assert_one_line(run_cli(convert.main, ['--from-pth', path, '--arch', 'r18', '--out',
                                           str(tmp_path / 'out')], capsys), os.path.basename(path))
  for data, name in ((b'\x80\x02}q\x00(X\x01\x00\x00\x00', 'cut.pkl'),
                     (pickle.dumps([1, 2], protocol=2), 'list.pkl')):
    path = _write(tmp_path, name, data)
    assert_one_line(run_cli(gan_convert.main, ['--pkl', path, '--vae-dir', str(tmp_path),
                                               '--out', str(tmp_path / 'g')], capsys), name)
  bad_ckpt = tmp_path / 'ckpt'
  (bad_ckpt / 'checkpoints' / '3').mkdir(parents=True)
  (bad_ckpt / 'checkpoints' / 'model.json').write_text('{"arch": ')
  assert_one_line(run_cli(export.main, ['--checkpoint', str(bad_ckpt), '--to', 'pth', '--out',
                                        str(tmp_path / 'x.pth')], capsys), 'ckpt')
  mat = _write(tmp_path, 'face.mat', _mat_header() + _matrix([2, -1]))
  assert_one_line(run_cli(generate.main, ['--generator', 'procedural', '--option',
                                          f'bfm_path={mat}', '--npz', str(tmp_path / 'f.npz')],
                          capsys), 'face.mat')


def test_data_cli_names_a_damaged_pack(tmp_path, capsys):
  pytest.importorskip('tensorflow_datasets')
  from synface_jax.data import __main__ as data_cli
  packs = tmp_path / 'packs'
  packs.mkdir()
  (packs / 'lfw.bin').write_bytes(pickle.dumps(([_face(1)], 'x'))[:-5])
  code, out, err = run_cli(data_cli.main, ['stats', str(packs)], capsys)
  assert code == 2 and 'Traceback' not in err
  line = json.loads(out.strip().splitlines()[-1])
  assert 'lfw.bin' in line['error']


def test_embed_refuses_nan_weights_and_writes_nothing(tmp_path, capsys):
  import jax
  from conftest import write_tiny_checkpoint
  from synface_jax import embed
  from synface_jax.models import convert, model_spec
  variables = write_tiny_checkpoint(tmp_path / 'good', (32, 32), seed=0)
  poisoned = jax.tree.map(lambda v: np.full_like(v, np.nan) if v.dtype.kind == 'f' else v,
                          variables)
  convert.save_backbone(tmp_path / 'nan' / 'checkpoints', poisoned)
  model_spec.ModelSpec('r18', 1 / 16, input_size=(32, 32)).write(tmp_path / 'nan' / 'checkpoints')
  np.save(tmp_path / 'faces.npy', np.zeros((3, 32, 32, 3), np.uint8))
  out = tmp_path / 'emb.npy'
  result = run_cli(embed.main, ['--checkpoint', str(tmp_path / 'nan'), '--images',
                                str(tmp_path / 'faces.npy'), '--out', str(out)], capsys)
  assert_one_line(result, 'nan')
  assert 'weights of step 0 hold NaN or infinite values' in result[2]
  assert not out.exists()


def test_file_errors_describe():
  e = file_errors.FileError('x.bin: bad')
  assert file_errors.describe('x.bin', e) == 'x.bin: bad'
  assert file_errors.describe('x.bin', IndexError('list index out of range')) == (
      'x.bin: cannot read (IndexError: list index out of range)')
  with pytest.raises(file_errors.FileError, match=r'^a\.pkl: cannot read \(KeyError'):
    with file_errors.reading('a.pkl'):
      {}['k']  # pylint: disable=pointless-statement


@pytest.mark.slow
def test_main_names_a_damaged_pair_pack_and_an_unknown_generator(tmp_path):
  import subprocess
  import sys
  from conftest import REPO, subprocess_env
  pack = _write(tmp_path, 'lfw.bin', pickle.dumps(([_face(1)] * 20, [True] * 10))[:-40])
  base = [sys.executable, os.path.join(REPO, 'tests', 'toy_main.py'),
          f'--config={os.path.join(REPO, "configs", "synthetic.py")}',
          '--config.generator.name=toy',
          '--config.model.width=0.0625', '--config.model.input_size=(32,32)',
          '--config.synthetic.num_identities=8', '--config.optim.batch_size=8',
          '--config.num_train_steps=2', '--config.compilation_cache_dir=off']
  env = subprocess_env()
  missing = [f'--config={tmp_path / "nope.py"}']
  for extra, name, workdir in (
      (missing, 'nope.py', 'w0'),
      ([f'--config.eval.pairs=("{pack}",)'], 'lfw.bin', 'w1'),
      (['--config.generator.name=stylegan9'], 'generator.name', 'w2'),
      ([], 'memory://', 'memory://bucket/run'),
      (['--config.optim.batchsize=8'], 'batchsize', 'w3')):
    proc = subprocess.run(base + extra + [f'--workdir={tmp_path / workdir}'
                                          if '://' not in workdir else f'--workdir={workdir}'],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and len(errors) == 1 and name in errors[0], errors
  assert not os.path.exists(tmp_path / 'memory:')  # The unknown scheme made no local folder.
