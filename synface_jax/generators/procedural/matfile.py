"""A minimal reader for MATLAB .mat files: the numeric matrices of a level-5 (v5/v6/v7) file.

Enough for face-model files such as `BFM_model_front.mat`: real numeric arrays, compressed or not,
little- or big-endian. Cells, structs, strings, sparse and complex arrays are skipped. v7.3 files
are HDF5 and are read with h5py when it is installed.
"""
import struct
import zlib

import numpy as np

_NUMERIC = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 9: 'f8', 12: 'i8', 13: 'u8'}
_MATRIX, _COMPRESSED = 14, 15
_NUMERIC_CLASSES = set(range(6, 16))  # mxDOUBLE .. mxUINT64
_COMPLEX_FLAG = 0x0800


class MatFileError(ValueError):
  """A .mat file that cannot be read, or lacks a field."""


def _elements(data, endian, path):
  """Yields (type, payload bytes) for the data elements in `data`."""
  pos = 0
  while pos + 8 <= len(data):
    raw_type, size = struct.unpack(endian + 'II', data[pos:pos + 8])
    if raw_type >> 16:  # small data element: 2-byte size, 2-byte type, 4 bytes of data
      size, kind = raw_type >> 16, raw_type & 0xFFFF
      yield kind, data[pos + 4:pos + 4 + size]
      pos += 8
      continue
    payload = data[pos + 8:pos + 8 + size]
    if len(payload) < size:
      raise MatFileError(f'{path}: truncated data element at byte {pos}')
    yield raw_type, payload
    pos += 8 + size + (-size % 8)


def _matrix(payload, endian, path):
  """(name, array or None) of a miMATRIX element."""
  parts = list(_elements(payload, endian, path))
  if len(parts) < 3:
    raise MatFileError(f'{path}: malformed matrix element')
  flags = np.frombuffer(parts[0][1], endian + 'u4')
  mx_class = int(flags[0]) & 0xFF
  dims = np.frombuffer(parts[1][1], endian + 'i4').astype(int)
  name = parts[2][1].decode('latin-1')
  if mx_class not in _NUMERIC_CLASSES or int(flags[0]) & _COMPLEX_FLAG or len(parts) < 4:
    return name, None
  kind, real = parts[3]
  if kind not in _NUMERIC:
    return name, None
  values = np.frombuffer(real, endian + _NUMERIC[kind])
  return name, values.reshape(tuple(dims), order='F')


def _read_v5(data, path):
  endian = '<' if data[126:128] == b'IM' else '>'
  out = {}
  for kind, payload in _elements(data[128:], endian, path):
    if kind == _COMPRESSED:
      try:
        payload = zlib.decompress(payload)
      except zlib.error as e:
        raise MatFileError(f'{path}: corrupt compressed element ({e})') from None
      for inner_kind, inner in _elements(payload, endian, path):
        if inner_kind == _MATRIX:
          name, array = _matrix(inner, endian, path)
          if array is not None:
            out[name] = array
    elif kind == _MATRIX:
      name, array = _matrix(payload, endian, path)
      if array is not None:
        out[name] = array
  return out


def _read_hdf5(path):
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise MatFileError(f'{path} is a MATLAB v7.3 (HDF5) file; install h5py to read it') from None
  out = {}
  with h5py.File(path, 'r') as f:
    for name, item in f.items():
      if isinstance(item, h5py.Dataset) and item.dtype.kind in 'fiu':
        out[name] = np.asarray(item).T  # HDF5 stores MATLAB arrays transposed
  return out


def read_mat(path) -> dict:
  """The real numeric matrices of a .mat file, by variable name (numpy arrays, MATLAB shapes)."""
  with open(path, 'rb') as fh:
    data = fh.read()
  if len(data) < 128:
    raise MatFileError(f'{path}: too short to be a .mat file')
  if data[:4] == b'\x89HDF' or data[512:516] == b'\x89HDF':
    return _read_hdf5(path)
  if data[126:128] not in (b'IM', b'MI'):
    raise MatFileError(f'{path}: not a MATLAB level-5 .mat file (bad header)')
  return _read_v5(data, path)
