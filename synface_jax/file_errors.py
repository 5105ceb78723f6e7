"""What a bad input file can raise, and turning it into one line that names the file.

Readers of files from elsewhere (pickles, archives, images, .mat files, checkpoints) fail in many
ways on damaged or crafted input: `reading(path)` turns any of `FILE_ERRORS` raised inside it into
a `FileError` (a ValueError) whose message names the file; commands end with that line and exit
status 2 through `cli.fail`.
"""
import contextlib
import os
import pickle
import struct
import zipfile
import zlib

# Exceptions a reader raises on a damaged, cut or crafted file (not programming errors elsewhere).
FILE_ERRORS = (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
               zipfile.BadZipFile, zlib.error, struct.error, pickle.UnpicklingError,
               OverflowError, MemoryError, RecursionError, UnicodeError, NotImplementedError)


class FileError(ValueError):
  """A file that cannot be used; the message names it."""


def describe(path, error: BaseException) -> str:
  """`error` as one line naming `path` (unless its message already does)."""
  path = os.fspath(path)
  text = ' '.join(str(error).split()) or type(error).__name__
  if isinstance(error, FileError) or (path and path in text):
    return text
  if isinstance(error, (OSError, ValueError)) and not isinstance(error, zipfile.BadZipFile):
    return f'{path}: {text}'
  return f'{path}: cannot read ({type(error).__name__}: {text})'


@contextlib.contextmanager
def reading(path):
  """Any of FILE_ERRORS raised inside becomes a FileError naming `path`."""
  try:
    yield
  except FileError:
    raise
  except FILE_ERRORS as e:
    raise FileError(describe(path, e)) from e
