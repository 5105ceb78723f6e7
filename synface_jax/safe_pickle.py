"""Reads pickles from strangers: an opcode-level reader that builds plain data only.

Verification packs (`.bin`), DiscoFaceGAN network snapshots (`.pkl`) and torch checkpoints (`.pth`)
are pickles. `pickle.Unpickler`, even with a restricted `find_class`, hands file data to the
objects it rebuilds (numpy's `dtype.__setstate__` alone is enough to corrupt memory), so it is not
used at all. `load` interprets the opcodes itself and only ever creates:

* None, bool, int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset;
* numpy arrays and scalars, from (dtype name on an allow-list, shape, raw bytes), copied;
* what the caller's allow-listed globals build (`Global`): each receives plain arguments and must
  return one of the above, or an `Object` (a class instance kept as plain data: its constructor
  arguments and its pickled state).

Nothing from the file is ever called, imported or given to a constructor other than those. The
result is checked before it is returned: nesting at most `max_depth` deep, no cycles, only the
types above. Work and memory are bounded by the size of the input (`budget`): each opcode
consumes input, and everything a global builds beyond plain stack work is charged.

Every failure is one exception type, `PickleFileError` (a `pickle.UnpicklingError` and a
`ValueError`), with a one-line message that starts with the file name and says what was wrong
and at which byte offset.
"""
import codecs
import collections
import dataclasses
import io
import math
import os
import pickle
import stat
import struct
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

# numpy dtypes an array or scalar may have, by the name numpy pickles them with ('f4', 'i8', ...).
DTYPES = {name: np.dtype(name) for name in (
    'b1', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8', 'f2', 'f4', 'f8', 'c8', 'c16')}
MAX_DEPTH = 64          # containers nested deeper than this are refused
MAX_KEY_NODES = 256     # a dict key or set element may hold at most this many values
MAX_NDIM = 32


class PickleFileError(pickle.UnpicklingError, ValueError):
  """A pickle that cannot be read safely, or does not hold what the caller allows."""


class Refused(Exception):
  """Raised by the reader and by globals; becomes a PickleFileError naming the file and offset."""


@dataclasses.dataclass
class Object:
  """An instance of an allow-listed class, kept as plain data (never instantiated)."""
  cls: str            # 'module.name'
  args: tuple = ()
  state: Any = None


class Global:
  """An allow-listed global: what REDUCE (`call`) or NEWOBJ (`new`) on it builds.

  `call(reader, *args)` / `new(reader, *args)` receive plain values (or the Global markers and
  stubs this module defines) and must check them; `reader.charge(n)` accounts for work and
  memory that is not plain stack work.
  """

  def __init__(self, module: str, name: str, call: Optional[Callable] = None,
               new: Optional[Callable] = None):
    self.module, self.name, self.call, self.new = module, name, call, new

  def __repr__(self):
    return f'{self.module}.{self.name}'


class Buildable:
  """A stub the BUILD opcode may complete; `build` returns what replaces it."""

  def build(self, reader, state):
    raise NotImplementedError


# ------------------------------------------------------------------------------------------------
# Checks on values.
# ------------------------------------------------------------------------------------------------

_ATOMS = (type(None), bool, int, float, complex, str, bytes, bytearray)


def describe(value) -> str:
  """A short description of a file value for an error message (never a deep repr)."""
  if isinstance(value, (bool, int, float, type(None))):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + '...'
  if isinstance(value, (str, bytes, bytearray)):
    text = repr(value[:32])
    return text + ('...' if len(value) > 32 else '')
  if isinstance(value, (Global, np.dtype)):
    return repr(value)
  if isinstance(value, Object):
    return f'an instance of {value.cls}'
  if isinstance(value, (list, tuple, dict, set, frozenset)):
    return f'a {type(value).__name__} of {len(value)}'
  return f'a {type(value).__name__}'


def _check_key(reader, key):
  """Dict keys and set elements: immutable plain values, small, shallow (hashing is recursive)."""
  todo = [(key, 0)]
  nodes = 0
  while todo:
    value, depth = todo.pop()
    nodes += 1
    reader.charge(1)
    if nodes > MAX_KEY_NODES or depth > 8:
      raise Refused('a dict key or set element is too large or too deeply nested')
    if isinstance(value, (tuple, frozenset)) and type(value) in (tuple, frozenset):
      todo.extend((v, depth + 1) for v in value)
    elif type(value) not in (type(None), bool, int, float, str, bytes):
      raise Refused(f'a dict key or set element is {describe(value)}')
  return key


def as_text(value, what: str) -> str:
  """An ASCII name given as str or (Python 2) bytes."""
  if isinstance(value, bytes):
    try:
      return value.decode('ascii')
    except UnicodeDecodeError:
      raise Refused(f'{what} is not ASCII: {describe(value)}') from None
  if not isinstance(value, str):
    raise Refused(f'{what} must be a string, not {describe(value)}')
  return value


def as_bytes(value, what: str) -> bytes:
  """Raw bytes given as bytes, bytearray or a Python 2 str read as latin-1."""
  if isinstance(value, (bytes, bytearray)):
    return bytes(value)
  if isinstance(value, str):
    try:
      return value.encode('latin1')
    except UnicodeEncodeError:
      raise Refused(f'{what} holds characters beyond latin-1') from None
  raise Refused(f'{what} must be bytes, not {describe(value)}')


def as_int(value, what: str, low: int = 0, high: int = 2 ** 62) -> int:
  if type(value) is not int or not low <= value <= high:  # pylint: disable=unidiomatic-typecheck
    raise Refused(f'{what} must be an integer in [{low}, {high}], not {describe(value)}')
  return value


def as_shape(value, what: str = 'array shape') -> Tuple[int, ...]:
  if not isinstance(value, (tuple, list)) or len(value) > MAX_NDIM:
    raise Refused(f'{what} must be a tuple of at most {MAX_NDIM} sizes, not {describe(value)}')
  return tuple(as_int(n, what) for n in value)


# ------------------------------------------------------------------------------------------------
# numpy: arrays and scalars from (dtype name, shape, raw bytes).
# ------------------------------------------------------------------------------------------------


class _DTypeStub(Buildable):
  """numpy.dtype(name, align, copy) before its BUILD (which sets the byte order)."""

  def __init__(self, dtype: np.dtype):
    self.dtype = dtype

  def build(self, reader, state):
    # numpy pickles a plain dtype's state as (3, byteorder, None, None, None, -1, -1, flags).
    if not (isinstance(state, tuple) and len(state) in (8, 9)):
      raise Refused(f'dtype state must be an 8-tuple, not {describe(state)}')
    version, order, subarray, names, fields, elsize, alignment, flags = state[:8]
    if version not in (3, 4) or type(version) is not int:  # pylint: disable=unidiomatic-typecheck
      raise Refused(f'dtype state version {describe(version)} is not 3 or 4')
    if subarray is not None or names is not None or fields is not None:
      raise Refused('structured and sub-array dtypes are refused')
    if len(state) == 9 and state[8] is not None:
      raise Refused('dtype metadata is refused')
    if (type(elsize) is not int or type(alignment) is not int  # pylint: disable=unidiomatic-typecheck
        or elsize not in (-1, self.dtype.itemsize) or alignment not in (-1, self.dtype.alignment)):
      raise Refused(f'dtype {self.dtype} with item size {describe(elsize)} and alignment '
                     f'{describe(alignment)} is refused')
    as_int(flags, 'dtype flags', 0, 255)
    order = as_text(order, 'dtype byte order')
    if order not in ('<', '>', '|', '='):
      raise Refused(f'dtype byte order {describe(order)} is not one of < > | =')
    return self.dtype.newbyteorder(order) if order in '<>' else self.dtype


def _dtype_of(value) -> np.dtype:
  if isinstance(value, _DTypeStub):
    return value.dtype
  if isinstance(value, np.dtype) and value.kind in 'biufc' and not value.fields:
    return value
  raise Refused(f'expected a numpy dtype, found {describe(value)}')


def _make_dtype(reader, spec, align=False, copy=True):
  del align, copy  # Meaningless for the plain dtypes allowed.
  name = as_text(spec, 'dtype name')
  if name.startswith('O'):
    raise Refused('object dtype refused (an array of Python objects)')
  if name not in DTYPES:
    raise Refused(f'dtype {name!r} is not one of {sorted(DTYPES)}')
  return _DTypeStub(DTYPES[name])


def array_from_bytes(reader, raw, dtype, shape, fortran: bool = False) -> np.ndarray:
  """A writable numpy copy of `raw` read as `dtype` in `shape`; sizes must match exactly."""
  raw = as_bytes(raw, 'array data')
  dtype = _dtype_of(dtype)
  shape = as_shape(shape)
  count = math.prod(shape)
  if count * dtype.itemsize != len(raw):
    raise Refused(f'array of shape {shape} and dtype {dtype} needs '
                   f'{count * dtype.itemsize} bytes, the file holds {len(raw)}')
  reader.charge(len(raw) + 64)
  flat = np.frombuffer(raw, dtype=dtype)
  return flat.reshape(shape, order='F' if fortran else 'C').copy(order='K')


class _ArrayStub(Buildable):
  """numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') before its BUILD."""

  def build(self, reader, state):
    # numpy's ndarray state: (version, shape, dtype, is_fortran, raw data); version may be absent.
    if isinstance(state, tuple) and len(state) == 5:
      as_int(state[0], 'array state version', 0, 1)
      state = state[1:]
    if not (isinstance(state, tuple) and len(state) == 4):
      raise Refused(f'array state must be (shape, dtype, is_fortran, data), not '
                     f'{describe(state)}')
    shape, dtype, fortran, raw = state
    if type(fortran) is not bool:  # pylint: disable=unidiomatic-typecheck
      raise Refused(f'array is_fortran must be a bool, not {describe(fortran)}')
    if isinstance(raw, list):
      raise Refused('object arrays are refused')
    return array_from_bytes(reader, raw, dtype, shape, fortran)


def _reconstruct(reader, subtype, shape, code):
  if not (isinstance(subtype, Global) and subtype.name == 'ndarray'):
    raise Refused(f'array subtype {describe(subtype)} is refused (only numpy.ndarray)')
  as_shape(shape)
  as_text(code, 'array type code')
  return _ArrayStub()


def _frombuffer(reader, buffer, dtype, shape, order='C'):
  order = as_text(order, 'array order')
  if order not in ('C', 'F'):
    raise Refused(f'array order {order!r} is not C or F')
  return array_from_bytes(reader, buffer, dtype, shape, order == 'F')


def _scalar(reader, dtype, raw=None):
  if raw is None:
    raise Refused('object scalars are refused')
  dtype = _dtype_of(dtype)
  return array_from_bytes(reader, raw, dtype, ())[()]


def _numpy_globals() -> Dict[Tuple[str, str], Global]:
  out = {('numpy', 'ndarray'): Global('numpy', 'ndarray'),
         ('numpy', 'dtype'): Global('numpy', 'dtype', call=_make_dtype)}
  for core in ('numpy.core', 'numpy._core'):
    out[(f'{core}.multiarray', '_reconstruct')] = Global(
        f'{core}.multiarray', '_reconstruct', call=_reconstruct)
    out[(f'{core}.multiarray', 'scalar')] = Global(f'{core}.multiarray', 'scalar', call=_scalar)
    out[(f'{core}.numeric', '_frombuffer')] = Global(
        f'{core}.numeric', '_frombuffer', call=_frombuffer)
  return out


NUMPY = _numpy_globals()

# ------------------------------------------------------------------------------------------------
# Builtins that Python pickles through REDUCE (bytes and sets under protocols 0-3), _codecs.encode
# and collections.OrderedDict (read as a plain dict).
# ------------------------------------------------------------------------------------------------


def _sequence(reader, value, what):
  if not isinstance(value, (list, tuple)):
    raise Refused(f'{what} takes a list or tuple, not {describe(value)}')
  reader.charge(len(value))
  return value


def _bytes_like(kind):
  def call(reader, *args):
    if not args:
      return kind()
    if len(args) == 2 and isinstance(args[0], str):
      encoding = as_text(args[1], 'encoding')
      if encoding.lower().replace('-', '') != 'latin1':
        raise Refused(f'{kind.__name__}() from text with encoding {encoding!r} is refused')
      reader.charge(len(args[0]))
      return kind(as_bytes(args[0], kind.__name__))
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
      reader.charge(len(args[0]))
      return kind(args[0])
    raise Refused(f'{kind.__name__}() with arguments {describe(args)} is refused')
  return call


def _set_like(kind):
  def call(reader, items=()):
    return kind(_check_key(reader, v) for v in _sequence(reader, items, kind.__name__))
  return call


def _encode(reader, text, encoding='utf-8'):
  if not isinstance(text, str):
    raise Refused(f'_codecs.encode takes text, not {describe(text)}')
  if as_text(encoding, 'encoding').lower().replace('-', '') != 'latin1':
    raise Refused(f'_codecs.encode to {describe(encoding)} is refused (only latin-1)')
  reader.charge(len(text))
  return as_bytes(text, '_codecs.encode argument')


class _OrderedDict(dict, Buildable):
  """collections.OrderedDict read as a dict; BUILD state (instance attributes) is dropped."""

  def build(self, reader, state):
    if not isinstance(state, (dict, type(None))):
      raise Refused(f'OrderedDict state must be a dict, not {describe(state)}')
    return self


def _ordered_dict(reader, items=None):
  if items is not None:
    raise Refused('OrderedDict() with arguments is refused')
  return _OrderedDict()


def _builtins() -> Dict[Tuple[str, str], Global]:
  calls = {'bytes': _bytes_like(bytes), 'bytearray': _bytes_like(bytearray),
           'set': _set_like(set), 'frozenset': _set_like(frozenset)}
  out = {}
  for module in ('builtins', '__builtin__'):
    for name, call in calls.items():
      out[(module, name)] = Global(module, name, call=call)
  out[('_codecs', 'encode')] = Global('_codecs', 'encode', call=_encode)
  out[('collections', 'OrderedDict')] = Global('collections', 'OrderedDict', call=_ordered_dict)
  return out


BUILTINS = _builtins()


class _ObjectStub(Object, Buildable):
  """An allow-listed class instance; BUILD stores its state."""

  def build(self, reader, state):
    if self.state is not None:
      raise Refused(f'a second BUILD on {self.cls}')
    if not isinstance(state, dict):
      raise Refused(f'the state of {self.cls} must be a dict, not {describe(state)}')
    return Object(self.cls, self.args, state)


def plain_class(module: str, name: str) -> Global:
  """A class whose instances are kept as `Object(cls, args, state)`, created by NEWOBJ."""
  def new(reader, *args):
    return _ObjectStub(f'{module}.{name}', args)
  return Global(module, name, new=new)


# ------------------------------------------------------------------------------------------------
# The reader.
# ------------------------------------------------------------------------------------------------

_MARK = object()


class _Reader:
  """A pickle virtual machine over in-memory bytes that builds only what is described above."""

  def __init__(self, data: bytes, globals_, persistent_load, str8: str, budget: int):
    self.data = data
    self.pos = 0
    self.globals = globals_
    self.persistent_load = persistent_load
    self.str8 = str8
    self.budget = budget
    self.stack = []
    self.marks = []
    self.memo = {}
    self.memo_keys = collections.defaultdict(list)  # id(value) -> memo keys that hold it

  # --- input --------------------------------------------------------------------------------
  def read(self, n: int) -> bytes:
    if n < 0 or self.pos + n > len(self.data):
      raise Refused(f'truncated: needs {n} bytes, {len(self.data) - self.pos} left')
    out = self.data[self.pos:self.pos + n]
    self.pos += n
    return out

  def readline(self) -> bytes:
    end = self.data.find(b'\n', self.pos)
    if end < 0:
      raise Refused('truncated: a line without its newline')
    out = self.data[self.pos:end]
    self.pos = end + 1
    return out

  def uint(self, n: int) -> int:
    return int.from_bytes(self.read(n), 'little')

  def charge(self, n: int):
    self.budget -= n
    if self.budget < 0:
      raise Refused('the data expands far beyond the size of the file')

  # --- stack --------------------------------------------------------------------------------
  def push(self, value):
    self.stack.append(value)

  def pop(self):
    if not self.stack:
      raise Refused('stack underflow')
    value = self.stack.pop()
    if value is _MARK:
      raise Refused('a MARK used as a value')
    return value

  def top(self):
    if not self.stack or self.stack[-1] is _MARK:
      raise Refused('stack underflow')
    return self.stack[-1]

  def pop_mark(self) -> list:
    if not self.marks:
      raise Refused('no MARK to pop to')
    start = self.marks.pop()
    items = self.stack[start + 1:]
    del self.stack[start:]
    return items

  def put(self, key, value):
    self.memo[key] = value
    self.memo_keys[id(value)].append(key)  # Stale entries are skipped by `replace`.

  def get(self, key):
    try:
      return self.memo[key]
    except KeyError:
      raise Refused(f'memo key {key} is not defined') from None

  def replace(self, old, new):
    """After BUILD: the memo's references to a stub now name what it became."""
    for key in self.memo_keys.pop(id(old), ()):
      if self.memo.get(key) is old:
        self.memo[key] = new
        self.memo_keys[id(new)].append(key)

  # --- containers ---------------------------------------------------------------------------
  def target(self, kinds, what):
    value = self.top()
    if not isinstance(value, kinds) or isinstance(value, Object):
      raise Refused(f'{what} on {describe(value)}')
    return value

  def setitems(self, container, items):
    if len(items) % 2:
      raise Refused('SETITEMS with an odd number of values')
    for i in range(0, len(items), 2):
      container[_check_key(self, items[i])] = items[i + 1]

  def text(self, raw: bytes):
    """A Python 2 str: bytes, or text decoded as the caller asks."""
    if self.str8 == 'bytes':
      return raw
    return raw.decode(self.str8)

  def find_global(self, module, name):
    module, name = as_text(module, 'global module'), as_text(name, 'global name')
    found = self.globals.get((module, name))
    if found is None:
      raise Refused(f'refused global {module}.{name}')
    return found

  def call(self, func, args, how):
    if not isinstance(func, Global):
      raise Refused(f'{how} on {describe(func)}, not an allowed global')
    if not isinstance(args, tuple):
      raise Refused(f'{how} arguments must be a tuple, not {describe(args)}')
    handler = func.call if how == 'REDUCE' else func.new
    if handler is None:
      raise Refused(f'{how} on {func} is refused')
    try:
      return handler(self, *args)
    except TypeError as e:
      raise Refused(f'{func} with arguments {describe(args)}: {e}') from None

  # --- the loop -----------------------------------------------------------------------------
  def run(self):
    while True:
      offset = self.pos
      code = self.read(1)
      op = _OPS.get(code)
      if op is None:
        raise Refused(f'unknown or refused opcode {code!r}')
      self.offset = offset
      if op(self) is _STOP:
        value = self.pop()
        if self.stack or self.marks:
          raise Refused('STOP with values left on the stack')
        if self.pos != len(self.data):
          raise Refused(f'{len(self.data) - self.pos} bytes after the end of the pickle')
        return value


_STOP = object()
_OPS: Dict[bytes, Callable[[_Reader], Any]] = {}


def _op(code: bytes):
  def register(fn):
    _OPS[code] = fn
    return fn
  return register


def _op_value(code: bytes, fn):
  _OPS[code] = lambda r: r.push(fn(r))


# Framing and protocol.
@_op(b'\x80')
def _proto(r):
  if r.uint(1) > 5:
    raise Refused('pickle protocol above 5')


@_op(b'\x95')
def _frame(r):
  r.uint(8)


@_op(b'.')
def _stop(r):
  return _STOP


# Stack manipulation.
@_op(b'(')
def _mark(r):
  r.marks.append(len(r.stack))
  r.stack.append(_MARK)


_op(b'0')(lambda r: r.pop() if r.stack and r.stack[-1] is not _MARK else r.pop_mark())
_op(b'1')(lambda r: r.pop_mark())
_op(b'2')(lambda r: r.push(r.top()))

# Atoms.
_op_value(b'N', lambda r: None)
_op_value(b'\x88', lambda r: True)
_op_value(b'\x89', lambda r: False)
_op_value(b'K', lambda r: r.uint(1))
_op_value(b'M', lambda r: r.uint(2))
_op_value(b'J', lambda r: int.from_bytes(r.read(4), 'little', signed=True))
_op_value(b'\x8a', lambda r: int.from_bytes(r.read(r.uint(1)), 'little', signed=True))
_op_value(b'\x8b', lambda r: int.from_bytes(r.read(r.uint(4)), 'little', signed=True))
_op_value(b'G', lambda r: struct.unpack('>d', r.read(8))[0])
_op_value(b'F', lambda r: float(r.readline()))


@_op(b'I')
def _int(r):
  line = r.readline()
  r.push({b'00': False, b'01': True}[line] if line in (b'00', b'01') else int(line, 0))


@_op(b'L')
def _long(r):
  line = r.readline()
  r.push(int(line[:-1] if line.endswith(b'L') else line, 0))


# Strings.
_op_value(b'B', lambda r: r.read(r.uint(4)))
_op_value(b'C', lambda r: r.read(r.uint(1)))
_op_value(b'\x8e', lambda r: r.read(r.uint(8)))
_op_value(b'\x96', lambda r: bytearray(r.read(r.uint(8))))
_op_value(b'X', lambda r: r.read(r.uint(4)).decode('utf-8', 'surrogatepass'))
_op_value(b'\x8c', lambda r: r.read(r.uint(1)).decode('utf-8', 'surrogatepass'))
_op_value(b'\x8d', lambda r: r.read(r.uint(8)).decode('utf-8', 'surrogatepass'))
_op_value(b'V', lambda r: r.readline().decode('raw-unicode-escape'))
_op_value(b'T', lambda r: r.text(r.read(int.from_bytes(r.read(4), 'little', signed=True))))
_op_value(b'U', lambda r: r.text(r.read(r.uint(1))))


@_op(b'S')
def _string(r):
  line = r.readline()
  if len(line) < 2 or line[:1] != line[-1:] or line[:1] not in (b'"', b"'"):
    raise Refused('STRING opcode argument must be quoted')
  r.push(r.text(codecs.escape_decode(line[1:-1])[0]))


@_op(b'\x98')
def _readonly_buffer(r):
  r.target((bytes, bytearray), 'READONLY_BUFFER')


# Containers.
_op_value(b']', lambda r: [])
_op_value(b')', lambda r: ())
_op_value(b'}', lambda r: {})
_op_value(b'\x8f', lambda r: set())
_op_value(b'l', lambda r: r.pop_mark())
_op_value(b't', lambda r: tuple(r.pop_mark()))
_op_value(b'\x85', lambda r: (r.pop(),))
_op_value(b'\x91', lambda r: frozenset(_check_key(r, v) for v in r.pop_mark()))


@_op(b'\x86')
def _tuple2(r):
  b = r.pop()
  r.push((r.pop(), b))


@_op(b'\x87')
def _tuple3(r):
  c, b = r.pop(), r.pop()
  r.push((r.pop(), b, c))


@_op(b'd')
def _dict(r):
  d = {}
  r.setitems(d, r.pop_mark())
  r.push(d)


@_op(b'a')
def _append(r):
  value = r.pop()
  r.target(list, 'APPEND').append(value)


@_op(b'e')
def _appends(r):
  items = r.pop_mark()
  r.target(list, 'APPENDS').extend(items)


@_op(b's')
def _setitem(r):
  value, key = r.pop(), r.pop()
  r.setitems(r.target(dict, 'SETITEM'), [key, value])


@_op(b'u')
def _setitems(r):
  items = r.pop_mark()
  r.setitems(r.target(dict, 'SETITEMS'), items)


@_op(b'\x90')
def _additems(r):
  items = r.pop_mark()
  target = r.target(set, 'ADDITEMS')
  target.update(_check_key(r, v) for v in items)


# Memo.
_op(b'p')(lambda r: r.put(int(r.readline()), r.top()))
_op(b'q')(lambda r: r.put(r.uint(1), r.top()))
_op(b'r')(lambda r: r.put(r.uint(4), r.top()))
_op(b'\x94')(lambda r: r.put(len(r.memo), r.top()))
_op_value(b'g', lambda r: r.get(int(r.readline())))
_op_value(b'h', lambda r: r.get(r.uint(1)))
_op_value(b'j', lambda r: r.get(r.uint(4)))


# Globals, calls and state.
@_op(b'c')
def _global(r):
  module = r.readline().decode('utf-8')
  r.push(r.find_global(module, r.readline().decode('utf-8')))


@_op(b'\x93')
def _stack_global(r):
  name = r.pop()
  r.push(r.find_global(r.pop(), name))


@_op(b'R')
def _reduce(r):
  args = r.pop()
  r.push(r.call(r.pop(), args, 'REDUCE'))


@_op(b'\x81')
def _newobj(r):
  args = r.pop()
  r.push(r.call(r.pop(), args, 'NEWOBJ'))


@_op(b'b')
def _build(r):
  state = r.pop()
  target = r.top()
  if not isinstance(target, Buildable):
    raise Refused(f'BUILD on {describe(target)}')
  built = target.build(r, state)
  r.stack[-1] = built
  if built is not target:
    r.replace(target, built)


def _persistent(r, pid):
  if r.persistent_load is None:
    raise Refused('persistent ids are refused')
  r.push(r.persistent_load(pid))


_op(b'P')(lambda r: _persistent(r, r.readline().decode('ascii')))
_op(b'Q')(lambda r: _persistent(r, r.pop()))

# Refused on purpose: INST, OBJ and NEWOBJ_EX (arbitrary class instances), EXT1/2/4 (the copyreg
# extension registry), NEXT_BUFFER (out-of-band data).


# ------------------------------------------------------------------------------------------------
# The result check and the entry points.
# ------------------------------------------------------------------------------------------------


def _children(value):
  """The values inside a container or Object; None for an allowed leaf; refuses anything else."""
  if isinstance(value, (Buildable, Global)) and not isinstance(value, _OrderedDict):
    raise Refused(f'{describe(value)} was never completed (no BUILD / REDUCE)')
  if isinstance(value, np.ndarray):
    if value.dtype.kind not in 'biufc':
      raise Refused(f'an array of dtype {value.dtype} in the result')
    return None
  if isinstance(value, (_ATOMS, np.generic)):
    if isinstance(value, np.generic) and value.dtype.kind not in 'biufc':
      raise Refused(f'a numpy scalar of dtype {value.dtype} in the result')
    return None
  if isinstance(value, Object):
    return [value.args, value.state]
  if isinstance(value, dict):
    return [v for kv in value.items() for v in kv]
  if isinstance(value, (list, tuple, set, frozenset)):
    return list(value)
  raise Refused(f'{describe(value)} in the result')


def _check_result(root, max_depth: int):
  """Refuses stubs, markers, cycles and containers nested deeper than max_depth.

  An iterative walk: a container is refused as soon as it lies deeper than max_depth; each
  container's height (1 + its tallest child) is computed once on the way back, so values shared
  through the memo are walked once and cannot hide depth when met again lower down.
  """
  height = {}
  on_path = set()
  todo = [(root, 1, None)]
  while todo:
    value, depth, children = todo.pop()
    if children is not None:  # Leaving: every child has its height.
      on_path.discard(id(value))
      height[id(value)] = 1 + max((height.get(id(c), 0) for c in children), default=0)
      continue
    if id(value) in height:
      if depth - 1 + height[id(value)] > max_depth:
        raise Refused(f'values nested more than {max_depth} deep')
      continue
    if id(value) in on_path:
      raise Refused(f'{describe(value)} contains itself')
    children = _children(value)
    if children is None:
      continue
    if depth > max_depth:
      raise Refused(f'values nested more than {max_depth} deep')
    on_path.add(id(value))
    todo.append((value, depth, children))
    todo.extend((child, depth + 1, None) for child in children)


def load(data: bytes, *, name: str, globals: Mapping[Tuple[str, str], Global] = None,  # pylint: disable=redefined-builtin
         persistent_load: Optional[Callable[[Any], Any]] = None, str8: str = 'latin1',
         budget: Optional[int] = None, max_depth: int = MAX_DEPTH):
  """Reads one pickle from `data`, allowing only `globals` (see the module docstring).

  Args:
    data: the whole pickle; bytes after its STOP are refused.
    name: how errors name the input (usually the file path).
    globals: (module, name) -> Global; start from NUMPY | BUILTINS.
    persistent_load: called with a plain persistent id; None refuses persistent ids.
    str8: what a Python 2 `str` becomes: 'bytes', or the text encoding to decode it with.
    budget: units (bytes, elements) the globals may create; default 4 x len(data) + 1 MiB.
    max_depth: the deepest nesting of containers allowed in the result.

  Raises:
    PickleFileError: naming `name`, for anything that is not such a pickle.
  """
  data = bytes(data)
  reader = _Reader(data, dict(globals or {}), persistent_load, str8,
                   4 * len(data) + 2 ** 20 if budget is None else budget)
  try:
    value = reader.run()
    _check_result(value, max_depth)
    return value
  except PickleFileError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Whatever the bytes provoke (Refused, or e.g. OverflowError, UnicodeError, MemoryError) is
    # one error type naming the file: callers and users never see a traceback from file data.
    offset = getattr(reader, 'offset', 0)
    detail = str(e) if isinstance(e, Refused) else f'{type(e).__name__}: {e}'
    raise PickleFileError(f'{name}: not a readable pickle at byte {offset}: {detail}') from None


def load_file(path, *, max_bytes: int = 2 ** 34, **kwargs):
  """`load` on the contents of a regular file of at most max_bytes, naming it in errors."""
  path = os.fspath(path)
  info = os.stat(path)
  if not stat.S_ISREG(info.st_mode):
    raise PickleFileError(f'{path}: not a regular file')
  if info.st_size > max_bytes:
    raise PickleFileError(f'{path}: {info.st_size} bytes is more than the {max_bytes} allowed')
  with open(path, 'rb') as f:
    data = f.read()
  if len(data) > max_bytes:
    raise PickleFileError(f'{path}: more than the {max_bytes} bytes allowed')
  return load(data, name=path, **kwargs)


def read_limited(stream: io.BufferedIOBase, limit: int, name: str) -> bytes:
  """Reads a stream of at most `limit` bytes (e.g. a zip member that might be a deflate bomb)."""
  data = stream.read(limit + 1)
  if len(data) > limit:
    raise PickleFileError(f'{name}: longer than the {limit} bytes allowed')
  return data
