"""One command-line convention (synface_jax/cli.py): `python -m synface_jax.X` in --help, shared
argument parsers, and a user error told in one line with exit status 2."""
import argparse
import importlib
import os
import subprocess
import sys

import pytest

from conftest import REPO
from synface_jax import cli


@pytest.mark.parametrize('module', [
    'synface_jax.benchmark', 'synface_jax.embed', 'synface_jax.generate', 'synface_jax.data',
    'synface_jax.evaluate', 'synface_jax.models.convert', 'synface_jax.models.export',
    'synface_jax.generators.discofacegan.convert', 'synface_jax.generators.discofacegan.mean_w'])
def test_help_names_the_command_as_it_is_run(module, capsys):
  main = importlib.import_module(module if module != 'synface_jax.data' else
                                 'synface_jax.data.__main__').main
  with pytest.raises(SystemExit) as e:
    main(['--help'])
  assert e.value.code == 0
  assert capsys.readouterr().out.split()[:4] == ['usage:', 'python', '-m', module]


def test_size_and_key_values():
  assert cli.size('112x96') == (112, 96) and cli.size('64X64') == (64, 64)
  for bad in ('112', '112x', 'ax9', '0x10'):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
      cli.size(bad)
  assert cli.key_values(['checkpoint=/a/b', 'psi=0.5', 'size=(1, 2)'], '--option') == {
      'checkpoint': '/a/b', 'psi': 0.5, 'size': (1, 2)}
  with pytest.raises(ValueError, match=r"--option 'psi': expected KEY=VALUE"):
    cli.key_values(['psi'], '--option')
  with pytest.raises(ValueError, match=r"--option 'x=1': expected KEY=VALUE with KEY one of \['a'\]"):
    cli.key_values(['x=1'], '--option', allowed=['a'])


def _main(*args):
  env = dict(os.environ, XLA_FLAGS='')
  return subprocess.run([sys.executable, '-m', 'synface_jax.main', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('args, says', [
    (['--config=configs/synthetic.py:Bad_1'], "config argument 'Bad_1'"),
    (['--config=configs/synthetic.py', '--config.optim.batchsize=8'], "no config field 'batchsize'"),
    (['--config=configs/synthetic.py', '--config.im.fn=no_such_package:mix'],
     "config field im.fn='no_such_package:mix': cannot import"),
])
def test_main_tells_a_user_error_in_one_line(args, says, tmp_path):
  proc = _main(*args, f'--workdir={tmp_path}')
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and says in lines[0], proc.stderr
  assert not os.listdir(tmp_path)
