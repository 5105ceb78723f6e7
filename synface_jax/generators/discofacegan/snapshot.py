"""Reads a dnnlib network pickle (StyleGAN / DiscoFaceGAN `network-snapshot-*.pkl`) safely.

A pickle can run arbitrary code, so it is read with an unpickler that resolves only the globals
such a snapshot needs: dnnlib's `Network` class (mapped to a stand-in that keeps its pickled
state), numpy's array and scalar reconstructors and dtype (under both the numpy 1 `numpy.core`
and numpy 2 `numpy._core` module names), `collections.OrderedDict` and the `_codecs.encode`
that Python 3 protocol-2 pickles use for bytes. Any other global is refused with
pickle.UnpicklingError naming it, before anything is called. Object arrays are refused too.

A snapshot is the tuple (G, D, Gs); each network's state is a dict with version, name,
static_kwargs, components (nested networks), build_module_src, build_func_name and variables,
a list of (local name, array). The build module source is kept as text and never run.
"""
import collections
import dataclasses
import pickle

import numpy as np

NETWORK_CLASS = ('dnnlib.tflib.network', 'Network')
SUPPORTED_VERSIONS = (2, 3, 4)
_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_NUMPY_SCALAR = np.float32(0).__reduce__()[0]


class _NetworkState:
  """What the unpickler builds for a dnnlib Network: an object holding the pickled state only."""

  def __setstate__(self, state):
    self.state = state


def _reconstruct(subtype, shape, dtype):
  if subtype is not np.ndarray:
    raise pickle.UnpicklingError(f'refused array subtype {subtype!r}')
  return _NUMPY_RECONSTRUCT(np.ndarray, shape, dtype)


def _dtype(spec, *args):
  if not isinstance(spec, str):
    raise pickle.UnpicklingError(f'refused dtype spec {spec!r}')
  dtype = np.dtype(spec, *args)
  if dtype.hasobject:
    raise pickle.UnpicklingError(f'refused object dtype {spec!r}')
  return dtype


def _scalar(dtype, *args):
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise pickle.UnpicklingError(f'refused scalar of dtype {dtype!r}')
  return _NUMPY_SCALAR(dtype, *args)


def _encode(text, encoding='utf-8'):
  if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
    raise pickle.UnpicklingError('refused _codecs.encode other than str to latin1')
  return text.encode('latin1')


_ALLOWED = {
    NETWORK_CLASS: _NetworkState,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): _dtype,
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy.core.multiarray', 'scalar'): _scalar,
    ('numpy._core.multiarray', 'scalar'): _scalar,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('_codecs', 'encode'): _encode,
}


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that resolves only the globals of a dnnlib snapshot (see the module docstring)."""

  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f'refused global {module}.{name} in a network pickle') from None

  def persistent_load(self, pid):
    raise pickle.UnpicklingError(f'refused persistent id {pid!r} in a network pickle')


@dataclasses.dataclass
class NetworkRecord:
  """A pickled dnnlib Network as plain data."""
  name: str
  version: int
  static_kwargs: dict
  components: dict          # component key ('mapping', 'synthesis') -> NetworkRecord
  build_func_name: str
  variables: dict           # local variable name -> numpy array, in creation order


def _record(obj, where: str) -> NetworkRecord:
  if not isinstance(obj, _NetworkState):
    raise ValueError(f'{where}: expected a dnnlib Network, found {type(obj).__name__}')
  state = getattr(obj, 'state', None)
  if not isinstance(state, dict):
    raise ValueError(f'{where}: the Network state is a {type(state).__name__}, not a dict')
  version = state.get('version')
  if version not in SUPPORTED_VERSIONS:
    raise ValueError(f'{where}: Network pickle version {version!r} is not one of '
                     f'{SUPPORTED_VERSIONS}')
  name = state.get('name', where)
  variables = {}
  for item in state.get('variables', []):
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
      raise ValueError(f'{where}: a variables entry is not a (name, value) pair: {item!r:.80}')
    var, value = item
    if var in variables:
      raise ValueError(f'{where}: variable {var!r} appears twice')
    value = np.asarray(value)
    if value.dtype.kind not in 'biuf':
      raise ValueError(f'{where}: variable {var!r} has dtype {value.dtype}, not numeric')
    variables[var] = value
  components = {}
  for key, component in dict(state.get('components') or {}).items():
    components[key] = _record(component, f'{where}.components[{key!r}]')
  return NetworkRecord(name=name, version=version,
                       static_kwargs=dict(state.get('static_kwargs') or {}),
                       components=components,
                       build_func_name=state.get('build_func_name', ''), variables=variables)


def load_networks(path) -> tuple:
  """All networks of a snapshot pickle, as NetworkRecords ((G, D, Gs) for a training snapshot)."""
  with open(path, 'rb') as f:
    obj = RestrictedUnpickler(f, encoding='latin1').load()
  networks = obj if isinstance(obj, (tuple, list)) else (obj,)
  return tuple(_record(n, f'{path}[{i}]') for i, n in enumerate(networks))


def load_gs(path) -> NetworkRecord:
  """The generator to sample from: Gs, the third network of a (G, D, Gs) snapshot.

  G is the training copy; Gs holds the moving average of its weights that the official code
  generates with.
  """
  networks = load_networks(path)
  if len(networks) != 3:
    raise ValueError(f'{path}: expected a (G, D, Gs) snapshot, found {len(networks)} network(s)')
  return networks[2]


def flat_variables(network: NetworkRecord) -> dict:
  """Every variable of a network and its components as '<component key>/.../<name>' -> array."""
  flat = dict(network.variables)
  for key, component in network.components.items():
    for name, value in flat_variables(component).items():
      flat[f'{key}/{name}'] = value
  return flat
