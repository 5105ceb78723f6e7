"""The convention every command follows, and the argument parsers they share.

- `--help` names the command as it is run: `python -m synface_jax.X` (`parser`).
- A user error (a bad flag value, file, field or path) is one line on stderr, `error: ...`, naming
  the file, field or value, and exit status 2; never a traceback (`fail`, `run`).
"""
import argparse
import ast
import sys
from typing import Callable, NoReturn, Sequence

USER_ERROR = 2


def parser(module: str, doc: str | None, **kwargs) -> argparse.ArgumentParser:
  """An ArgumentParser for `python -m <module>`, described by the module's docstring."""
  kwargs.setdefault('formatter_class', argparse.RawDescriptionHelpFormatter)
  return argparse.ArgumentParser(prog=f'python -m {module}', description=doc, **kwargs)


def fail(message: str, status: int = USER_ERROR) -> NoReturn:
  """One line on stderr and the exit status."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(status)


def run(main: Callable, argv: Sequence[str] | None = None, errors=(ValueError, OSError)):
  """main(argv), with the user errors it raises turned into `fail`."""
  try:
    return main(argv)
  except errors as e:
    fail(str(e) or type(e).__name__)


def size(text: str) -> tuple:
  """'HxW' (e.g. 112x96) -> (H, W), for argparse `type=`."""
  try:
    h, w = (int(v) for v in text.lower().split('x'))
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not a size HxW, e.g. 112x96') from None
  if h <= 0 or w <= 0:
    raise argparse.ArgumentTypeError(f'{text!r}: height and width must be positive')
  return h, w


def literal(text: str):
  """A Python literal (number, tuple, bool, None) or, failing that, the text itself (a path)."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def key_values(options: Sequence[str], flag: str, allowed=None) -> dict:
  """['KEY=VALUE', ...] -> {KEY: literal(VALUE)}; ValueError naming the flag and the option when
  one is not KEY=VALUE, or (with `allowed`) KEY is not one of them."""
  out = {}
  for option in options:
    key, sep, value = option.partition('=')
    if not sep or not key or (allowed is not None and key not in allowed):
      known = f' with KEY one of {sorted(allowed)}' if allowed is not None else ''
      raise ValueError(f'{flag} {option!r}: expected KEY=VALUE{known}')
    out[key] = literal(value)
  return out
