"""Tests for synface_jax.evaluate: protocols, pair loaders, evaluate_pairs and the CLI."""
import json
import os
import pickle

import numpy as np
import pytest
from conftest import reference_file
from PIL import Image

from synface_jax import evaluate as ev

GOLDEN_DIR = 'insightface_synface'

INSIGHTFACE_KEYS = {
    'fold_accuracy': 'insightface_accuracy',
    'accuracy': 'insightface_acc_mean',
    'std': 'insightface_acc_std',
    'thresholds': 'insightface_best_thresholds',
    'fold_sizes': 'insightface_fold_test_sizes',
    'roc_thresholds': 'insightface_roc_thresholds',
    'tpr': 'insightface_tpr',
    'fpr': 'insightface_fpr',
    'val': 'insightface_val',
    'val_std': 'insightface_val_std',
    'far': 'insightface_far',
    'fold_val': 'insightface_val_per_fold',
    'fold_far': 'insightface_far_per_fold',
    'val_thresholds': 'insightface_val_thresholds',
}
SYNFACE_KEYS = {
    'fold_accuracy': 'synface_accuracy',
    'accuracy': 'synface_acc_mean',
    'std': 'synface_acc_std',
    'thresholds': 'synface_best_thresholds',
    'fold_sizes': 'synface_fold_test_sizes',
    'similarity': 'synface_cosine',
}


@pytest.fixture(scope='module')
def golden():
  with np.load(reference_file(GOLDEN_DIR, 'verification.npz')) as data:
    return {k: data[k] for k in data.files}


def _pairs_at_distance(dists):
  """2-D unit pairs whose squared L2 distance is ``dists`` (cosine 1 - d / 2)."""
  cos = 1.0 - np.asarray(dists) / 2.0
  e1 = np.tile([1.0, 0.0], (len(cos), 1))
  e2 = np.stack([cos, np.sqrt(1.0 - cos**2)], axis=1)
  return e1, e2


def _pairs_at_cosine(cosines):
  """2-D unit pairs whose cosine similarity is ``cosines``."""
  return _pairs_at_distance(2.0 - 2.0 * np.asarray(cosines))


# ------------------------------------------------------------------------------------------------
# Protocols against the golden reference.
# ------------------------------------------------------------------------------------------------


def test_insightface_matches_golden(golden):
  result = ev.insightface_protocol(golden['embeddings1'], golden['embeddings2'], golden['issame'],
                                   far_target=float(golden['insightface_far_target']))
  for ours, theirs in INSIGHTFACE_KEYS.items():
    np.testing.assert_allclose(result[ours], golden[theirs], rtol=0, atol=1e-12, err_msg=ours)
  np.testing.assert_array_equal(result['fold_accuracy'], golden['insightface_accuracy'])
  np.testing.assert_array_equal(result['thresholds'], golden['insightface_best_thresholds'])
  np.testing.assert_array_equal(result['fold_sizes'], golden['insightface_fold_test_sizes'])
  np.testing.assert_array_equal(result['val_thresholds'], golden['insightface_val_thresholds'])
  dist = ev.squared_l2(ev.l2_normalize(golden['embeddings1']),
                       ev.l2_normalize(golden['embeddings2']))
  np.testing.assert_array_equal(dist, golden['dist_sq'])


def test_synface_matches_golden(golden):
  result = ev.synface_protocol(golden['embeddings1'], golden['embeddings2'], golden['issame'])
  for ours, theirs in SYNFACE_KEYS.items():
    np.testing.assert_allclose(result[ours], golden[theirs], rtol=0, atol=1e-12, err_msg=ours)
  np.testing.assert_array_equal(result['fold_accuracy'], golden['synface_accuracy'])
  np.testing.assert_array_equal(result['thresholds'], golden['synface_best_thresholds'])
  np.testing.assert_array_equal(result['fold_sizes'], golden['synface_fold_test_sizes'])
  np.testing.assert_array_equal(ev.SYNFACE_THRESHOLDS, golden['synface_thresholds'])
  np.testing.assert_array_equal(golden['synface_predicts'][:, 0], result['similarity'])


def test_verify_dispatches(golden):
  args = golden['embeddings1'], golden['embeddings2'], golden['issame']
  assert ev.verify(*args, 'insightface')['accuracy'] == golden['insightface_acc_mean']
  assert ev.verify(*args, 'synface')['accuracy'] == golden['synface_acc_mean']
  with pytest.raises(ValueError, match='lfw'):
    ev.verify(*args, 'lfw')


# ------------------------------------------------------------------------------------------------
# Protocols on hand-made cases.
# ------------------------------------------------------------------------------------------------


def _hand_case(same_value, diff_value, hard_value):
  """20 pairs: even pairs 'same' except pair 7, a hard negative; odd pairs 'different'."""
  issame = np.arange(20) % 2 == 0
  values = np.where(issame, same_value, diff_value)
  values[7] = hard_value
  return values, issame


def test_insightface_hand_case():
  # Same pairs at distance 0.305, different at 1.205, one different pair (fold 3) at 0.105.
  # Any threshold in 0.31 .. 1.20 errs only on the hard negative; the FIRST, 0.31, is chosen.
  dists, issame = _hand_case(0.305, 1.205, 0.105)
  e1, e2 = _pairs_at_distance(dists)
  result = ev.insightface_protocol(e1, e2, issame)
  np.testing.assert_array_equal(result['thresholds'], np.full(10, ev.INSIGHTFACE_THRESHOLDS[31]))
  expected = np.ones(10)
  expected[3] = 0.5
  np.testing.assert_array_equal(result['fold_accuracy'], expected)
  assert result['accuracy'] == pytest.approx(0.95, abs=1e-15)
  assert result['std'] == pytest.approx(0.15, abs=1e-15)
  np.testing.assert_array_equal(result['fold_sizes'], np.full(10, 2))
  # ROC at a threshold of 1.0: every test fold accepts its same pair and rejects its different
  # one, except fold 3 whose only test "different" pair is accepted (fpr 1).
  k = 100
  assert result['tpr'][k] == 1.0
  assert result['fpr'][k] == pytest.approx(0.1, abs=1e-15)


def test_insightface_is_strict_and_normalises():
  # A distance exactly on a grid value is not accepted at that threshold: with same pairs at
  # distance 0 and different pairs at 2 (orthogonal), the first perfect threshold is 0.01.
  issame = np.arange(10) % 2 == 0
  e1 = np.tile([3.0, 0.0], (10, 1))  # not unit: normalised internally
  e2 = np.where(issame[:, None], [5.0, 0.0], [0.0, 2.0])
  result = ev.insightface_protocol(e1, e2, issame)
  np.testing.assert_array_equal(result['thresholds'], np.full(10, 0.01))
  assert result['accuracy'] == 1.0


def test_synface_hand_case():
  # Same pairs at cosine 0.6023, different at -0.3023, one different pair (fold 3) at 0.8023.
  # Thresholds -0.300 .. 0.600 err only on the hard negative; ties go to the LAST, 0.600.
  cosines, issame = _hand_case(0.6023, -0.3023, 0.8023)
  e1, e2 = _pairs_at_cosine(cosines)
  result = ev.synface_protocol(e1, e2, issame)
  assert ev.SYNFACE_THRESHOLDS[320] == pytest.approx(0.6)
  np.testing.assert_array_equal(result['thresholds'], np.full(10, ev.SYNFACE_THRESHOLDS[320]))
  expected = np.ones(10)
  expected[3] = 0.5
  np.testing.assert_array_equal(result['fold_accuracy'], expected)
  assert result['accuracy'] == pytest.approx(0.95, abs=1e-15)
  assert result['std'] == pytest.approx(0.15, abs=1e-15)
  np.testing.assert_allclose(result['similarity'], cosines / (1 + 1e-5), rtol=1e-12)


def test_fold_sizes_when_n_not_divisible_by_ten():
  rng = np.random.default_rng(0)
  e1, e2 = rng.normal(size=(23, 4)), rng.normal(size=(23, 4))
  issame = np.arange(23) % 2 == 0
  # KFold: 23 = 10 * 2 + 3, so the first three folds hold 3 pairs.
  np.testing.assert_array_equal(
      ev.insightface_protocol(e1, e2, issame)['fold_sizes'], [3, 3, 3, 2, 2, 2, 2, 2, 2, 2])
  # SynFace: boundaries floor(23 i / 10) = 0 2 4 6 9 11 13 16 18 20 23.
  np.testing.assert_array_equal(
      ev.synface_protocol(e1, e2, issame)['fold_sizes'], [2, 2, 2, 3, 2, 2, 3, 2, 2, 3])
  assert ev.synface_fold_bounds(23)[3] == (6, 9)
  assert ev.insightface_fold_bounds(23)[3] == (9, 11)


def test_slinear_interp_with_repeats():
  x = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
  y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
  # Between the last sample of level 0 (y = 2) and the first of level 1 (y = 3).
  assert ev.slinear_interp(x, y, 0.5) == 2.5
  assert ev.slinear_interp(x, y, 0.25) == 2.25
  # Unsorted input is stably sorted first: level 0 then holds y = 2, 1, 0 and level 1 y = 4, 3.
  assert ev.slinear_interp(x[::-1], y[::-1], 0.5) == 2.0
  with pytest.raises(ValueError):
    ev.slinear_interp(x, y, 1.5)


def test_input_validation():
  e = np.zeros((12, 4))
  with pytest.raises(ValueError, match='same shape'):
    ev.verify(e, np.zeros((11, 4)), np.zeros(12, bool), 'synface')
  with pytest.raises(ValueError, match='issame'):
    ev.verify(e, e, np.zeros(11, bool), 'insightface')
  with pytest.raises(ValueError, match='at least 10 pairs'):
    ev.verify(e[:9], e[:9], np.zeros(9, bool), 'insightface')
  with pytest.raises(ValueError, match='booleans'):
    ev.verify(e, e, np.full(12, 2), 'synface')


# ------------------------------------------------------------------------------------------------
# .bin packs.
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def decoded():
  with np.load(reference_file(GOLDEN_DIR, 'tiny_pairs_decoded.npz')) as data:
    return data['images'], data['issame']


@pytest.mark.parametrize('name', ['tiny_pairs.bin', 'tiny_pairs_py2proto.bin',
                                  'tiny_pairs_py2str.bin'])
def test_load_bin_variants(name, decoded):
  images, issame = ev.load_bin(reference_file(GOLDEN_DIR, name))
  assert images.dtype == np.uint8 and images.shape == (24, 112, 112, 3)
  np.testing.assert_array_equal(images, decoded[0])
  assert issame.dtype == bool
  np.testing.assert_array_equal(issame, decoded[1])


def _jpeg_list():
  with open(reference_file(GOLDEN_DIR, 'tiny_pairs.bin'), 'rb') as f:
    return pickle.load(f)


@pytest.mark.parametrize('protocol', [2, 5])
def test_load_bin_numpy_buffers(protocol, tmp_path, decoded):
  bins, issame = _jpeg_list()
  arrays = [np.frombuffer(b, dtype=np.uint8) for b in bins]
  path = tmp_path / 'arrays.bin'
  path.write_bytes(pickle.dumps((arrays, issame), protocol=protocol))
  images, flags = ev.load_bin(path)
  np.testing.assert_array_equal(images, decoded[0])
  np.testing.assert_array_equal(flags, decoded[1])


def test_load_bin_refuses_malicious_global(tmp_path):
  marker = tmp_path / 'pwned'
  command = f'touch {marker}'.encode()
  payload = (b'\x80\x02cos\nsystem\nX' + len(command).to_bytes(4, 'little') + command +
             b'\x85R.')
  path = tmp_path / 'evil.bin'
  path.write_bytes(payload)
  with pytest.raises(pickle.UnpicklingError) as info:
    ev.load_bin(path)
  assert 'os.system' in str(info.value) and str(path) in str(info.value)
  assert not marker.exists()


def test_load_bin_corrupt_jpeg_names_index(tmp_path):
  bins, issame = _jpeg_list()
  bins = list(bins)
  bins[3] = bins[3][:40] + b'\x00' * 64
  path = tmp_path / 'corrupt.bin'
  path.write_bytes(pickle.dumps((bins, issame)))
  with pytest.raises(ValueError, match=r'corrupt\.bin image 3'):
    ev.load_bin(path)


def test_load_bin_wrong_layout(tmp_path):
  path = tmp_path / 'short.bin'
  bins, issame = _jpeg_list()
  path.write_bytes(pickle.dumps((bins[:5], issame)))
  with pytest.raises(ValueError, match='5 images for 12 pairs'):
    ev.load_bin(path)


# ------------------------------------------------------------------------------------------------
# LFW pairs.txt.
# ------------------------------------------------------------------------------------------------


def _save(path, colour, ext='.jpg'):
  image = Image.new('RGB', (8, 6), colour)
  path.parent.mkdir(parents=True, exist_ok=True)
  image.save(str(path) + ext)


def _lfw_tree(tmp_path):
  root = tmp_path / 'lfw'
  _save(root / 'Ann_Lee' / 'Ann_Lee_0001', (200, 10, 10))
  _save(root / 'Ann_Lee' / 'Ann_Lee_0002', (190, 20, 10))
  _save(root / 'Bo' / 'Bo_0001', (10, 10, 200))
  _save(root / 'Bo' / 'Bo_0002', (10, 20, 190), ext='.png')
  return root


def _write_pairs(tmp_path, lines):
  path = tmp_path / 'pairs.txt'
  path.write_text('\n'.join(lines) + '\n')
  return path


def test_load_pairs_txt(tmp_path):
  root = _lfw_tree(tmp_path)
  pairs = _write_pairs(tmp_path, ['1\t2', 'Ann_Lee\t1\t2', 'Bo\t1\t2', 'Ann_Lee\t1\tBo\t2',
                                  'Bo 1 Ann_Lee 2'])
  paths1, paths2, issame = ev.load_pairs_txt(root, pairs)
  np.testing.assert_array_equal(issame, [True, True, False, False])
  assert paths1[0] == os.path.join(root, 'Ann_Lee', 'Ann_Lee_0001.jpg')
  assert paths2[1] == os.path.join(root, 'Bo', 'Bo_0002.png')
  images, flags = ev.load_pair_images(paths1, paths2)
  assert images.shape == (8, 6, 8, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(flags, issame)
  # Rows 2k, 2k + 1 are pair k: row 5 is pair 2's second image, Bo_0002 (blue).
  assert images[5, ..., 2].mean() > 150 and images[4, ..., 0].mean() > 150
  _, explicit = ev.load_pair_images(paths1, paths2, [False, True, False, True])
  np.testing.assert_array_equal(explicit, [False, True, False, True])


def test_load_pairs_txt_single_count_header(tmp_path):
  root = _lfw_tree(tmp_path)
  pairs = _write_pairs(tmp_path, ['1', 'Ann_Lee 1 2', 'Ann_Lee 2 Bo 1'])
  _, _, issame = ev.load_pairs_txt(root, pairs)
  np.testing.assert_array_equal(issame, [True, False])


def test_load_pairs_txt_missing_file(tmp_path):
  root = _lfw_tree(tmp_path)
  pairs = _write_pairs(tmp_path, ['1', 'Ann_Lee 1 2', 'Ann_Lee 1 Bo 7'])
  with pytest.raises(ValueError) as info:
    ev.load_pairs_txt(root, pairs)
  message = str(info.value)
  assert f'{pairs}:3' in message and os.path.join('Bo', 'Bo_0007.jpg') in message


def test_load_pairs_txt_malformed_line(tmp_path):
  root = _lfw_tree(tmp_path)
  for bad in ('Ann_Lee 1', 'Ann_Lee one 2', 'Ann_Lee 1 Bo 2 3'):
    pairs = _write_pairs(tmp_path, ['1', bad, 'Ann_Lee 1 Bo 1'])
    with pytest.raises(ValueError, match=rf'pairs\.txt:2: malformed'):
      ev.load_pairs_txt(root, pairs)
  pairs = _write_pairs(tmp_path, ['x y', 'Ann_Lee 1 2'])
  with pytest.raises(ValueError, match=r'pairs\.txt:1: malformed header'):
    ev.load_pairs_txt(root, pairs)
  pairs = _write_pairs(tmp_path, ['2', 'Ann_Lee 1 2'])
  with pytest.raises(ValueError, match='announces 4 pairs, found 1'):
    ev.load_pairs_txt(root, pairs)


# ------------------------------------------------------------------------------------------------
# evaluate_pairs.
# ------------------------------------------------------------------------------------------------


RED, BLUE = (255, 0, 0), (0, 0, 255)


def _half_images(n_pairs=20, width=8):
  """Pair images whose left and right halves have solid colours.

  Same pairs are mirror images of each other (left/right swapped); different pairs use unrelated
  colours.
  """
  rng = np.random.default_rng(1)
  issame = np.arange(n_pairs) % 2 == 0
  images = np.zeros((2 * n_pairs, 4, width, 3), np.uint8)
  half = width // 2
  for k in range(n_pairs):
    if issame[k]:
      left, right = rng.integers(0, 256, size=(2, 3))
      images[2 * k, :, :half], images[2 * k, :, half:] = left, right
      images[2 * k + 1, :, :half], images[2 * k + 1, :, half:] = right, left
    else:
      images[2 * k, :, :half], images[2 * k, :, half:] = RED, RED
      images[2 * k + 1, :, :half], images[2 * k + 1, :, half:] = BLUE, BLUE
  return images, issame


class _LeftHalfMean:
  """A flip-sensitive fake embedder (mean of the left half) that records batch shapes."""

  def __init__(self):
    self.shapes = []

  def __call__(self, x):
    self.shapes.append(x.shape)
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    return x[:, :, :x.shape[2] // 2].mean(axis=(1, 2))


def _left_mean(images):
  x = ev.normalize_images(images)
  return x[:, :, :x.shape[2] // 2].mean(axis=(1, 2))


def test_evaluate_pairs_insightface_uses_flip_sum():
  images, issame = _half_images()
  embed = _LeftHalfMean()
  result = ev.evaluate_pairs(embed, images, issame, 'insightface', batch_size=16)
  # 40 images in batches of 16 (padded 8 -> 16), each embedded plain and flipped.
  assert embed.shapes == [(16, 4, 8, 3)] * 6
  flipped = _left_mean(images) + _left_mean(images[:, :, ::-1])
  expected = ev.insightface_protocol(flipped[0::2], flipped[1::2], issame)
  np.testing.assert_array_equal(result['fold_accuracy'], expected['fold_accuracy'])
  np.testing.assert_array_equal(result['thresholds'], expected['thresholds'])
  assert result['val'] == expected['val']
  # Mirror-image same pairs coincide only under the flip sum.
  assert result['accuracy'] == 1.0
  plain = _left_mean(images)
  assert ev.insightface_protocol(plain[0::2], plain[1::2], issame)['accuracy'] < 1.0


def test_evaluate_pairs_synface_has_no_flip():
  images, issame = _half_images()
  embed = _LeftHalfMean()
  result = ev.evaluate_pairs(embed, images, issame, 'synface', batch_size=16)
  assert embed.shapes == [(16, 4, 8, 3)] * 3
  plain = _left_mean(images)
  expected = ev.synface_protocol(plain[0::2], plain[1::2], issame)
  np.testing.assert_array_equal(result['fold_accuracy'], expected['fold_accuracy'])
  np.testing.assert_array_equal(result['thresholds'], expected['thresholds'])
  np.testing.assert_array_equal(result['similarity'], expected['similarity'])


def test_evaluate_pairs_accepts_jax_outputs():
  jnp = pytest.importorskip('jax.numpy')
  images, issame = _half_images()
  result = ev.evaluate_pairs(lambda x: jnp.asarray(x).mean(axis=(1, 2)), images, issame,
                             'synface', batch_size=64)
  assert 0.0 <= result['accuracy'] <= 1.0


def test_evaluate_pairs_validates():
  images, issame = _half_images()
  with pytest.raises(ValueError, match='images for'):
    ev.evaluate_pairs(_LeftHalfMean(), images[:-2], issame, 'synface')
  with pytest.raises(ValueError, match="'cosine'"):
    ev.evaluate_pairs(_LeftHalfMean(), images, issame, 'cosine')


# ------------------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('protocol', ['insightface', 'synface'])
def test_cli_pairs(protocol, golden, tmp_path, capsys):
  path = tmp_path / 'emb.npz'
  np.savez(path, embeddings1=golden['embeddings1'], embeddings2=golden['embeddings2'],
           issame=golden['issame'])
  assert ev.main(['pairs', '--embeddings', str(path), '--protocol', protocol]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 1
  out = json.loads(lines[0])
  keys = {'accuracy', 'std', 'thresholds'}
  if protocol == 'insightface':
    keys |= {'val', 'val_std', 'far'}
    assert out['val'] == golden['insightface_val']
    assert out['far'] == golden['insightface_far']
  assert set(out) == keys
  assert out['accuracy'] == golden[f'{protocol}_acc_mean']
  assert out['std'] == golden[f'{protocol}_acc_std']
  assert out['thresholds'] == golden[f'{protocol}_best_thresholds'].tolist()


def test_cli_errors(tmp_path, capsys):
  path = tmp_path / 'emb.npz'
  np.savez(path, embeddings1=np.zeros((12, 3)), issame=np.zeros(12, bool))
  assert ev.main(['pairs', '--embeddings', str(path), '--protocol', 'synface']) != 0
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(path) in err and 'embeddings2' in err
  missing = tmp_path / 'nope.npz'
  assert ev.main(['pairs', '--embeddings', str(missing), '--protocol', 'synface']) != 0
  assert str(missing) in capsys.readouterr().err
  bad_bin = tmp_path / 'bad.bin'
  bad_bin.write_bytes(b'not a pickle')
  assert ev.main(['bin', '--bin', str(bad_bin), '--out', str(tmp_path / 'x.npz')]) != 0
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(bad_bin) in err


def test_cli_bin(tmp_path, capsys, decoded):
  out = tmp_path / 'tiny.npz'
  source = reference_file(GOLDEN_DIR, 'tiny_pairs_py2str.bin')
  assert ev.main(['bin', '--bin', str(source), '--out', str(out)]) == 0
  assert len(capsys.readouterr().out.strip().splitlines()) == 1
  with np.load(out) as data:
    np.testing.assert_array_equal(data['images'], decoded[0])
    np.testing.assert_array_equal(data['issame'], decoded[1])
