"""Imports point down: the data layer never imports evaluation, and only the train loop and the
evaluation command line import the in-training evaluator."""
import ast
import pathlib

from conftest import REPO

PACKAGE = pathlib.Path(REPO) / 'synface_jax'


def _imports(path: pathlib.Path) -> set:
  """Every module `path` imports, at the top or inside functions ('a.b' for from a import b)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f'{node.module}.{a.name}' for a in node.names)
  return names


def _importers(prefix: str) -> set:
  return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob('*.py')
          if any(n == prefix or n.startswith(prefix + '.') for n in _imports(p))}


def test_the_data_layer_imports_no_evaluation():
  data = {p for p in _importers('synface_jax.eval') | _importers('synface_jax.evaluate')
          if p.startswith('data/')}
  assert data == set()


def test_only_the_train_loop_imports_the_evaluator():
  assert _importers('synface_jax.eval.evaluator') == {'train.py'}


def test_the_scan_sees_imports_inside_functions(tmp_path):
  path = tmp_path / 'm.py'
  path.write_text('def f():\n  from synface_jax.eval import evaluator\n  import synface_jax.data\n')
  assert {'synface_jax.eval.evaluator', 'synface_jax.data'} <= _imports(path)
