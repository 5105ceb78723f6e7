"""Configs: presets named after the paper, overrides, and checks that name the bad field."""
import importlib.util
import re

import pytest

from conftest import REPO
from synface_jax import config as config_lib


def load(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, REPO / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def test_presets_follow_the_paper():
  c = load('synthetic', 'Syn_10K_50,im=synface')
  assert (c.regime, c.synthetic.num_identities, c.synthetic.images_per_identity) == (
      'synthetic', 10_000, 50)
  assert c.im.enabled and c.im.phi == 'synface' and not c.dm.enabled
  c = load('mixed', 'Mix_2K_10,im=linspace:0.6,1.0,11,dm=synface')
  assert (c.real.num_identities, c.real.images_per_identity) == (2000, 10)
  assert c.synthetic.num_identities == 10_000
  assert c.im.phi == 'linspace:0.6,1.0,11' and c.dm.enabled
  c = load('mixed', 'Mix_2K_20,im=off,dm=off')
  assert not c.im.enabled and not c.dm.enabled and c.real.images_per_identity == 20
  c = load('real', 'Real_10K_50')
  assert (c.regime, c.real.num_identities) == ('real', 10_000)


def test_default_configs_are_the_paper_recipe():
  c = load('mixed')
  assert (c.model.arch, c.loss.scale, c.loss.m2, c.optim.batch_size) == ('r50', 30.0, 0.5, 512)
  assert tuple(c.optim.decay_epochs) == (24, 30, 36) and c.optim.num_epochs == 40
  c.real.path = '/data'
  config_lib.validate(c)


@pytest.mark.parametrize('arg', ['Real_10K', 'Syn_ten_50', 'foo=1', 'Mix_2K_10,im'])
def test_bad_preset_names_the_argument(arg):
  with pytest.raises(ValueError, match='config argument|is not a count'):
    load('mixed', arg)


@pytest.mark.parametrize('field, value, message', [
    ('regime', 'semi', 'regime'),
    ('model.dtype', 'float16', 'model.dtype'),
    ('model.input_size', (112, 100), 'model.input_size'),
    ('optim.decay_epochs', (30, 24), 'optim.decay_epochs'),
    ('im.phi', 'gaussian:1', 'im.phi'),
    ('dm.psi', 'fixed:1.5', 'dm.psi'),
    ('eval.protocols', ('megaface',), 'eval.protocols'),
    ('real.path', '', 'real.path'),
])
def test_validate_names_the_field(field, value, message):
  c = load('mixed')
  c.real.path = '/data'
  block, _, name = field.rpartition('.')
  (c[block] if block else c)[name] = value
  with pytest.raises(ValueError, match=message.replace('.', r'\.')):
    config_lib.validate(c)


def test_domain_mixup_needs_the_mixed_regime():
  c = load('synthetic', 'Syn_10K_50,im=synface')
  c.dm.enabled = True
  with pytest.raises(ValueError, match='dm.enabled'):
    config_lib.validate(c)


def test_load_applies_overrides_as_main_does():
  c = config_lib.load(str(REPO / 'configs' / 'demo.py'),
                      ['synthetic.augment.blur=0.5', 'model.width=0.25', 'eval.pairs=("synthetic:20",)',
                       'generator.procedural.bfm_path=/data/BFM_model_front.mat'])
  assert c.synthetic.augment.blur == 0.5 and c.model.width == 0.25
  assert c.eval.pairs == ('synthetic:20',)
  assert c.generator.procedural.bfm_path == '/data/BFM_model_front.mat'  # A string field: as given.
  preset = config_lib.load(str(REPO / 'configs' / 'synthetic.py') + ':Syn_2K_10,im=off')
  assert (preset.synthetic.num_identities, preset.im.enabled) == (2000, False)
  for overrides, words in ((['model.widht=1'], 'model.widht: no such config field'),
                           (['model.width=abc'], "model.width='abc': not a float"),
                           (['optim.batch_size=1.5'], 'optim.batch_size'),
                           (['regime'], 'expected --config.FIELD=VALUE')):
    with pytest.raises(ValueError, match=re.escape(words)):
      config_lib.load(str(REPO / 'configs' / 'demo.py'), overrides)
  with pytest.raises(ValueError, match='no such config file'):
    config_lib.load('/nonexistent/config.py')


def test_commands_other_than_main_take_config_overrides(tmp_path, capsys):
  from synface_jax import evaluate
  rc = evaluate.main(['generator', '--config', str(REPO / 'configs' / 'demo.py'),
                      '--config.model.widht=1', '--out', str(tmp_path)])
  assert rc != 0 and '--config.model.widht: no such config field' in capsys.readouterr().err
  assert config_lib.split_overrides(['--config.a=1', '--out', 'x']) == (['a=1'], ['--out', 'x'])
