"""The plain-data pickle reader: exact values for real pickles, one clear error for everything else.

The fuzz tests are seeded and sized for CI (a few seconds). SYNFACE_FUZZ_SCALE=N multiplies the
number of cases (e.g. SYNFACE_FUZZ_SCALE=100 for a long run before a release).
"""
import collections
import contextlib
import io
import itertools
import os
import pickle
import random
import signal
import struct
import sys
import time
import tracemalloc
import types
import zipfile

import numpy as np
import pytest

from synface_jax import safe_pickle
from synface_jax.data import pair_files
from synface_jax.generators.discofacegan import snapshot
from synface_jax.models import convert

SCALE = max(1, int(os.environ.get('SYNFACE_FUZZ_SCALE', '1')))
PLAIN = {**safe_pickle.NUMPY, **safe_pickle.BUILTINS}
NAME = '/data/file.pkl'


# ------------------------------------------------------------------------------------------------
# Helpers.
# ------------------------------------------------------------------------------------------------


class _Hang(BaseException):
  """Raised by the alarm; a BaseException so the reader cannot turn it into a file error."""


@contextlib.contextmanager
def _deadline(seconds):
  def alarm(signum, frame):
    raise _Hang(f'still running after {seconds} s')
  old = signal.signal(signal.SIGALRM, alarm)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def _plain_types_only(value, depth=0):
  """True when value holds only what the reader may build (checked independently of it)."""
  assert depth <= safe_pickle.MAX_DEPTH + 1
  if isinstance(value, np.ndarray):
    return value.dtype.kind in 'biufc' and value.dtype.fields is None
  if isinstance(value, np.generic):
    return value.dtype.kind in 'biufc'
  if isinstance(value, (type(None), bool, int, float, str, bytes, bytearray)):
    return True
  if isinstance(value, safe_pickle.Object):
    return all(_plain_types_only(v, depth + 1) for v in (value.args, value.state))
  if isinstance(value, dict):
    return all(_plain_types_only(v, depth + 1) for kv in value.items() for v in kv)
  if type(value) in (list, tuple, set, frozenset):
    return all(_plain_types_only(v, depth + 1) for v in value)
  return False


def _outcome(fn, data, name, budget_bytes, check=_plain_types_only):
  """Runs fn(); returns 'value' or 'error', failing on anything else, a hang or a big allocation.

  An error must be a ValueError (PickleFileError is one) with a one-line message naming the file.
  """
  tracemalloc.reset_peak()
  start = tracemalloc.get_traced_memory()[0]
  try:
    with _deadline(5.0):
      value = fn()
  except ValueError as e:  # PickleFileError is a ValueError; so are the callers' layout errors.
    message = str(e)
    assert name in message, message
    assert '\n' not in message and len(message) < 2000, message
    result = 'error'
  else:
    assert check(value), (type(value), data[:80])
    result = 'value'
  peak = tracemalloc.get_traced_memory()[1] - start
  assert peak <= budget_bytes, f'{peak} bytes allocated for {len(data)} input bytes'
  return result


def _mutations(rng, data, count):
  """Seeded truncations, byte flips, insertions, deletions and opcode splices of data."""
  for _ in range(count):
    kind = rng.randrange(5)
    b = bytearray(data)
    if kind == 0:
      b = b[:rng.randrange(len(b))]
    elif kind == 1:
      for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 2:
      i = rng.randrange(len(b))
      b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif kind == 3:
      i = rng.randrange(len(b))
      del b[i:i + rng.randint(1, 8)]
    else:  # A piece of the stream copied elsewhere: valid opcodes in a wrong place.
      i, j = sorted(rng.randrange(len(b)) for _ in range(2))
      k = rng.randrange(len(b))
      b[k:k] = b[i:j][:64]
    yield bytes(b)


@contextlib.contextmanager
def _allocates_at_most(limit):
  tracemalloc.reset_peak()
  start = tracemalloc.get_traced_memory()[0]
  yield
  peak = tracemalloc.get_traced_memory()[1] - start
  assert peak < limit, f'{peak} bytes allocated'


@pytest.fixture(scope='module', autouse=True)
def _trace_memory():
  tracemalloc.start()
  yield
  tracemalloc.stop()


# ------------------------------------------------------------------------------------------------
# Correct values.
# ------------------------------------------------------------------------------------------------

SAMPLES = [
    [1, -2, 2 ** 100, -(2 ** 70), 1.5, float('inf'), None, True, False, 'é\u20ac', b'\x00\xff'],
    {'a': (1, 2), 3: [b'', ''], (1, 'x'): {'n': None}, 2.5: frozenset({1, 'b'})},
    ({1, 2, 3}, frozenset(), bytearray(b'xyz'), (), [], {}),
    collections.OrderedDict([('z', 1), ('a', 2)]),
    np.arange(24, dtype='>i4').reshape(2, 3, 4),
    np.asfortranarray(np.linspace(-1, 1, 12, dtype=np.float16).reshape(3, 4)),
    np.array([True, False, True]),
    np.zeros((0, 7), np.uint8),
    np.array(3.25, np.float64),
    [np.float32(1.5), np.int64(-7), np.bool_(True), np.complex64(1 + 2j)],
    {'shared': [np.ones(3, np.uint16)] * 3},
]


def _equal(a, b):
  if isinstance(b, (np.ndarray, np.generic)):
    return (type(a) is type(b) and a.dtype == b.dtype and np.shape(a) == np.shape(b)
            and np.array_equal(a, b)
            and (not isinstance(b, np.ndarray) or a.flags.f_contiguous == b.flags.f_contiguous))
  if isinstance(b, dict):
    return isinstance(a, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in b)
  if isinstance(b, (list, tuple)):
    return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
  return type(a) is type(b) and a == b


@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize('index', range(len(SAMPLES)))
def test_reads_what_pickle_writes(protocol, index):
  value = SAMPLES[index]
  data = pickle.dumps(value, protocol=protocol)
  assert _equal(safe_pickle.load(data, name=NAME, globals=PLAIN), value)


def test_arrays_are_writable_copies():
  data = pickle.dumps(np.arange(4, dtype=np.int16), protocol=2)
  array = safe_pickle.load(data, name=NAME, globals=PLAIN)
  array[0] = 9
  assert array.flags.writeable and array.flags.owndata and list(array) == [9, 1, 2, 3]


def test_python2_str_as_bytes_or_text():
  data = b'\x80\x02U\x03a\xe9b.'  # SHORT_BINSTRING 'a\xe9b' as Python 2 writes str.
  assert safe_pickle.load(data, name=NAME, str8='bytes') == b'a\xe9b'
  assert safe_pickle.load(data, name=NAME, str8='latin1') == 'aéb'


# ------------------------------------------------------------------------------------------------
# Hand-crafted streams: the attacks, and every allowed global under BUILD, SETITEM, REDUCE, NEWOBJ.
# ------------------------------------------------------------------------------------------------


def _lit(value) -> bytes:
  """The opcodes that push value (a protocol-2 pickle without PROTO and STOP)."""
  return pickle.dumps(value, protocol=2)[2:-1]


def _glob(module, name) -> bytes:
  return f'c{module}\n{name}\n'.encode()


def _call(module, name, *args: bytes, op=b'R') -> bytes:
  return _glob(module, name) + b'(' + b''.join(args) + b't' + op


def _refused(data, match, globals_=PLAIN, **kwargs):
  with pytest.raises(safe_pickle.PickleFileError) as info:
    safe_pickle.load(b'\x80\x02' + data + b'.', name=NAME, globals=globals_, **kwargs)
  message = str(info.value)
  assert message.startswith(f'{NAME}: ') and '\n' not in message, message
  assert match in message, message
  return message


DTYPE_F4 = _call('numpy', 'dtype', _lit('f4'), _lit(False), _lit(True))
STRUCTURED_STATE = (3, '|', None, ('p', 'q'), {'p': ('<f8', 0), 'q': ('<f8', 2 ** 40)},
                    16, 1, 16)


@pytest.mark.parametrize('data,match', [
    # The memory-unsafe dtype states: structured (object field over raw bytes, huge offset).
    (DTYPE_F4 + _lit(STRUCTURED_STATE) + b'b', 'structured'),
    (_call('numpy', 'dtype', _lit('V16'), _lit(False), _lit(True))
     + _lit((3, '|', None, ('o',), {'o': ('O', 0)}, 16, 1, 63)) + b'b', "'V16'"),
    (_call('numpy', 'dtype', _lit('O8'), _lit(False), _lit(True)), 'object dtype'),
    (DTYPE_F4 + _lit((3, '<', None, None, None, 2 ** 40, -1, 0)) + b'b', 'item size'),
    (DTYPE_F4 + _lit((3, '<', ((1,), (2 ** 40,)), None, None, -1, -1, 0)) + b'b', 'sub-array'),
    (DTYPE_F4 + _lit((3, 'x', None, None, None, -1, -1, 0)) + b'b', 'byte order'),
    # Arrays whose sizes do not add up, or that are objects.
    (_call('numpy.core.multiarray', '_reconstruct', _glob('numpy', 'ndarray'), _lit((0,)),
           _lit(b'b')) + b'(' + _lit(1) + _lit((2 ** 40,)) + DTYPE_F4 + _lit(False)
     + _lit(b'\x00' * 8) + b'tb', 'needs'),
    (_call('numpy.core.multiarray', '_reconstruct', _glob('numpy', 'ndarray'), _lit((0,)),
           _lit(b'b')) + b'(' + _lit(1) + _lit((1,)) + DTYPE_F4 + _lit(False)
     + _lit([1]) + b'tb', 'object arrays'),
    (_call('numpy.core.multiarray', '_reconstruct', _glob('builtins', 'set'), _lit((0,)),
           _lit(b'b')), 'subtype'),
    (_call('numpy.core.multiarray', 'scalar', DTYPE_F4, _lit(b'\x00' * 3)), 'needs 4 bytes'),
    (_call('numpy._core.numeric', '_frombuffer', _lit(b'\x00' * 4), DTYPE_F4,
           _lit((2 ** 31, 2 ** 31)), _lit('C')), 'needs'),
    # Calls, builds and item assignment on things that are not plain containers.
    (_call('os', 'system', _lit('true')), 'refused global os.system'),
    (_glob('numpy', 'ndarray') + _lit((1,)) + b'R', 'REDUCE on numpy.ndarray is refused'),
    (_glob('numpy', 'dtype') + _lit({'x': 1}) + b'b', 'BUILD on numpy.dtype'),
    (DTYPE_F4 + _lit('k') + _lit(1) + b's', 'SETITEM on'),
    (_glob('builtins', 'set') + _lit(1) + b'a', 'APPEND on'),
    (_glob('numpy', 'dtype') + b')\x81', 'NEWOBJ on numpy.dtype is refused'),
    (_call('builtins', 'bytes', _lit(10 ** 12)), 'refused'),
    (_call('builtins', 'bytearray', _lit('x'), _lit('utf-16')), 'encoding'),
    (_call('_codecs', 'encode', _lit('x'), _lit('rot13')), 'latin-1'),
    (_call('collections', 'OrderedDict', _lit([('a', 1)])), 'OrderedDict() with arguments'),
    (_lit([1]) + _lit({'a': 1}) + b'b', 'BUILD on a list'),
    (DTYPE_F4, 'never completed'),
    (_glob('numpy', 'dtype'), 'never completed'),
    # Structure: cycles, depth, hashing, persistent ids, extensions, trailing data, truncation.
    (b']q\x00h\x00a', 'contains itself'),
    (b')' + b'\x85' * 100_000, 'nested more than'),
    (b'}' + b')' + b'\x85' * 100_000 + b'K\x01s', 'dict key'),
    (b'\x8f(' + _lit([1]) + b'\x90', 'set element'),
    (_lit('x') + b'Q', 'persistent ids are refused'),
    (b'\x82\x01', "opcode b'\\x82'"),
    (b'(cbuiltins\nset\no', "opcode b'o'"),
    (_lit(1) + b'.' + b'junk', 'bytes after the end'),
    (b'B\xff\xff\xff\x7f', 'truncated'),
    (b'K\x01K\x02', 'values left on the stack'),
    (b'h\x07', 'memo key 7'),
    (_lit(1) + b'00', 'no MARK'),
], ids=lambda x: x if isinstance(x, str) else '')
def test_crafted_streams_are_refused(data, match):
  _refused(data, match)


def test_expansion_through_the_memo_is_bounded():
  # One 64 KiB byte string, memoised, then read as an array 4096 times: 256 MiB if allowed.
  raw = b'B' + struct.pack('<I', 65536) + bytes(65536) + b'q\x01'  # BINBYTES, BINPUT 1
  one = _call('numpy._core.numeric', '_frombuffer', b'h\x01', DTYPE_F4, _lit((16384,)),
              _lit('C'))
  data = raw + b'0' + b'(' + one * 4096 + b'l'
  with _allocates_at_most(64 * 2 ** 20):
    _refused(data, 'expands far beyond')


def _arg_pool():
  """Arguments to throw at globals: plain values of every kind, dtypes, stubs, markers."""
  plain = [None, True, 0, -1, 2 ** 70, 1.5, float('nan'), 'f4', 'O8', 'V16', 'U4', 'S3', b'b',
           '<', '>', 'latin1', 'C', 'F', (), (0,), (2, 2), (2 ** 62, 2 ** 62), (-1,), [1, 2],
           {}, {'a': 1}, b'\x00' * 16, 'x' * 40, STRUCTURED_STATE,
           (3, '<', None, None, None, -1, -1, 0), (1, (2,), None, False, b'\x00' * 8)]
  pool = [_lit(v) for v in plain]
  pool += [DTYPE_F4, DTYPE_F4 + _lit((3, '<', None, None, None, -1, -1, 0)) + b'b',
           _glob('numpy', 'ndarray'), _glob('numpy', 'dtype'), _glob('builtins', 'set'),
           _call('numpy.core.multiarray', '_reconstruct', _glob('numpy', 'ndarray'),
                 _lit((0,)), _lit(b'b'))]
  return pool


_FOLLOW_UPS = [b'', b'0' + _lit(1), _lit('k') + _lit(1) + b's', _lit(1) + b'a',
               b'(' + _lit(1) + b'e', b'(' + _lit('k') + _lit(2) + b'u', b'2' + b'\x85']


def _global_streams(globals_, rng, per_global):
  """For every allowed global: alone, REDUCE and NEWOBJ with random arguments, then BUILD
  with a random state, SETITEM, APPEND, or a second BUILD."""
  pool = _arg_pool()
  for (module, name) in sorted(globals_):
    g = _glob(module, name)
    yield g
    for _ in range(per_global):
      args = b''.join(rng.choice(pool) for _ in range(rng.randrange(5)))
      head = g + b'(' + args + b't' + rng.choice([b'R', b'R', b'\x81'])
      follow = rng.choice(_FOLLOW_UPS + [rng.choice(pool) + b'b',
                                         rng.choice(pool) + b'b' + rng.choice(pool) + b'b'])
      yield head + follow


def _torch_globals():
  return convert._Loader(lambda *a: np.zeros(4, np.float32)).globals()


@pytest.mark.parametrize('profile', ['bin', 'pkl', 'pth'])
def test_every_allowed_global_ends_in_a_value_or_an_error(profile):
  if profile == 'bin':
    globals_ = PLAIN
  elif profile == 'pkl':
    globals_ = snapshot.GLOBALS
  else:
    globals_ = _torch_globals()
  rng = random.Random(f'globals-{profile}')
  outcomes = collections.Counter()
  for body in _global_streams(globals_, rng, 40 * SCALE):
    data = b'\x80\x02' + body + b'.'
    outcomes[_outcome(lambda: safe_pickle.load(data, name=NAME, globals=globals_), data, NAME,
                      8 * len(data) + 2 ** 21)] += 1
  assert outcomes['error'] > 0
  # Some combinations are legitimate (e.g. set([1, 2]), a dtype then its state): they are read.
  assert outcomes['value'] > 0 or profile == 'pth'


# ------------------------------------------------------------------------------------------------
# Mutation fuzzing of real pickles, through the loaders users call.
# ------------------------------------------------------------------------------------------------


def _fuzz(loader, seed_bytes, path, seed, count, check=_plain_types_only):
  rng = random.Random(seed)
  outcomes = collections.Counter()
  start = time.perf_counter()
  for data in itertools.chain([seed_bytes], _mutations(rng, seed_bytes, count)):
    path.write_bytes(data)
    outcomes[_outcome(lambda: loader(path), data, str(path), 8 * len(data) + 2 ** 22,
                      check)] += 1
  assert outcomes['value'] >= 1 and outcomes['error'] >= count // 4, outcomes
  return time.perf_counter() - start


def _corpus():
  return [pickle.dumps(v, protocol=p) for v in SAMPLES for p in (0, 2, 4, 5)]


def test_fuzz_plain_pickles(tmp_path):
  path = tmp_path / 'sample.pkl'
  load = lambda p: safe_pickle.load_file(p, globals=PLAIN)
  for i, data in enumerate(_corpus()):
    _fuzz(load, data, path, seed=i, count=25 * SCALE)


def _pack(protocol, arrays=False):
  rng = np.random.default_rng(protocol)
  from PIL import Image
  images = []
  for _ in range(4):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).save(buffer, 'PNG')
    images.append(np.frombuffer(buffer.getvalue(), np.uint8) if arrays else buffer.getvalue())
  return pickle.dumps((images, [True, False]), protocol=protocol)


@pytest.mark.parametrize('protocol,arrays', [(0, False), (2, True), (4, False), (5, True)])
def test_fuzz_bin_packs(tmp_path, protocol, arrays):
  data = _pack(protocol, arrays)
  path = tmp_path / 'pairs.bin'
  path.write_bytes(data)
  images, issame = pair_files.load_bin(path)
  assert images.shape == (4, 6, 5, 3) and issame.tolist() == [True, False]
  _fuzz(pair_files.load_bin, data, path, seed=protocol, count=150 * SCALE)


@pytest.fixture
def fake_dnnlib(monkeypatch):
  """A stand-in dnnlib.tflib.network.Network so that pickle can write snapshots in the tests."""
  module = types.ModuleType('dnnlib.tflib.network')

  class Network:
    def __init__(self, state):
      self.state = state

    def __getstate__(self):
      return self.state

  Network.__module__ = module.__name__
  Network.__qualname__ = 'Network'
  module.Network = Network
  for name in ('dnnlib', 'dnnlib.tflib'):
    monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
  monkeypatch.setitem(sys.modules, module.__name__, module)
  return Network


def _network(cls, name, components=None):
  return cls({'version': 4, 'name': name, 'static_kwargs': {'resolution': 8},
              'components': components or {}, 'build_module_src': 'x = 1',
              'build_func_name': 'G_main',
              'variables': [('w', np.arange(6, dtype=np.float32).reshape(2, 3)),
                            ('lod', np.float32(0.0))]})


def test_fuzz_network_snapshots(tmp_path, fake_dnnlib):
  net = _network(fake_dnnlib, 'Gs', {'mapping': _network(fake_dnnlib, 'G_mapping')})
  data = pickle.dumps((net, net, net), protocol=4)
  path = tmp_path / 'snapshot.pkl'
  path.write_bytes(data)
  gs = snapshot.load_gs(path)
  assert gs.name == 'Gs' and gs.components['mapping'].name == 'G_mapping'
  np.testing.assert_array_equal(gs.variables['w'], np.arange(6).reshape(2, 3))
  records = lambda value: all(isinstance(n, snapshot.NetworkRecord) for n in value)
  _fuzz(snapshot.load_networks, data, path, seed=7, count=250 * SCALE, check=records)


# ------------------------------------------------------------------------------------------------
# .pth archives: limits and fuzzing.
# ------------------------------------------------------------------------------------------------


def _text(s):
  data = s.encode()
  return b'X' + struct.pack('<I', len(data)) + data


def _ints(values):
  return b'(' + b''.join(b'J' + struct.pack('<i', v) for v in values) + b't'


def _tensor(index, numel, size, stride, offset=0):
  return (b'ctorch._utils\n_rebuild_tensor_v2\n(('
          + _text('storage') + b'ctorch\nFloatStorage\n' + _text(str(index)) + _text('cpu')
          + b'J' + struct.pack('<i', numel) + b'tQJ' + struct.pack('<i', offset)
          + _ints(size) + _ints(stride) + b'\x89ccollections\nOrderedDict\n)RtR')


def _pth(path, data_pkl, storages, compression=zipfile.ZIP_STORED):
  with zipfile.ZipFile(path, 'w', compression=compression) as archive:
    archive.writestr('archive/data.pkl', data_pkl)
    archive.writestr('archive/byteorder', 'little')
    for i, raw in enumerate(storages):
      archive.writestr(f'archive/data/{i}', raw)
  return path


def _state_dict(*entries):
  return b'\x80\x02}(' + b''.join(_text(k) + t for k, t in entries) + b'u.'


def test_pth_stride_zero_view_is_refused(tmp_path):
  path = _pth(tmp_path / 'stride0.pth',
              _state_dict(('w', _tensor(0, 1, (100_000, 100_000), (0, 0)))),
              [np.zeros(1, np.float32).tobytes()])
  with _allocates_at_most(2 ** 22):
    with pytest.raises(safe_pickle.PickleFileError, match='overlapping strides') as info:
      convert.load_pth(path)
  assert str(info.value).startswith(str(path))


def test_pth_deflate_bomb_is_refused(tmp_path):
  numel = 2 ** 22  # 16 MiB of zeros deflates to about 16 KiB.
  path = _pth(tmp_path / 'bomb.pth', _state_dict(('w', _tensor(0, numel, (numel,), (1,)))),
              [bytes(4 * numel)], compression=zipfile.ZIP_DEFLATED)
  assert path.stat().st_size < 2 ** 16
  with _allocates_at_most(2 ** 22):
    with pytest.raises(safe_pickle.PickleFileError, match='deflate bomb'):
      convert.load_pth(path)


def test_pth_compressed_weights_still_load(tmp_path):
  weights = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
  path = _pth(tmp_path / 'deflated.pth', _state_dict(('w', _tensor(0, 192, (64, 3), (3, 1)))),
              [weights.tobytes()], compression=zipfile.ZIP_DEFLATED)
  np.testing.assert_array_equal(convert.load_pth(path)['w'], weights)


def test_pth_many_views_of_one_storage_are_bounded(tmp_path):
  numel = 2 ** 16
  views = [(f'w{i}', _tensor(0, numel, (numel,), (1,))) for i in range(8)]
  path = _pth(tmp_path / 'views.pth', _state_dict(*views), [bytes(4 * numel)])
  with pytest.raises(safe_pickle.PickleFileError, match='far more bytes'):
    convert.load_pth(path)
  path = _pth(tmp_path / 'two.pth', _state_dict(*views[:2]), [bytes(4 * numel)])
  assert sorted(convert.load_pth(path)) == ['w0', 'w1']  # Tied weights are fine.


def test_pth_declared_storage_larger_than_member(tmp_path):
  path = _pth(tmp_path / 'short.pth', _state_dict(('w', _tensor(0, 2 ** 28, (4,), (1,)))),
              [bytes(16)])
  with pytest.raises(safe_pickle.PickleFileError, match='has 4 elements'):
    convert.load_pth(path)


def test_fuzz_pth(tmp_path):
  weights = np.arange(12, dtype=np.float32)
  data_pkl = _state_dict(('a', _tensor(0, 12, (3, 4), (4, 1))),
                         ('b', _tensor(0, 12, (4, 3), (1, 4))),
                         ('c', _tensor(1, 2, (2,), (1,))))
  storages = [weights.tobytes(), np.ones(2, np.float32).tobytes()]
  path = _pth(tmp_path / 'model.pth', data_pkl, storages)
  loaded = convert.load_pth(path)
  np.testing.assert_array_equal(loaded['b'], weights.reshape(3, 4).T)
  rng = random.Random(11)
  outcomes = collections.Counter()
  zipped = path.read_bytes()
  # The pickle inside a valid archive, then the archive bytes themselves.
  cases = [('pkl', m) for m in _mutations(rng, data_pkl, 200 * SCALE)]
  cases += [('zip', m) for m in _mutations(rng, zipped, 100 * SCALE)]
  for kind, data in cases:
    if kind == 'pkl':
      _pth(path, data, storages)
    else:
      path.write_bytes(data)
    outcomes[_outcome(lambda: convert.load_pth(path), data, str(path), 2 ** 22)] += 1
  assert outcomes['error'] > 100 and outcomes['value'] > 0, outcomes


@pytest.mark.parametrize('loader', [pair_files.load_bin, snapshot.load_networks])
def test_loaders_refuse_a_structured_dtype_state(tmp_path, loader):
  # An array whose dtype state lays two fields over 16 raw bytes, one at offset 2**40: with numpy's
  # own __setstate__ this is an out-of-bounds read (and, through SETITEM, write).
  array = (_call('numpy.core.multiarray', '_reconstruct', _glob('numpy', 'ndarray'), _lit((0,)),
                 _lit(b'b'))
           + b'(' + _lit(1) + _lit((1,)) + DTYPE_F4 + _lit(STRUCTURED_STATE) + b'b'
           + _lit(False) + _lit(b'\x00' * 16) + b'tb')
  path = tmp_path / 'crafted.bin'
  path.write_bytes(b'\x80\x02(]' + array + b'a]\x88at.')
  with pytest.raises(safe_pickle.PickleFileError, match='structured') as info:
    loader(path)
  assert str(info.value).startswith(f'{path}: ')
