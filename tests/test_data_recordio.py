"""insightface RecordIO: the golden train.rec, the format's corner cases and damaged files."""
import io
import os
import shutil

import numpy as np
import pytest

from conftest import reference_file
from synface_jax.data import images, pipeline, prepare, recordio, source_rec, summary


@pytest.fixture(scope='module')
def golden(tmp_path_factory):
  """A copy of the golden RecordIO set and its decoded contents."""
  rec = reference_file('insightface_synface', 'train.rec')
  root = tmp_path_factory.mktemp('rec')
  for name in ('train.rec', 'train.idx', 'property'):
    shutil.copy(rec.parent / name, root / name)
  return root, np.load(rec.parent / 'train_decoded.npz')


def test_header_records_and_index_match_the_reference(golden):
  root, ref = golden
  index = recordio.read_index(str(root / 'train.idx'))
  assert list(index) == list(ref['idx_keys']) and list(index.values()) == list(ref['idx_offsets'])
  with recordio.RecordFile(str(root / 'train.rec')) as f:
    header, content = f.read(index[0])
    assert (header.flag, header.id, header.id2) == (2, 0, 1) and content == b''
    np.testing.assert_array_equal(header.label, ref['header0_label'])
    for key, expected in zip(ref['identity_keys'], ref['identity_ranges']):
      np.testing.assert_array_equal(f.read(index[int(key)])[0].label, expected)
    sizes = [len(f.read_payload(index[int(k)])[0]) for k in ref['idx_keys']]
  assert sizes == list(ref['record_payload_nbytes'])
  assert recordio.read_property(str(root / 'property')) == recordio.Property(5, 112, 112)


def test_golden_decodes_exactly_with_pillow_and_through_tfds(golden, tmp_path):
  root, ref = golden
  items = list(source_rec.examples(source_rec.open_set(str(root))))
  assert [k for k, _ in items] == [f'train.rec#{k}' for k in ref['keys']]
  assert [e['label'] for _, e in items] == list(ref['labels'])
  np.testing.assert_array_equal(np.stack([images.decode(e['image']) for _, e in items]),
                                ref['images'])
  builder, kind = prepare.prepare(str(root), data_dir=str(tmp_path))
  assert kind == 'rec' and builder.info.metadata['num_classes'] == 5
  got = list(pipeline.examples(builder, np.arange(20), image_size=(112, 112)).as_numpy_iterator())
  np.testing.assert_array_equal([e['label'] for e in got], ref['labels'])
  pixels = np.stack([e['image'] for e in got]) * 0.5 + 0.5
  np.testing.assert_array_equal(np.round(pixels * 255).astype(np.uint8), ref['images'])


def test_payloads_holding_the_magic_word_are_split_and_joined():
  magic = recordio._MAGIC_BYTES
  payload = recordio.pack(recordio.Header(0, 3.0, 7, 0), b'abcd' + magic + b'ef' + magic + magic)
  f = io.BytesIO()
  recordio.write_record(f, payload)
  recordio.write_record(f, recordio.pack(recordio.Header(2, np.array([1, 2], 'f4'), 8, 0), b''))
  path = os.path.join(os.environ.get('TMPDIR', '/tmp'), f'magic_{os.getpid()}.rec')
  with open(path, 'wb') as out:
    out.write(f.getvalue())
  with recordio.RecordFile(path) as rf:
    records = list(rf.scan())
  os.remove(path)
  assert [p for _, p in records][0] == payload and len(records) == 2
  header, content = recordio.unpack(records[0][1])
  assert (header.flag, header.label, header.id) == (0, 3.0, 7)
  assert content == b'abcd' + magic + b'ef' + magic + magic


def _write_set(root, records, num_classes=3):
  """A RecordIO set of (key, label, content) image records plus header record 0."""
  os.makedirs(root, exist_ok=True)
  lines = []
  with open(root / 'train.rec', 'wb') as f:
    for key, label, content in records:
      offset = recordio.write_record(f, recordio.pack(recordio.Header(0, label, key, 0), content))
      lines.append(f'{key}\t{offset}')
    header = recordio.Header(2, np.array([len(records) + 1, len(records) + 1], 'f4'), 0, 1)
    lines.append(f'0\t{recordio.write_record(f, recordio.pack(header, b""))}')
  (root / 'train.idx').write_text('\n'.join(lines) + '\n')
  (root / 'property').write_text(f'{num_classes},8,8')
  return root


def _jpeg(value, size=8):
  return images.encode_jpeg(np.full((size, size, 3), value, np.uint8))


def test_bad_records_are_skipped_and_named(tmp_path):
  root = _write_set(tmp_path / 'bad', [
      (1, 0.0, _jpeg(10)), (2, 5.0, _jpeg(20)), (3, 1.5, _jpeg(30)), (4, 1.0, b'not a jpeg'),
      (5, 1.0, _jpeg(50, size=12)), (6, 2.0, _jpeg(60))])
  s = summary.stats(str(root))
  assert (s['kind'], s['images'], s['identities'], s['skipped']) == ('rec', 2, 2, 4)
  reasons = {item['file']: item['reason'] for item in s['skipped_files']}
  assert reasons['train.rec#2'].startswith('label out of range: 5 ')
  assert reasons['train.rec#3'].startswith('label out of range: 1.5 ')
  assert reasons['train.rec#4'].startswith('cannot decode')
  assert reasons['train.rec#5'].startswith('wrong size: 12x12')


def test_truncated_rec_keeps_what_is_complete(golden, tmp_path):
  root, ref = golden
  cut = tmp_path / 'cut'
  shutil.copytree(root, cut)
  offsets = ref['idx_offsets']
  with open(cut / 'train.rec', 'r+b') as f:
    f.truncate(int(offsets[10]) + 100)  # Inside the record of key 11; key 0 (at the end) is lost.
  s = summary.stats(str(cut))
  assert s['images'] == 10 and s['identities'] == 3
  reasons = {item['file']: item['reason'] for item in s['skipped_files']}
  assert reasons['train.rec#0'].startswith('truncated header record')
  assert reasons['train.rec#11'].startswith('truncated record')
  assert all(reasons[f'train.rec#{k}'].startswith('truncated record') for k in range(12, 21))
  with pytest.warns(UserWarning, match=r'train\.rec#11 \(truncated record'):
    builder, _ = prepare.prepare(str(cut), data_dir=str(tmp_path / 'tfds'))
  assert builder.info.metadata['labels'] == list(ref['labels'][:10])


def test_rec_without_index_is_read_in_file_order(golden, tmp_path):
  root, ref = golden
  noidx = tmp_path / 'noidx'
  shutil.copytree(root, noidx)
  os.remove(noidx / 'train.idx')
  items = list(source_rec.examples(source_rec.open_set(str(noidx / 'train.rec'))))
  assert [e['label'] for _, e in items] == list(ref['labels'])
