"""insightface's MXNet RecordIO training sets (train.rec, train.idx, property), read without mxnet.

`.rec` is a sequence of records: uint32 magic 0xCED7230A, uint32 `cflag << 29 | length`, the
payload, zero padding to a multiple of 4. A payload holding the magic word at an aligned offset is
split into parts (cflag 1 = first, 2 = middle, 3 = last) and the magic word between two parts is
left out; reading puts it back. A payload starts with the little-endian header struct 'IfQQ'
(flag, label, id, id2); when flag > 0 it is followed by `flag` float32 labels. The rest is the
content (a JPEG for image records).

`.idx` lines are `key<TAB>byte offset`. Record 0, when its flag is > 0, holds the key range of the
images: keys 1 .. label[0] - 1. `property` is one line "num_classes,height,width".
"""
import dataclasses
import os
import struct

import numpy as np

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack('<I', MAGIC)
_RECORD_HEAD = struct.Struct('<II')
_PAYLOAD_HEAD = struct.Struct('<IfQQ')


class RecordError(ValueError):
  """A record that cannot be read: bad magic, bad part order or the file ends inside it."""


@dataclasses.dataclass(frozen=True)
class Header:
  """The header of a record payload: a scalar `label` when flag == 0, else a float32 vector."""
  flag: int
  label: float | np.ndarray
  id: int
  id2: int


@dataclasses.dataclass(frozen=True)
class Property:
  """The `property` file: class count and image size of the set."""
  num_classes: int
  height: int
  width: int


def unpack(payload: bytes) -> tuple[Header, bytes]:
  """Splits a payload into its header and content."""
  if len(payload) < _PAYLOAD_HEAD.size:
    raise RecordError(f'payload of {len(payload)} bytes is shorter than its '
                      f'{_PAYLOAD_HEAD.size}-byte header')
  flag, label, id_, id2 = _PAYLOAD_HEAD.unpack_from(payload, 0)
  offset = _PAYLOAD_HEAD.size
  if flag > 0:
    end = offset + 4 * flag
    if end > len(payload):
      raise RecordError(f'header announces {flag} labels but the payload ends first')
    label = np.frombuffer(payload, '<f4', flag, offset).copy()
    offset = end
  return Header(flag, label, id_, id2), payload[offset:]


def pack(header: Header, content: bytes) -> bytes:
  """The payload for a header and content (the inverse of `unpack`)."""
  if header.flag > 0:
    labels = np.asarray(header.label, '<f4')
    return (_PAYLOAD_HEAD.pack(labels.size, 0.0, header.id, header.id2) + labels.tobytes() +
            content)
  return _PAYLOAD_HEAD.pack(0, float(header.label), header.id, header.id2) + content


def write_record(f, payload: bytes) -> int:
  """Appends one record holding `payload` (split around aligned magic words); returns its offset."""
  offset = f.tell()
  cuts = [i for i in range(0, len(payload) - 3, 4) if payload[i:i + 4] == _MAGIC_BYTES]
  parts, start = [], 0
  for cut in cuts:
    parts.append(payload[start:cut])
    start = cut + 4
  parts.append(payload[start:])
  for n, part in enumerate(parts):
    cflag = 0 if len(parts) == 1 else 1 if n == 0 else 3 if n == len(parts) - 1 else 2
    f.write(_RECORD_HEAD.pack(MAGIC, cflag << 29 | len(part)))
    f.write(part + b'\0' * (-len(part) % 4))
  return offset


def read_property(path: str) -> Property:
  """Parses a `property` file."""
  with open(path, encoding='utf-8') as f:
    text = f.read().strip()
  try:
    num_classes, height, width = (int(v) for v in text.split(','))
  except ValueError:
    raise ValueError(f'{path}: expected "num_classes,height,width", got {text!r}') from None
  if num_classes < 1 or height < 1 or width < 1:
    raise ValueError(f'{path}: values must be positive, got {text!r}')
  return Property(num_classes, height, width)


def read_index(path: str) -> dict[int, int]:
  """Parses a `.idx` file into {key: byte offset}, in file order."""
  index = {}
  with open(path, encoding='utf-8') as f:
    for line_no, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        key, offset = line.split('\t')
        index[int(key)] = int(offset)
      except ValueError:
        raise ValueError(f'{path}:{line_no}: expected "key<TAB>offset", got {line.strip()!r}'
                         ) from None
  return index


class RecordFile:
  """Random and sequential access to the records of one `.rec` file."""

  def __init__(self, path: str):
    self.path = os.fspath(path)
    self.size = os.path.getsize(self.path)
    self._f = open(self.path, 'rb')

  def close(self):
    self._f.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def read_payload(self, offset: int) -> tuple[bytes, int]:
    """The payload of the record at `offset`, and the offset of the next record."""
    parts = []
    while True:
      if offset + _RECORD_HEAD.size > self.size:
        raise RecordError(f'the file ends inside the record at byte {offset} '
                          f'(file size {self.size}): truncated')
      self._f.seek(offset)
      magic, lrec = _RECORD_HEAD.unpack(self._f.read(_RECORD_HEAD.size))
      if magic != MAGIC:
        raise RecordError(f'no record magic at byte {offset} (found {magic:#010x})')
      cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
      start = offset + _RECORD_HEAD.size
      if start + length > self.size:
        raise RecordError(f'the record at byte {offset} needs {length} bytes but the file ends '
                          f'after {self.size - start}: truncated')
      data = self._f.read(length)
      offset = start + length + (-length % 4)
      if (cflag in (0, 1)) != (not parts):
        raise RecordError(f'record part with cflag {cflag} out of order at byte {offset}')
      parts.append(data)
      if cflag in (0, 3):
        return _MAGIC_BYTES.join(parts), offset

  def read(self, offset: int) -> tuple[Header, bytes]:
    """Header and content of the record at `offset`."""
    return unpack(self.read_payload(offset)[0])

  def scan(self):
    """Yields (offset, payload) of every record from the start; stops at a truncated end."""
    offset = 0
    while offset < self.size:
      payload, next_offset = self.read_payload(offset)
      yield offset, payload
      offset = next_offset


def image_label(header: Header) -> float:
  """The class of an image record, as insightface reads it (the first label of a vector)."""
  if header.flag > 0:
    return float(np.asarray(header.label).reshape(-1)[0])
  return float(header.label)
