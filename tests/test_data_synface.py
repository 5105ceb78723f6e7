"""SynFace's mixup-named layout: names, the export -> TFDS -> pipeline round trip, bad names."""
import os

import jax
import numpy as np
import pytest

from synface_jax import config as config_lib, mixup, sharding
from synface_jax import data
from synface_jax.data import export, images, pipeline, summary, synface_names
from toy_generator import ToyGenerator

SIZE = 16


def test_names_round_trip_with_synface_numbering():
  name = synface_names.file_name(identity=0, image=4, phi=0.7, partner=344)
  assert name == '005_00001x0.700_(00345)x0.300.jpg'
  assert synface_names.folder_name(0) == '00001'
  assert synface_names.parse(name) == synface_names.MixupName(4, 0, 0.7, 344, 0.3)
  assert synface_names.parse('005_00001x1.000_(00345)x-0.000.jpg').partner_weight == 0.0
  for bad in ('0001.jpg', '005_00001x0.7_00345x0.3.jpg', '000_00001x0.700_(00345)x0.300.jpg'):
    assert synface_names.parse(bad) is None


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  out = tmp_path_factory.mktemp('syn') / 'Syn_4_3'
  generator = ToyGenerator(image_size=(SIZE, SIZE))
  params = generator.init(jax.random.key(0))
  result = export.export_folder(generator, params, str(out), num_identities=4,
                                images_per_identity=3, phi_sampler=mixup.make_sampler('synface'),
                                batch_size=5)
  assert result['images'] == 12
  return out


def _labels_from_names(root):
  rows = []
  for folder in sorted(os.listdir(root)):
    for name in sorted(os.listdir(root / folder)):
      rows.append((folder, synface_names.parse(name)))
  return rows


def test_export_writes_synface_naming(exported):
  rows = _labels_from_names(exported)
  assert sorted({f for f, _ in rows}) == ['00001', '00002', '00003', '00004'] and len(rows) == 12
  grid = np.round(mixup.synface_grid(), 3)
  for folder, label in rows:
    assert label.identity == int(folder) - 1 and label.partner != label.identity
    assert 0 <= label.partner < 4 and np.isclose(grid, label.weight).any()
    assert label.partner_weight == pytest.approx(1 - label.weight, abs=1e-3)
  assert [label.image for _, label in rows[:3]] == [0, 1, 2]
  s = summary.stats(str(exported))
  assert (s['kind'], s['identities'], s['images'], s['skipped']) == ('synface', 4, 12, 0)


def test_export_to_tfds_to_pipeline_gives_back_the_soft_labels(exported, tmp_path):
  builder = export.to_tfds(str(exported), str(tmp_path / 'tfds'))
  assert pipeline.is_soft(builder)
  got = list(pipeline.examples(builder, np.arange(12), image_size=(SIZE, SIZE)).as_numpy_iterator())
  for e, (_, label) in zip(got, _labels_from_names(exported)):
    partner = label.partner if label.partner_weight else -1
    np.testing.assert_array_equal(e['label_ids'], [label.identity, partner])
    np.testing.assert_allclose(e['label_weights'], [label.weight, label.partner_weight])
    assert e['label'] == (label.identity if label.weight >= label.partner_weight else partner)
  first = images.decode(open(exported / '00001' / sorted(os.listdir(exported / '00001'))[0],
                             'rb').read())
  np.testing.assert_array_equal(np.round((got[0]['image'] * 0.5 + 0.5) * 255), first)


def test_real_dataset_batches_carry_soft_labels(exported, tmp_path):
  c = config_lib.base_config()
  c.real.path = str(exported)
  c.real.data_dir = str(tmp_path / 'tfds')
  c.model.input_size = (SIZE, SIZE)
  c.optim.batch_size = 8
  c.real.num_identities = 4
  real = data.real_dataset(c, sharding.make_mesh())
  assert (real.kind, real.soft, real.num_classes, real.num_images) == ('synface', True, 4, 12)
  it = real.iterator(0)
  batch = next(it)
  it.close()
  assert batch['label_ids'].shape == (8, 2) and batch['label_ids'].dtype == np.int32
  assert batch['label_weights'].shape == (8, 2) and batch['label_weights'].dtype == np.float32
  np.testing.assert_allclose(np.asarray(batch['label_weights']).sum(-1), 1.0, atol=1e-3)


def test_bad_names_and_labels_outside_the_set_are_skipped(exported, tmp_path):
  root = tmp_path / 'bad'
  os.makedirs(root / '00001')
  os.makedirs(root / '00002')
  good = open(exported / '00001' / sorted(os.listdir(exported / '00001'))[0], 'rb').read()
  for folder, name in (('00001', '001_00001x0.600_(00002)x0.400.jpg'),
                       ('00001', '002_00001x0.600_(00009)x0.400.jpg'),
                       ('00001', '003_00001x1.000_(00009)x0.000.jpg'),
                       ('00002', '001_00001x0.600_(00002)x0.400.jpg'),
                       ('00002', 'plain.jpg'),
                       ('00002', '002_00002x0.500_(00001)x0.500.jpg')):
    (root / folder / name).write_bytes(good)
  s = summary.stats(str(root))
  assert (s['kind'], s['images'], s['skipped']) == ('synface', 3, 3)
  reasons = {item['file']: item['reason'] for item in s['skipped_files']}
  assert reasons[os.path.join('00001', '002_00001x0.600_(00009)x0.400.jpg')].startswith(
      'label out of range: class 8 outside [0, 2)')
  assert reasons[os.path.join('00002', '001_00001x0.600_(00002)x0.400.jpg')].startswith(
      'label mismatch')
  assert reasons[os.path.join('00002', 'plain.jpg')].startswith('no mixup label')
