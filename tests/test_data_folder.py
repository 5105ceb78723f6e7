"""Identity image folders: the TFDS builder, the pipeline's pixels and labels, and bad files."""
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from conftest import FOLDER_SIZE, folder_pixels, make_folder
from synface_jax.data import detect, pipeline, prepare, summary

def test_builder_counts_labels_andfolder_pixels(tmp_path):
  root = make_folder(tmp_path / 'faces', [3, 1, 2])
  builder, kind = prepare.prepare(str(root), data_dir=str(tmp_path / 'tfds'))
  assert kind == 'folder'
  meta = builder.info.metadata
  assert meta['labels'] == [0, 0, 0, 1, 2, 2]
  assert meta['class_names'] == ['id000', 'id001', 'id002'] and meta['num_classes'] == 3
  assert builder.info.splits['train'].num_examples == 6
  ds = pipeline.examples(builder, np.arange(6), image_size=(FOLDER_SIZE, FOLDER_SIZE))
  got = list(ds.as_numpy_iterator())
  assert [int(e['label']) for e in got] == [0, 0, 0, 1, 2, 2]
  expected = [folder_pixels(s) for s in (0, 1, 2, 100, 200, 201)]
  for e, pixels in zip(got, expected):
    np.testing.assert_array_equal(e['image'], (pixels.astype(np.float32) / 255 - 0.5) / 0.5)


def test_prepared_once_and_rebuilt_when_the_source_changes(tmp_path):
  root = make_folder(tmp_path / 'faces', [2, 2])
  first, _ = prepare.prepare(str(root), data_dir=str(tmp_path / 'tfds'))
  again, _ = prepare.builder_for(str(root), data_dir=str(tmp_path / 'tfds'))
  assert again.is_prepared() and again.builder_config.name == first.builder_config.name
  make_folder(root, [2, 3])
  changed, _ = prepare.builder_for(str(root), data_dir=str(tmp_path / 'tfds'))
  assert changed.builder_config.name != first.builder_config.name and not changed.is_prepared()


def _jpeg(pixels, **kwargs):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, 'JPEG', **kwargs)
  return buffer.getvalue()


@pytest.fixture
def bad_folder(tmp_path):
  """Two good identities plus every kind of bad file."""
  root = make_folder(tmp_path / 'bad', [2, 2])
  good = _jpeg(folder_pixels(7))
  (root / 'id000' / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0 not a jpeg at all')
  (root / 'id000' / 'truncated.jpg').write_bytes(good[:len(good) // 2])
  Image.fromarray(folder_pixels(8)[:8]).save(root / 'id001' / 'small.png')
  Image.fromarray(folder_pixels(9)[..., 0]).save(root / 'id001' / 'gray.png')
  (root / 'id001' / 'notes.txt').write_text('not an image')
  os.makedirs(root / 'id002_empty')
  os.makedirs(root / 'id003_all_bad')
  (root / 'id003_all_bad' / 'x.jpg').write_bytes(b'')
  return root


def test_bad_files_are_skipped_counted_and_named(bad_folder, tmp_path):
  s = summary.stats(str(bad_folder))
  assert s['kind'] == 'folder' and s['identities'] == 2 and s['images'] == 5
  reasons = {item['file']: item['reason'] for item in s['skipped_files']}
  assert reasons[os.path.join('id000', 'corrupt.jpg')].startswith('cannot decode')
  assert reasons[os.path.join('id000', 'truncated.jpg')].startswith('cannot decode')
  assert reasons[os.path.join('id001', 'small.png')].startswith('wrong size: 8x16')
  assert reasons[os.path.join('id001', 'notes.txt')] == 'not an image file'
  assert reasons['id002_empty' + os.sep] == 'empty identity folder'
  assert reasons['id003_all_bad' + os.sep].startswith('empty identity folder')
  assert s['skipped'] == 7 and s['skipped_reasons']['cannot decode'] == 3
  assert [c['file'] for c in s['converted_files']] == [os.path.join('id001', 'gray.png')]
  with pytest.warns(UserWarning) as caught:
    builder, _ = prepare.prepare(str(bad_folder), data_dir=str(tmp_path / 'tfds'))
  messages = ' | '.join(str(w.message) for w in caught)
  assert re.search(r'skipped 7 files: .*corrupt\.jpg \(cannot decode', messages)
  assert re.search(r'converted to RGB 1 files: id001.gray\.png \(PNG L stored as RGB PNG\)',
                   messages)
  assert builder.info.metadata['labels'] == [0, 0, 1, 1, 1]
  assert builder.info.metadata['skipped'] == 7
  got = list(pipeline.examples(builder, np.arange(5),
                                image_size=(FOLDER_SIZE, FOLDER_SIZE)).as_numpy_iterator())
  gray = folder_pixels(9)[..., 0].astype(np.float32)
  np.testing.assert_array_equal(got[4]['image'], np.stack([(gray / 255 - 0.5) / 0.5] * 3, -1))


def test_a_folder_without_usable_images_stops_before_training(tmp_path):
  root = tmp_path / 'none'
  os.makedirs(root / 'a')
  (root / 'a' / 'x.jpg').write_bytes(b'junk')
  with pytest.raises(ValueError, match='no usable images'), pytest.warns(UserWarning):
    prepare.prepare(str(root), data_dir=str(tmp_path / 'tfds'))


def test_detect(tmp_path):
  root = make_folder(tmp_path / 'faces', [1, 1])
  assert detect.detect(str(root)) == 'folder'
  (tmp_path / 'lfw').mkdir()
  (tmp_path / 'lfw' / 'pairs.txt').write_text('1\n')
  assert detect.detect(str(tmp_path / 'lfw')) == 'lfw'
  with pytest.raises(ValueError, match='does not exist'):
    detect.detect(str(tmp_path / 'nothing'))
