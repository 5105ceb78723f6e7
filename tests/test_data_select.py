"""Mix_N_S selection, host sharding and the real_dataset entry point."""
import numpy as np
import pytest

from synface_jax import config as config_lib, sharding
from synface_jax import data
from synface_jax.data import select

from conftest import FOLDER_SIZE as SIZE, make_folder


def test_first_n_identities_and_first_s_images():
  labels = np.array([0, 0, 0, 1, 2, 2, 2, 2, 3, 3])
  chosen = select.select(labels, 4, num_identities=3, images_per_identity=2)
  assert chosen.num_classes == 3
  np.testing.assert_array_equal(chosen.indices, [0, 1, 3, 4, 5])
  everything = select.select(labels, 4)
  np.testing.assert_array_equal(everything.indices, np.arange(10))


def test_rank_follows_dataset_order_when_classes_interleave():
  labels = np.array([1, 0, 1, 0, 1, 0])
  np.testing.assert_array_equal(select.rank_in_class(labels), [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(select.select(labels, 2, 0, 2).indices, [0, 1, 2, 3])


def test_partners_outside_the_chosen_identities_are_left_out():
  labels = np.array([0, 0, 0, 1, 1])
  partners = np.array([1, 5, -1, 0, 0])
  with pytest.warns(UserWarning, match='left out 1 images'):
    chosen = select.select(labels, 6, num_identities=2, images_per_identity=2, partners=partners)
  np.testing.assert_array_equal(chosen.indices, [0, 2, 3, 4])
  assert chosen.excluded == 1


@pytest.mark.parametrize('hosts', [1, 2, 3, 4])
def test_host_shards_are_disjoint_and_cover_the_selection(hosts):
  indices = select.select(np.repeat(np.arange(7), 3), 7, 5, 2).indices
  shards = [select.host_shard(indices, h, hosts) for h in range(hosts)]
  joined = np.concatenate(shards)
  assert len(joined) == len(indices) == len(set(joined.tolist()))
  assert set(joined.tolist()) == set(indices.tolist())
  assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_too_few_examples_for_the_hosts():
  with pytest.raises(ValueError, match='cannot be split over 4 hosts'):
    select.host_shard(np.arange(3), 0, 4)


def _config(path, tmp_path, **real):
  c = config_lib.base_config()
  c.real.path = str(path)
  c.real.data_dir = str(tmp_path / 'tfds')
  c.model.input_size = (SIZE, SIZE)
  c.optim.batch_size = 8
  for k, v in real.items():
    c.real[k] = v
  return c


def test_real_dataset_mix_n_s_streams_global_batches(tmp_path):
  root = make_folder(tmp_path / 'faces', [4, 3, 5, 2])
  c = _config(root, tmp_path, num_identities=3, images_per_identity=2, zoom_crop=0.5,
              random_erasing=0.5)
  real = data.real_dataset(c, sharding.make_mesh())
  assert (real.num_classes, real.num_images, real.kind, real.soft) == (3, 6, 'folder', False)
  np.testing.assert_array_equal(real.indices, [0, 1, 4, 5, 7, 8])
  it = real.iterator(0)
  labels = []
  for _ in range(3):
    batch = next(it)
    assert batch['image'].shape == (8, SIZE, SIZE, 3) and batch['label'].dtype == np.int32
    assert len(batch['image'].sharding.device_set) == len(sharding.make_mesh().devices.flat)
    labels += np.asarray(batch['label']).tolist()
  it.close()
  assert sorted(set(labels)) == [0, 1, 2]
  # Every epoch of 6 examples holds each selected image once.
  assert [labels[:6].count(k) for k in range(3)] == [2, 2, 2]


def test_real_dataset_rejects_pair_sets_and_single_identities(tmp_path):
  lfw = tmp_path / 'lfw'
  lfw.mkdir()
  (lfw / 'pairs.txt').write_text('1\n')
  with pytest.raises(ValueError, match='verification pair set'):
    data.real_dataset(_config(lfw, tmp_path), None)
  root = make_folder(tmp_path / 'faces', [3, 3])
  with pytest.raises(ValueError, match='need at least 2 identities'):
    data.real_dataset(_config(root, tmp_path, num_identities=1), None)


def test_a_resumed_stream_continues_where_it_stopped(tmp_path):
  root = make_folder(tmp_path / 'faces', [3, 2, 2])
  real = data.real_dataset(_config(root, tmp_path, random_erasing=0.5), sharding.make_mesh())
  it = real.iterator(0)
  first = [next(it) for _ in range(4)]
  it.close()
  it = real.iterator(2)
  resumed = [next(it) for _ in range(2)]
  it.close()
  for a, b in zip(first[2:], resumed):
    np.testing.assert_array_equal(np.asarray(a['label']), np.asarray(b['label']))
    np.testing.assert_array_equal(np.asarray(a['image']), np.asarray(b['image']))
  # 4 batches of 8 = 32 examples = 4 epochs of 7 and a bit: every epoch is a permutation.
  labels = np.concatenate([np.asarray(b['label']) for b in first])
  for epoch in range(4):
    assert sorted(labels[7 * epoch:7 * epoch + 7].tolist()) == [0, 0, 0, 1, 1, 2, 2]
  assert len({tuple(labels[7 * e:7 * e + 7]) for e in range(4)}) > 1


def test_a_tfds_dataset_not_in_array_record_is_a_clear_error(tmp_path):
  from synface_jax.data import builders
  root = make_folder(tmp_path / 'faces', [2, 2])
  config = builders.SourceConfig(name='faces_tfrecord', source=str(root))
  builder = builders.FaceIdentityFolder(config=config, data_dir=str(tmp_path / 'tfds'),
                                        file_format='tfrecord')
  builder.download_and_prepare()
  with pytest.raises(ValueError, match='prepare it with file_format=array_record'):
    data.real_dataset(_config(builder.data_dir, tmp_path), None)


def test_labels_outside_the_class_range_are_left_out_with_a_warning():
  with pytest.warns(UserWarning, match=r'left out 2 images whose label is outside \[0, 3\) '
                                       r'\(examples \[1, 4\]\)'):
    chosen = select.select(np.array([0, 7, 1, 2, -1]), 3)
  np.testing.assert_array_equal(chosen.indices, [0, 2, 3])
