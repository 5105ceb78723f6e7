"""Where a compiled XLA:CPU program's time goes: one traced call, each HLO op's time by kind.

    breakdown = op_profile.profile(compiled, args, directory)   # {kind: seconds}

Kinds come from the optimised HLO: convolutions split into forward, input gradient (stride 1 /
dilated input, i.e. strided), and kernel gradient (the window spans the image), transposes and
copies, reductions, matrix products, and the rest as elementwise (forward / backward by the op's
`transpose(...)` metadata). Op times are summed over the executor's threads, so their total exceeds
the wall time when ops run side by side.
"""
import collections
import glob
import re

import jax

_OP = re.compile(r'\s*(?:ROOT )?%([\w.\-]+) = \S+ ([\w-]+)\(')


def _computations(hlo: str) -> dict:
  comps, current = {}, None
  for line in hlo.splitlines():
    head = re.match(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$', line)
    if head and not line.startswith(' '):
      current = comps.setdefault(head.group(1), [])
    elif current is not None:
      current.append(line)
  return comps


def _conv_kind(line: str, metadata: str) -> str:
  window = re.search(r'window=\{size=(\d+)x(\d+)', line)
  if window and max(int(window.group(1)), int(window.group(2))) > 3:
    return 'conv kernel gradient'  # The window spans the image (IResNet's kernels are <= 3x3).
  if 'lhs_dilate' in line:
    return 'conv input gradient, dilated input (strided)'
  return 'conv input gradient' if 'transpose(' in metadata else 'conv forward'


def classify(hlo: str) -> dict:
  """Instruction name -> kind, for every instruction of the optimised HLO text."""
  comps = _computations(hlo)
  kinds = {}
  for lines in comps.values():
    for line in lines:
      m = _OP.match(line)
      if not m:
        continue
      name, op = m.groups()
      meta = re.search(r'op_name="([^"]*)"', line)
      meta = meta.group(1) if meta else ''
      body = [line]
      if op == 'fusion':
        callee = re.search(r'calls=%([\w.\-]+)', line)
        body = comps.get(callee.group(1), []) if callee else []
      ops = ' '.join(body)
      if ' convolution(' in ops or op == 'convolution':
        conv_line = next(b for b in body if 'convolution(' in b)
        conv_meta = re.search(r'op_name="([^"]*)"', conv_line)
        kinds[name] = _conv_kind(conv_line, conv_meta.group(1) if conv_meta else meta)
      elif ' dot(' in ops or op == 'dot':
        kinds[name] = 'matrix product'
      elif ' reduce(' in ops or op == 'reduce':
        kinds[name] = 'reduction'
      elif op in ('copy', 'transpose') or ' transpose(' in ops or name.startswith('transpose'):
        kinds[name] = 'transpose / copy'
      else:
        kinds[name] = 'elementwise, ' + ('backward' if 'transpose(' in meta else 'forward')
  return kinds


def profile(compiled, args, directory: str) -> dict:
  """Runs compiled(*args) once under jax.profiler; returns {kind: seconds}, largest first."""
  kinds = classify(compiled.as_text())
  with jax.profiler.trace(directory):
    jax.block_until_ready(compiled(*args))
  totals = collections.Counter()
  for path in glob.glob(f'{directory}/**/*.xplane.pb', recursive=True):
    for plane in jax.profiler.ProfileData.from_file(path).planes:
      for line in plane.lines:
        for event in line.events:
          if event.name in kinds:
            totals[kinds[event.name]] += event.duration_ns * 1e-9
  return {k: round(v, 3) for k, v in totals.most_common()}
