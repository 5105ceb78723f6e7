"""insightface RecordIO training sets (`train.rec` + `train.idx` + `property`) as examples.

Images are the keys 1 .. label[0] - 1 named by record 0, in key order, as insightface's
MXFaceDataset reads them. When record 0 is missing or unreadable (a truncated `.rec` loses it
first: it is written last), every indexed record with flag 0 is taken as an image, and without a
`.idx` the `.rec` is read from the start. Records past a truncation, labels that are not integers
in [0, num_classes), images that do not decode and images whose size differs from `property` are
skipped and reported.
"""
import dataclasses
import os
from typing import Iterator

from synface_jax.data import images, recordio


@dataclasses.dataclass
class RecSet:
  """The files of a RecordIO set and what iterating over it found."""
  rec: str
  idx: str | None
  prop: recordio.Property
  report: images.Report

  @property
  def num_classes(self) -> int:
    return self.prop.num_classes

  @property
  def size(self) -> tuple[int, int]:
    return self.prop.height, self.prop.width

  def expected_images(self) -> int | None:
    """The image records the index lists (None without a .idx: not known before a scan)."""
    if not self.idx:
      return None
    index = recordio.read_index(self.idx)
    with recordio.RecordFile(self.rec) as f:
      return len(_image_keys(RecSet(self.rec, self.idx, self.prop, images.Report(self.rec)), f,
                             index))


def locate(path: str) -> tuple[str, str | None, str]:
  """(.rec, .idx or None, property) for a `.rec` file or the folder holding `train.rec`."""
  path = os.fspath(path)
  rec = os.path.join(path, 'train.rec') if os.path.isdir(path) else path
  if not os.path.isfile(rec):
    raise ValueError(f'{path}: no RecordIO file {rec}')
  idx = os.path.splitext(rec)[0] + '.idx'
  prop = os.path.join(os.path.dirname(rec), 'property')
  if not os.path.isfile(prop):
    raise ValueError(f'{rec}: the class count and image size come from {prop}, which is missing')
  return rec, idx if os.path.isfile(idx) else None, prop


def open_set(path: str) -> RecSet:
  rec, idx, prop = locate(path)
  return RecSet(rec, idx, recordio.read_property(prop), images.Report(rec))


def _image_keys(rs: RecSet, f: recordio.RecordFile, index: dict) -> list:
  """The image keys in dataset order."""
  if 0 in index:
    try:
      header, _ = f.read(index[0])
      if header.flag > 0:
        return list(range(1, int(header.label[0])))
    except recordio.RecordError as e:
      rs.report.skip(f'{os.path.basename(rs.rec)}#0',
                     f'truncated header record: {e}; using every indexed image')
  return sorted(k for k in index if k != 0)


def examples(rs: RecSet, limit: int = 0) -> Iterator[tuple[str, dict]]:
  """Yields (key, {'image': encoded RGB bytes, 'label': int}) in key order."""
  with recordio.RecordFile(rs.rec) as f:
    if rs.idx:
      index = recordio.read_index(rs.idx)
      records = ((k, _read_indexed(f, index, k)) for k in _image_keys(rs, f, index))
    else:
      records = _scan(rs, f)
    count = 0
    for key, record in records:
      name = f'{os.path.basename(rs.rec)}#{key}'
      if isinstance(record, str):
        rs.report.skip(name, record)
        continue
      header, content = record
      if header.flag > 0 and not content:
        continue  # An identity record (no image) found by the fallback scan.
      example = _example(rs, name, header, content)
      if example is not None:
        yield name, example
        count += 1
        if limit and count >= limit:
          return


def _read_indexed(f, index: dict, key: int):
  """(header, content) or the reason it cannot be read."""
  if key not in index:
    return 'missing record: key not in the .idx'
  try:
    return f.read(index[key])
  except recordio.RecordError as e:
    return f'truncated record: {e}'


def _scan(rs: RecSet, f):
  """(key, record) for every record from the start of the file."""
  offset = 0
  while offset < f.size:
    try:
      payload, offset = f.read_payload(offset)
      header, content = recordio.unpack(payload)
    except recordio.RecordError as e:
      yield f'@{offset}', f'truncated record: {e}'
      return
    if header.id != 0:
      yield header.id, (header, content)


def _example(rs: RecSet, name: str, header, content: bytes) -> dict | None:
  label = recordio.image_label(header)
  if label != int(label) or not 0 <= label < rs.num_classes:
    rs.report.skip(name, f'label out of range: {label:g} is not a class in [0, {rs.num_classes})')
    return None
  try:
    data, note, _ = images.check_image(content, rs.size)
  except images.BadImage as e:
    rs.report.skip(name, str(e))
    return None
  if note:
    rs.report.convert(name, note)
  return {'image': data, 'label': int(label)}
