"""synface_jax.data.pair_files: insightface .bin packs and LFW pairs.txt."""
import os
import pickle

import numpy as np
import pytest
from conftest import VERIFICATION, reference_file
from PIL import Image

from synface_jax.data import pair_files as ev


# ------------------------------------------------------------------------------------------------
# .bin packs.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('name', ['tiny_pairs.bin', 'tiny_pairs_py2proto.bin',
                                  'tiny_pairs_py2str.bin'])
def test_load_bin_variants(name, tiny_pairs_decoded):
  images, issame = ev.load_bin(reference_file(VERIFICATION, name))
  assert images.dtype == np.uint8 and images.shape == (24, 112, 112, 3)
  np.testing.assert_array_equal(images, tiny_pairs_decoded[0])
  assert issame.dtype == bool
  np.testing.assert_array_equal(issame, tiny_pairs_decoded[1])


def _jpeg_list():
  with open(reference_file(VERIFICATION, 'tiny_pairs.bin'), 'rb') as f:
    return pickle.load(f)


@pytest.mark.parametrize('protocol', [2, 5])
def test_load_bin_numpy_buffers(protocol, tmp_path, tiny_pairs_decoded):
  bins, issame = _jpeg_list()
  arrays = [np.frombuffer(b, dtype=np.uint8) for b in bins]
  path = tmp_path / 'arrays.bin'
  path.write_bytes(pickle.dumps((arrays, issame), protocol=protocol))
  images, flags = ev.load_bin(path)
  np.testing.assert_array_equal(images, tiny_pairs_decoded[0])
  np.testing.assert_array_equal(flags, tiny_pairs_decoded[1])


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
