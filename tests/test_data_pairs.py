"""Verification pair sets: LFW folder + pairs.txt and insightface .bin packs."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import reference_file
from synface_jax.data import prepare, summary


def _lfw(root, names=('Ann', 'Bob', 'Cid'), per_name=2):
  rng = np.random.default_rng(0)
  pixels = {}
  for name in names:
    os.makedirs(root / name)
    for k in range(1, per_name + 1):
      pixels[name, k] = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
      Image.fromarray(pixels[name, k]).save(root / name / f'{name}_{k:04d}.png')
  return pixels


@pytest.fixture
def lfw(tmp_path):
  root = tmp_path / 'lfwset'
  pixels = _lfw(root / 'lfw')
  (root / 'pairs.txt').write_text('2\nAnn\t1\t2\nBob\t1\t2\nAnn\t1\tCid\t2\nBob\t2\tCid\t1\n')
  return root, pixels


def test_lfw_stats_dump_and_builder(lfw, tmp_path):
  root, pixels = lfw
  s = summary.stats(str(root))
  assert (s['kind'], s['pairs'], s['same'], s['identities'], s['images'], s['skipped']) == (
      'lfw', 4, 2, 3, 6, 0)
  summary.dump(str(root), str(tmp_path / 'lfw.npz'))
  out = np.load(tmp_path / 'lfw.npz')
  expected = [pixels[k] for k in (('Ann', 1), ('Ann', 2), ('Bob', 1), ('Bob', 2), ('Ann', 1),
                                   ('Cid', 2), ('Bob', 2), ('Cid', 1))]
  np.testing.assert_array_equal(out['images'], np.stack(expected))
  np.testing.assert_array_equal(out['issame'], [True, True, False, False])
  builder, kind = prepare.prepare(f'{root / "lfw"}:{root / "pairs.txt"}',
                                  data_dir=str(tmp_path / 'tfds'))
  assert kind == 'lfw' and builder.info.splits['test'].num_examples == 4
  source = builder.as_data_source('test')
  np.testing.assert_array_equal(source[2]['image2'], pixels['Cid', 2])
  assert [bool(source[i]['issame']) for i in range(4)] == [True, True, False, False]


def test_pairs_txt_naming_a_missing_file_is_a_clear_error(lfw, tmp_path):
  root, _ = lfw
  (root / 'pairs.txt').write_text('1\nAnn\t1\t2\nAnn\t1\tZed\t1\n')
  with pytest.raises(ValueError, match=r'pairs\.txt:3: image file .*Zed_0001\.jpg does not exist'):
    summary.stats(str(root))
  with pytest.raises(ValueError, match='Zed_0001'):
    prepare.prepare(str(root), data_dir=str(tmp_path / 'tfds'))


def test_bin_pack_dump_matches_the_reference_and_builds_one_split_per_pack(tmp_path):
  pack = reference_file('insightface_synface', 'tiny_pairs.bin')
  ref = np.load(pack.parent / 'tiny_pairs_decoded.npz')
  summary.dump(str(pack), str(tmp_path / 'tiny.npz'), limit=5)
  out = np.load(tmp_path / 'tiny.npz')
  np.testing.assert_array_equal(out['images'], ref['images'][:10])
  np.testing.assert_array_equal(out['issame'], ref['issame'][:5])
  packs = tmp_path / 'packs'
  packs.mkdir()
  shutil.copy(pack, packs / 'lfw.bin')
  shutil.copy(pack.parent / 'tiny_pairs_py2str.bin', packs / 'cfp_fp.bin')
  s = summary.stats(str(packs))
  assert s['kind'] == 'bin' and s['pairs'] == 24 and set(s['packs']) == {'lfw', 'cfp_fp'}
  builder, _ = prepare.prepare(str(packs), data_dir=str(tmp_path / 'tfds'))
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {'lfw': 12, 'cfp_fp': 12}
  source = builder.as_data_source('cfp_fp')
  np.testing.assert_array_equal(source[3]['image1'], ref['images'][6])
  np.testing.assert_array_equal(source[3]['image2'], ref['images'][7])
