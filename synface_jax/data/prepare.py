"""From a data path to a prepared TFDS dataset (ArrayRecord), built once and reused.

A source folder or file gets a builder config named after it and a fingerprint of its files (names,
sizes, modification times), so a changed source is built again rather than read stale. Prepared
data goes to `data_dir` (default: TFDS's, `$TFDS_DATA_DIR` or ~/tensorflow_datasets). On several
hosts, process 0 builds and the others wait for it; they must see the same `data_dir`.
"""
import hashlib
import os
import re

from absl import logging
import tensorflow_datasets as tfds

from synface_jax.data import builders, detect

FILE_FORMAT = 'array_record'
FINGERPRINT_DEPTH = 2  # Identity folders and their images.


def fingerprint(path: str) -> str:
  """A hash of the names, sizes and modification times of the files a source consists of."""
  h = hashlib.sha1()
  for part in _source_files(path):
    h.update(part.encode())
  return h.hexdigest()


def _source_files(path: str):
  paths = path.rsplit(':', 1) if not os.path.exists(path) and ':' in path else [path]
  for p in paths:
    if os.path.isfile(p):
      yield _stat_line(p, os.path.basename(p))
      if p.endswith('.rec'):  # Its index and property file.
        for other in (p[:-len('.rec')] + '.idx', os.path.join(os.path.dirname(p), 'property')):
          if os.path.isfile(other):
            yield _stat_line(other, os.path.basename(other))
      continue
    base = len(os.path.abspath(p).rstrip(os.sep).split(os.sep))
    for root, dirs, files in os.walk(p, followlinks=True):  # Symlinked identity folders too.
      depth = len(os.path.abspath(root).rstrip(os.sep).split(os.sep)) - base
      dirs.sort()
      if depth >= FINGERPRINT_DEPTH:
        dirs.clear()
      for name in sorted(files):
        yield _stat_line(os.path.join(root, name), os.path.relpath(os.path.join(root, name), p))


def _stat_line(path: str, name: str) -> str:
  """Name, size and time of the file (of a symlink's target); a dangling symlink as such."""
  try:
    st = os.stat(path)
  except OSError:
    return f'{name}\tunreadable\n'
  return f'{name}\t{st.st_size}\t{st.st_mtime_ns}\n'


def config_name(path: str) -> str:
  """'<source name>_<hash of its absolute path and fingerprint>', a valid TFDS config name."""
  p = path.rsplit(':', 1)[0] if not os.path.exists(path) and ':' in path else path
  p = os.path.abspath(p).rstrip(os.sep)
  name = os.path.basename(p)
  if os.path.isfile(p):
    parent = os.path.basename(os.path.dirname(p))
    name = parent if name == 'train.rec' else os.path.splitext(name)[0]
  stem = re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_') or 'data'
  digest = hashlib.sha1(f'{os.path.abspath(path)}\n{fingerprint(path)}'.encode()).hexdigest()
  return f'{stem}_{digest[:12]}'


def builder_for(path: str, kind: str = 'auto', data_dir: str = ''):
  """The TFDS builder for `path` (not necessarily prepared yet), and its kind."""
  path = os.fspath(path)
  kind = detect.resolve(path, kind)
  if kind == 'tfds':
    if os.path.isdir(path):
      return tfds.builder_from_directory(path), kind
    return tfds.builder(path, data_dir=data_dir or None), kind
  config = builders.SourceConfig(name=config_name(path), source=path,
                                 description=f'Built from {os.path.abspath(path)}')
  builder = builders.BUILDERS[kind](config=config, data_dir=data_dir or None,
                                    file_format=FILE_FORMAT)
  return builder, kind


def is_prepared(builder) -> bool:
  return builder.is_prepared()


def manual_dir(path: str) -> str:
  """A folder TFDS accepts as manual directory for `path` (the builder reads `path` itself)."""
  if not os.path.exists(path) and ':' in path:
    path = path.rsplit(':', 1)[0]
  return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def prepare(path: str, kind: str = 'auto', data_dir: str = '', process_index: int = 0,
            process_count: int = 1):
  """The prepared builder for `path`, building it first when needed (process 0 only)."""
  builder, kind = builder_for(path, kind, data_dir)
  if kind == 'tfds' or is_prepared(builder):
    return builder, kind
  if process_index == 0:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir(path)))
  if process_count > 1:
    from jax.experimental import multihost_utils
    if process_index:
      logging.info('process %d: waiting for process 0 to build %s (%s) into %s', process_index,
                   path, builder.builder_config.name, builder.data_dir)
    multihost_utils.sync_global_devices(f'synface_jax.data prepared {builder.builder_config.name}')
    if process_index:
      logging.info('process %d: process 0 has built %s', process_index, path)
    builder, _ = builder_for(path, kind, data_dir)
    if not is_prepared(builder):
      raise ValueError(f'process {process_index}: the dataset process 0 prepared for {path} is not '
                       f'at {builder.data_dir}; give every host the same data_dir (a shared '
                       'file system) or build it beforehand with python -m synface_jax.data build')
  return builder, kind
