"""Reads a dnnlib network pickle (StyleGAN / DiscoFaceGAN `network-snapshot-*.pkl`) safely.

A pickle can run arbitrary code, so it is read by `synface_jax.safe_pickle`, which interprets the
opcodes itself and builds plain data only: dnnlib's `Network` class becomes a `safe_pickle.Object`
holding its pickled state, numpy arrays and scalars are rebuilt from (allow-listed dtype name,
shape, raw bytes), and `collections.OrderedDict` and `_codecs.encode` give plain values. Any other
global is refused with an error naming it and the file; nothing is called or imported.

A snapshot is the tuple (G, D, Gs); each network's state is a dict with version, name,
static_kwargs, components (nested networks), build_module_src, build_func_name and variables,
a list of (local name, array). The build module source is kept as text and never run.
"""
import dataclasses

import numpy as np

from synface_jax import safe_pickle

NETWORK_CLASS = ('dnnlib.tflib.network', 'Network')
SUPPORTED_VERSIONS = (2, 3, 4)
GLOBALS = {**safe_pickle.NUMPY, **safe_pickle.BUILTINS,
           NETWORK_CLASS: safe_pickle.plain_class(*NETWORK_CLASS)}


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
  if not (isinstance(obj, safe_pickle.Object) and obj.cls == '.'.join(NETWORK_CLASS)):
    raise ValueError(f'{where}: expected a dnnlib Network, found '
                     f'{safe_pickle.describe(obj)}')
  state = obj.state
  if not isinstance(state, dict):
    raise ValueError(f'{where}: the Network state is {safe_pickle.describe(state)}, not a dict')
  version = state.get('version')
  if type(version) is not int or version not in SUPPORTED_VERSIONS:  # pylint: disable=unidiomatic-typecheck
    raise ValueError(f'{where}: Network pickle version {safe_pickle.describe(version)} is not '
                     f'one of {SUPPORTED_VERSIONS}')
  fields = {'name': (str, where), 'static_kwargs': (dict, {}), 'components': (dict, {}),
            'build_func_name': (str, ''), 'variables': (list, [])}
  for field, (kind, default) in fields.items():
    value = state.get(field)
    if value is None:
      state = dict(state, **{field: default})
    elif not isinstance(value, kind):
      raise ValueError(f'{where}: Network {field} is {safe_pickle.describe(value)}, not a '
                       f'{kind.__name__}')
  variables = {}
  for item in state['variables']:
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
      raise ValueError(f'{where}: a variables entry is not a (name, value) pair: '
                       f'{safe_pickle.describe(item)}')
    var, value = item
    if var in variables:
      raise ValueError(f'{where}: variable {var!r} appears twice')
    if not isinstance(value, (np.ndarray, np.generic, int, float)):
      raise ValueError(f'{where}: variable {var!r} is {safe_pickle.describe(value)}, not an '
                       f'array')
    value = np.asarray(value)
    if value.dtype.kind not in 'biuf':
      raise ValueError(f'{where}: variable {var!r} has dtype {value.dtype}, not numeric')
    variables[var] = value
  components = {}
  for key, component in state['components'].items():
    components[key] = _record(component, f'{where}.components[{key!r}]')
  return NetworkRecord(name=state['name'], version=version,
                       static_kwargs=dict(state['static_kwargs']), components=components,
                       build_func_name=state['build_func_name'], variables=variables)


def load_networks(path) -> tuple:
  """All networks of a snapshot pickle, as NetworkRecords ((G, D, Gs) for a training snapshot)."""
  obj = safe_pickle.load_file(path, globals=GLOBALS, str8='latin1')
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
