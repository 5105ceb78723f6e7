"""A Basel Face Model in the `BFM_model_front.mat` layout (Deep3DFaceRecon, DiscoFaceGAN), rendered
with the same pipeline as the procedural head.

Fields used: meanshape [1, 3V] and meantex [1, 3V] (x, y, z / r, g, b interleaved per vertex),
idBase [3V, 80], exBase [3V, 64], texBase [3V, 80], tri [F, 3] and keypoints [68] (1-based, as
MATLAB writes them). Bases with fewer columns are padded with zeros, extra columns are dropped.
Texture is in 0..255. The shape is re-centred on its mean vertex. The file is read with
`scipy.io.loadmat` (MATLAB v4 to v7.2); v7.3 files are HDF5 and are read with h5py when installed.
"""
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


def read_mat(path) -> dict:
  """The real numeric matrices of a .mat file by variable name (MATLAB shapes); other variables
  (cells, structs, strings, complex or sparse arrays) are left out."""
  import scipy.io
  with open(path, 'rb') as f:  # A missing file raises FileNotFoundError here.
    try:
      fields = scipy.io.loadmat(f)
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
