"""Reading BFM_model_front.mat-layout files (scipy.io.loadmat) and naming bad files."""
import numpy as np
import pytest
import scipy.io

from synface_jax.generators.procedural import bfm
from conftest import tiny_bfm, write_mat


@pytest.mark.parametrize('fmt,compress', [('5', True), ('5', False), ('4', False)])
def test_read_mat_keeps_the_numeric_matrices(tmp_path, fmt, compress):
  fields = tiny_bfm(6, 5)
  extra = {} if fmt == '4' else {
      'name': 'a face model', 'cell': np.array([[1.0, 'x']], dtype=object),
      'info': {'version': 2.0}, 'flags': np.array([[True, False]])}
  path = tmp_path / 'model.mat'
  scipy.io.savemat(path, {**fields, **extra}, format=fmt, do_compression=compress)
  got = bfm.read_mat(path)
  want = set(fields) | ({'flags'} if extra else set())
  assert set(got) == want
  for name, value in fields.items():
    np.testing.assert_array_equal(got[name], np.atleast_2d(value), err_msg=name)
  model = bfm.load_bfm(path)
  assert model.mean.shape == (3, 30) and model.mesh.triangles.min() == 0


def test_hand_written_file_reads_the_same(tmp_path):
  """A level-5 file from the tests' own writer (a few elements zlib-compressed)."""
  fields = tiny_bfm(6, 5)
  write_mat(tmp_path / 'a.mat', fields, compress=('idBase', 'tri'))
  got = bfm.read_mat(tmp_path / 'a.mat')
  assert set(got) == set(fields)
  for name, value in fields.items():
    np.testing.assert_array_equal(got[name], np.atleast_2d(value), err_msg=name)


def test_bad_files_are_named(tmp_path):
  (tmp_path / 'junk.mat').write_bytes(b'x' * 200)
  with pytest.raises(bfm.MatFileError, match=r'junk\.mat'):
    bfm.read_mat(tmp_path / 'junk.mat')
  fields = tiny_bfm(6, 5)
  scipy.io.savemat(tmp_path / 'whole.mat', fields, do_compression=True)
  data = (tmp_path / 'whole.mat').read_bytes()
  (tmp_path / 'cut.mat').write_bytes(data[:len(data) // 2])
  with pytest.raises(bfm.MatFileError, match=r'cut\.mat'):
    bfm.read_mat(tmp_path / 'cut.mat')
  with pytest.raises(FileNotFoundError):
    bfm.read_mat(tmp_path / 'absent.mat')
  del fields['exBase']
  scipy.io.savemat(tmp_path / 'partial.mat', fields)
  with pytest.raises(bfm.MatFileError, match=r"partial\.mat lacks field\(s\) \['exBase'\]"):
    bfm.load_bfm(tmp_path / 'partial.mat')


def test_v73_files_go_through_h5py(tmp_path):
  h5py = pytest.importorskip('h5py')
  path = tmp_path / 'v73.mat'
  fields = tiny_bfm(6, 5)
  with h5py.File(path, 'w', userblock_size=512) as f:
    for name, value in fields.items():
      f[name] = np.atleast_2d(value).T  # MATLAB's column-major arrays, as HDF5 stores them.
    f['label'] = np.bytes_('not numeric')
  header = b'MATLAB 7.3 MAT-file, test'.ljust(116) + b'\0' * 8 + b'\x00\x02' + b'IM'
  with open(path, 'r+b') as f:
    f.write(header)
  got = bfm.read_mat(path)
  assert set(got) == set(fields)
  np.testing.assert_array_equal(got['idBase'], fields['idBase'])
