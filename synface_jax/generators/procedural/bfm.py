"""A Basel Face Model in the `BFM_model_front.mat` layout (Deep3DFaceRecon, DiscoFaceGAN), rendered
with the same pipeline as the procedural head.

Fields used: meanshape [1, 3V] and meantex [1, 3V] (x, y, z / r, g, b interleaved per vertex),
idBase [3V, 80], exBase [3V, 64], texBase [3V, 80], tri [F, 3] and keypoints [68] (1-based, as
MATLAB writes them). Bases with fewer columns are padded with zeros, extra columns are dropped.
Texture is in 0..255. The shape is re-centred on its mean vertex. The file is read with
`scipy.io.loadmat` (MATLAB v4 to v7.2); v7.3 files are HDF5 and are read with h5py when installed.
"""
import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from synface_jax.generators.procedural import background, mesh as mesh_lib, raster, render

REQUIRED = ('meanshape', 'idBase', 'exBase', 'meantex', 'texBase', 'tri', 'keypoints')
_SHAPE_DIM, _EXPRESSION_DIM, _TEXTURE_DIM = 80, 64, 80
# 68-point indices (0-based) averaged into the five alignment points.
_FIVE_POINTS = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,))


class MatFileError(ValueError):
  """A .mat file that cannot be read, or lacks a field; the message names the file."""


def _read_hdf5(path) -> dict:
  try:
    import h5py
  except ImportError:
    raise MatFileError(f'{path} is a MATLAB v7.3 (HDF5) file; install h5py to read it') from None
  with h5py.File(path, 'r') as f:
    # HDF5 stores MATLAB arrays transposed.
    return {name: np.asarray(item).T for name, item in f.items()
            if isinstance(item, h5py.Dataset) and item.dtype.kind in 'fiu'}


MAX_VARIABLE_BYTES = 1 << 30  # One variable of a .mat file, inflated (BFM's largest: ~70 MB).
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_MI_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}  # Numeric types.
_NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS .. mxUINT64_CLASS.
_COMPLEX_FLAG = 0x800
_INFLATE_CHUNK = 1 << 20


def check_mat(f, path) -> list | None:
  """Checks the structure of a MATLAB v5 file (or v4) before scipy reads it, since scipy's reader
  trusts it (a wrong type code in a crafted file crashes the process); returns the names of its
  numeric arrays, the only variables scipy is then asked to read (None: an HDF5 file).

  Every variable's flags, dimensions and name are checked, and a numeric array's data too.
  MatFileError for an unknown data type, a negative dimension, numeric data whose size does not
  match the dimensions, an element past the end of the file, a variable above MAX_VARIABLE_BYTES,
  and compressed data that inflates past the size it declares (a deflate bomb). v7.3 (HDF5) files
  are left to h5py.
  """
  import struct

  def bad(why):
    raise MatFileError(f'{path}: not a readable MATLAB .mat file ({why})')

  size = os.fstat(f.fileno()).st_size
  f.seek(0)
  header = f.read(128)
  if header[:8] == _HDF5 or (size > 520 and _hdf5_at_512(f)):
    f.seek(0)
    return None
  names = []
  if len(header) == 128 and header[126:128] in (b'IM', b'MI'):
    order = '<' if header[126:128] == b'IM' else '>'
    offset = 128
    while offset < size:
      f.seek(offset)
      tag = f.read(8)
      if len(tag) < 8:
        bad(f'element at byte {offset} is cut short')
      kind, nbytes = struct.unpack(order + 'II', tag)
      if kind >> 16:
        bad(f'element at byte {offset} is not a variable')
      if nbytes > size - offset - 8:
        bad(f'element at byte {offset} declares {nbytes} bytes, past the end of the file')
      if kind == _MI_COMPRESSED:
        names.append(_check_matrix(_inflate(f, nbytes, order, offset, bad), order, offset, bad))
      elif kind == _MI_MATRIX:
        if nbytes > MAX_VARIABLE_BYTES:
          bad(f'element at byte {offset} declares {nbytes} bytes, above the '
              f'{MAX_VARIABLE_BYTES} a variable may have')
        names.append(_check_matrix(tag + f.read(nbytes), order, offset, bad))
      else:
        bad(f'element at byte {offset} has data type {kind}, not a variable')
      offset += 8 + nbytes + (0 if kind == _MI_COMPRESSED else -nbytes % 8)
  else:  # MATLAB v4: records of (type MOPT, rows, columns, imaginary, name length) + data.
    offset = 0
    while offset < size:
      f.seek(offset)
      head = f.read(20)
      if len(head) < 20:
        bad(f'record at byte {offset} is cut short')
      order = '<' if 0 <= struct.unpack('<i', head[:4])[0] < 5000 else '>'
      mopt, rows, cols, imag, namelen = struct.unpack(order + '5i', head)
      o, p, t = mopt // 100 % 10, mopt // 10 % 10, mopt % 10
      if not (0 <= mopt < 2000 and o == 0 and p <= 5 and t <= 2 and rows >= 0 and cols >= 0
              and 0 < namelen <= 4096 and imag in (0, 1)):
        bad(f'record at byte {offset} has a bad header (type {mopt}, {rows}x{cols}, '
            f'name length {namelen})')
      data = rows * cols * (8, 4, 4, 2, 2, 1)[p] * (2 if imag else 1)
      if data > MAX_VARIABLE_BYTES or namelen + data > size - offset - 20:
        bad(f'record at byte {offset} declares {rows}x{cols} values, more than the file holds')
      if t == 0:  # A full numeric matrix (1: text, 2: sparse).
        names.append(f.read(namelen).split(b'\0')[0].decode('latin-1'))
      offset += 20 + namelen + data
  f.seek(0)
  return [n for n in names if n is not None]


_HDF5 = b'\x89HDF\r\n\x1a\n'


def _hdf5_at_512(f) -> bool:
  f.seek(512)
  return f.read(8) == _HDF5


def _inflate(f, nbytes, order, offset, bad) -> bytes:
  """The inflated content of one compressed element, never inflating past the size its inner tag
  declares (nor past MAX_VARIABLE_BYTES)."""
  import struct
  import zlib
  f.seek(offset + 8)
  inflater = zlib.decompressobj()
  parts, total, remaining = [], 0, nbytes
  limit = None  # The size the inner tag declares, once its 8 bytes are out.
  try:
    while not inflater.eof and (remaining or inflater.unconsumed_tail):
      data = inflater.unconsumed_tail
      if not data:
        data = f.read(min(remaining, _INFLATE_CHUNK))
        remaining -= len(data)
        if not data:
          break
      out = inflater.decompress(data, _INFLATE_CHUNK)
      parts.append(out)
      total += len(out)
      if limit is None and total >= 8:
        kind, inner = struct.unpack(order + 'II', b''.join(parts)[:8])
        if kind >> 16 or inner > MAX_VARIABLE_BYTES:
          bad(f'compressed element at byte {offset} declares {inner} bytes, above the '
              f'{MAX_VARIABLE_BYTES} a variable may have')
        limit = 8 + inner + (-inner % 8)
      if total > (limit or _INFLATE_CHUNK):
        bad(f'compressed element at byte {offset} inflates past the {limit} bytes it declares')
  except zlib.error as e:
    bad(f'compressed element at byte {offset}: {e}')
  if not inflater.eof:
    bad(f'compressed element at byte {offset} is cut short')
  return b''.join(parts)


def _check_matrix(element, order, offset, bad) -> str | None:
  """The name of the numeric array a miMATRIX element (tag included) holds, once its parts are
  checked against its dimensions; None for another class (its flags, dimensions and name are
  checked, its content is not read)."""
  import struct
  if len(element) < 8:
    bad(f'variable at byte {offset} is cut short')
  kind, nbytes = struct.unpack_from(order + 'II', element)
  if kind != _MI_MATRIX or nbytes > len(element) - 8:
    bad(f'variable at byte {offset} is not a complete matrix')
  view = memoryview(element)[8:8 + nbytes]
  subs, pos = [], 0
  while pos + 8 <= len(view) and len(subs) < 6:
    sub_kind, length = struct.unpack_from(order + 'II', view, pos)
    if sub_kind >> 16:  # A small element: up to 4 bytes inside its tag.
      sub_kind, length = sub_kind & 0xFFFF, sub_kind >> 16
      if length > 4:
        bad(f'variable at byte {offset} has a malformed small element')
      subs.append((sub_kind, view[pos + 4:pos + 4 + length]))
      pos += 8
      continue
    if length > len(view) - pos - 8:
      bad(f'variable at byte {offset}: a part declares {length} bytes, more than it holds')
    subs.append((sub_kind, view[pos + 8:pos + 8 + length]))
    pos += 8 + length + (-length % 8)
  if len(subs) < 4 or subs[0][0] != _MI_UINT32 or len(subs[0][1]) != 8:
    bad(f'variable at byte {offset} lacks its flags, dimensions, name or data')
  flags = struct.unpack_from(order + 'I', subs[0][1])[0]
  array_class = flags & 0xFF
  dims_kind, dims_data = subs[1]
  if dims_kind != _MI_INT32 or len(dims_data) < 8 or len(dims_data) % 4:
    bad(f'variable at byte {offset} has malformed dimensions')
  dims = struct.unpack(order + f'{len(dims_data) // 4}i', dims_data)
  if any(d < 0 for d in dims):
    bad(f'variable at byte {offset} has a negative dimension {list(dims)}')
  if subs[2][0] != _MI_INT8:
    bad(f'variable at byte {offset} has a malformed name')
  if array_class not in _NUMERIC_CLASSES:
    return None
  count = 1
  for d in dims:
    count *= d
  parts = subs[3:]
  if len(parts) != (2 if flags & _COMPLEX_FLAG else 1):
    bad(f'variable at byte {offset} has {len(parts)} data parts')
  for part_kind, data in parts:
    itemsize = _MI_ITEMSIZE.get(part_kind)
    if itemsize is None:
      bad(f'variable at byte {offset} has data of unknown type {part_kind}')
    if len(data) != count * itemsize:
      bad(f'variable at byte {offset}: dimensions {list(dims)} need {count * itemsize} bytes '
          f'of type {part_kind}, it holds {len(data)}')
  return bytes(subs[2][1]).decode('latin-1')


def read_mat(path) -> dict:
  """The real numeric matrices of a .mat file by variable name (MATLAB shapes); other variables
  (cells, structs, strings, complex or sparse arrays) are left out. The file's elements are
  checked first (`check_mat`)."""
  import scipy.io
  with open(path, 'rb') as f:  # A missing file raises FileNotFoundError here.
    names = check_mat(f, path)
    try:
      # Only the checked numeric arrays: scipy skips the other variables after their headers.
      fields = scipy.io.loadmat(f, variable_names=names) if names != [] else {}
    except NotImplementedError:  # scipy's answer to v7.3.
      fields = None
    except Exception as e:  # ValueError, TypeError, OSError, zlib errors on bad or cut files.
      raise MatFileError(
          f'{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})') from None
  if fields is None:
    fields = _read_hdf5(path)
  return {name: value for name, value in fields.items()
          if not name.startswith('__') and isinstance(value, np.ndarray)
          and value.dtype.kind in 'biuf'}


class BfmModel(NamedTuple):
  """Arrays of a Basel Face Model (numpy) and its topology; see the module docstring."""
  PARAMS = ('mean', 'identity_basis', 'expression_basis', 'mean_texture', 'texture_basis')

  mean: np.ndarray              # [3, V]
  identity_basis: np.ndarray    # [80, 3 * V] component-major
  expression_basis: np.ndarray  # [64, 3 * V]
  mean_texture: np.ndarray      # [3, V] in 0..1
  texture_basis: np.ndarray     # [80, 3 * V] in 0..1 units
  mesh: mesh_lib.TriangleMesh
  landmark_ids: np.ndarray      # [5, 6] vertex ids
  landmark_weights: np.ndarray  # [5, 6]

  def render(self, params, factors, image_size, template):
    """Aligned faces [B, H, W, 3] in [-1, 1] and landmarks [B, 5, 2]."""
    height, width = image_size
    shape = factors.identity[:, :_SHAPE_DIM]
    tex = factors.identity[:, _SHAPE_DIM:_SHAPE_DIM + _TEXTURE_DIM]
    points = render.deform(params['mean'], [(params['identity_basis'], shape),
                                           (params['expression_basis'], factors.expression)])
    proj = render.pose_and_align(points, factors.pose, self.landmark_ids, template, self.landmark_weights)
    albedo = render.deform(params['mean_texture'], [(params['texture_basis'], tex)])
    normals = self.mesh.vertex_normals(proj.camera_points)
    _, hit, _, _, values = render.rasterize(self.mesh, proj, height, width,
                                            vertex_planes=albedo + normals, cull_back=False)
    albedo = tuple(jnp.clip(a, 0.0, 1.0) for a in values[:3])
    normals = mesh_lib.normalize(values[3:])
    colour = render.shade(albedo, normals, factors.lighting)
    px, py = raster.pixel_centres(height, width)
    bg = background.background(factors.noise, px, py, height, width)
    return render.composite(colour, hit, bg, height, width), proj.landmarks


def _fit(basis, columns, path, name):
  """[3V, K] basis -> [columns, 3 * V] component-major rows, zero-padded or truncated."""
  basis = np.asarray(basis, np.float64)
  if basis.ndim != 2 or basis.shape[0] % 3:
    raise MatFileError(f'{path}: {name} must be [3V, K], got shape {basis.shape}')
  rows, k = basis.shape
  per_vertex = basis.T.reshape(k, rows // 3, 3).transpose(0, 2, 1).reshape(k, rows)
  out = np.zeros((columns, rows), np.float32)
  out[:min(k, columns)] = per_vertex[:columns]
  return out


def _planes(vector):
  return np.ascontiguousarray(np.asarray(vector, np.float64).reshape(-1, 3).T)


def load_bfm(path) -> BfmModel:
  """Reads a `BFM_model_front.mat`-layout file; raises MatFileError naming missing fields."""
  fields = read_mat(path)
  missing = [name for name in REQUIRED if name not in fields]
  if missing:
    raise MatFileError(f'{path} lacks field(s) {missing} of the BFM_model_front.mat layout '
                               f'(needs {list(REQUIRED)}; found {sorted(fields)})')
  mean = _planes(fields['meanshape'])
  num_vertices = mean.shape[1]
  centre = mean.mean(axis=1, keepdims=True)
  tri = np.asarray(fields['tri']).astype(np.int64)
  if tri.ndim != 2 or 3 not in tri.shape:
    raise MatFileError(f'{path}: tri must be [F, 3], got shape {tri.shape}')
  tri = (tri if tri.shape[1] == 3 else tri.T) - 1
  keypoints = np.asarray(fields['keypoints']).reshape(-1).astype(np.int64) - 1
  if len(keypoints) < 68 or tri.min() < 0 or tri.max() >= num_vertices or keypoints.max() >= num_vertices:
    raise MatFileError(f'{path}: tri/keypoints must be 1-based indices of the {num_vertices} '
                               'vertices, with 68 keypoints')
  ids = np.zeros((5, 6), np.int32)
  weights = np.zeros((5, 6), np.float32)
  for i, group in enumerate(_FIVE_POINTS):
    ids[i, :len(group)] = keypoints[list(group)]
    weights[i, :len(group)] = 1.0 / len(group)
  return BfmModel(
      mean=(mean - centre).astype(np.float32),
      identity_basis=_fit(fields['idBase'], _SHAPE_DIM, path, 'idBase'),
      expression_basis=_fit(fields['exBase'], _EXPRESSION_DIM, path, 'exBase'),
      mean_texture=(_planes(fields['meantex']) / 255.0).astype(np.float32),
      texture_basis=_fit(fields['texBase'], _TEXTURE_DIM, path, 'texBase') / 255.0,
      mesh=mesh_lib.TriangleMesh(tri, num_vertices),
      landmark_ids=ids, landmark_weights=weights)
