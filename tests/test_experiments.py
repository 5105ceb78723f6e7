"""The ablation grids: listing, commands, resumability and aggregation on a fake cell runner."""
import json
import os

import numpy as np
import pytest

from synface_jax import experiments


class FakeRunner:
  """Writes what a finished cell leaves: results.json from training, eval/results.json with one
  accuracy per (cell, seed) from a table."""

  def __init__(self, accuracy):
    self.accuracy = accuracy
    self.trained, self.evaluated = [], []

  def train(self, cell, workdir, command):
    assert command[1:3] == ['-m', 'synface_jax.main']
    self.trained.append((cell.name, os.path.basename(workdir)))
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump({'train/loss': 1.0}, f)

  def evaluate(self, cell, workdir, pair_sources, labelled_sources):
    seed = int(os.path.basename(workdir)[len('seed'):])
    self.evaluated.append((cell.name, seed))
    acc = self.accuracy[cell.name][seed]
    os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
    results = {'verification': {'synthetic_1200': {'protocols': {'synface': {
        'accuracy': acc, 'auc': acc, 'tar_at_far': {'0.01': {'tar': acc / 2,
                                                              'far_resolved': True}}}},
        'attributes': {'synface': {'|yaw|': [
            {'lo': 5.0, 'hi': 10.0, 'accuracy': acc + 0.05},
            {'lo': 10.0, 'hi': 45.5, 'accuracy': acc - 0.05}]}}}},
               'identification': {'synthetic_50x4': {'closed_set': {'rank1': acc - 0.1}}}}
    with open(os.path.join(workdir, 'eval', 'results.json'), 'w') as f:
      json.dump(results, f)


ACCURACY = {'Syn1': [0.80, 0.82, 0.84], 'Syn2': [0.70, 0.70, 0.73], 'Syn3': [0.90, 0.91, 0.95]}
TEST_SETS = (['synthetic_1200.npz'], ['synthetic_50x4.npz'])


def _run(out, runner, seeds=3, **kwargs):
  return experiments.run_grid(experiments.GRIDS['im'], 'tiny', str(out), seeds=seeds,
                              runner=runner, log=lambda _: None, test_sets=TEST_SETS, **kwargs)


def test_listing_names_every_grid_and_cell(capsys):
  assert experiments.main(['list']) == 0
  text = capsys.readouterr().out
  for grid in ('im', 'identities', 'depth', 'mixed', 'domain_gap'):
    assert f'{grid}:' in text
  assert 'tiny: Syn1, Syn2, Syn3' in text
  assert 'tiny: Syn_50_80, Syn_100_40, Syn_200_20, Syn_400_10' in text  # N x S = 4000 each.
  assert 'Mix_50_10_dm_off' in text and 'train_real (needs --real)' in text
  assert experiments.main(['list', '--scale', 'tiny']) == 0
  text = capsys.readouterr().out
  assert '  Syn2: configs/synthetic.py:Syn_200_20,im=fixed:0.8' in text
  assert 'paper' not in text
  tiny = experiments.SCALES['tiny']
  assert len({n * s for n, s in tiny.identities}) == 1


def test_cell_commands_are_mains():
  cell = experiments.GRIDS['im'].cells(experiments.SCALES['tiny'])[2]
  assert cell.config == 'configs/synthetic.py:Syn_200_20,im=linspace:0.6,1.0,11'
  overrides = experiments.cell_overrides(cell, experiments.SCALES['tiny'], seed=2)
  cmd = experiments.train_command(cell, '/w', overrides)
  assert cmd[1:5] == ['-m', 'synface_jax.main', f'--config={cell.config}', '--workdir=/w']
  assert '--config.seed=2' in cmd and '--config.model.input_size=(32, 32)' in cmd
  assert '--config.optim.decay_epochs=(4.2, 5.4)' in cmd  # 70% and 90% of 6 epochs.
  # The config and its overrides are accepted by the config loader main uses.
  from synface_jax import config as config_lib
  config = config_lib.load(cell.config, [a[len('--config.'):] for a in cmd[5:]])
  config_lib.validate(config)
  assert config.im.enabled and config.im.phi == 'linspace:0.6,1.0,11'
  assert config.synthetic.num_identities == 200 and config.seed == 2


def test_aggregation_is_mean_and_sample_std(tmp_path):
  runner = FakeRunner(ACCURACY)
  summary = _run(tmp_path, runner, command='python -m synface_jax.experiments run im')
  by_name = {c['name']: c for c in summary['cells']}
  for name, values in ACCURACY.items():
    got = by_name[name]['metrics']['synthetic_1200/synface/accuracy']
    mean = sum(values) / 3
    std = (sum((v - mean) ** 2 for v in values) / 2) ** 0.5
    assert got['mean'] == pytest.approx(mean) and got['std'] == pytest.approx(std)
    assert got['values'] == values
  assert by_name['Syn1']['metrics']['synthetic_50x4/rank1']['mean'] == pytest.approx(0.72)
  text = (tmp_path / 'results.md').read_text()
  assert '| Syn2 | `configs/synthetic.py:Syn_200_20,im=fixed:0.8` | 71.00 ± 1.73 |' in text
  assert 'python -m synface_jax.experiments run im' in text and 'Commit: ' in text
  assert (tmp_path / 'synthetic_1200_synface_accuracy.png').is_file()
  # Per-bin accuracies of the rendered attributes, mean ± std over seeds (Syn3: 0.95, 0.96, 1.0).
  assert 'synthetic_1200, synface protocol, |yaw|:' in text
  assert '| cell | 5-10 | 10-45.5 |' in text  # In the order of the bins, not of the text.
  assert '| Syn3 | 97.0 ± 2.6 | 87.0 ± 2.6 |' in text
  assert json.loads((tmp_path / 'results.json').read_text())['seeds'] == 3


def test_finished_cells_are_skipped_and_partial_ones_resume(tmp_path):
  runner = FakeRunner(ACCURACY)
  _run(tmp_path, runner, seeds=1)
  assert runner.trained == [('Syn1', 'seed0'), ('Syn2', 'seed0'), ('Syn3', 'seed0')]  # Seed-major.
  # Syn2 seed 1 was trained but not evaluated; Syn3 seed 1 left a checkpoint folder.
  workdir = tmp_path / 'cells' / 'Syn2' / 'seed1'
  workdir.mkdir(parents=True)
  (workdir / 'results.json').write_text('{}')
  (tmp_path / 'cells' / 'Syn3' / 'seed1' / 'checkpoints').mkdir(parents=True)
  again = FakeRunner(ACCURACY)
  lines = []
  experiments.run_grid(experiments.GRIDS['im'], 'tiny', str(tmp_path), seeds=2, runner=again,
                       log=lines.append, test_sets=TEST_SETS)
  assert again.trained == [('Syn1', 'seed1'), ('Syn3', 'seed1')]
  assert again.evaluated == [('Syn1', 1), ('Syn2', 1), ('Syn3', 1)]
  assert sum('done, skipped' in line for line in lines) == 3
  assert any('Syn3 seed 1: training (resuming)' in line for line in lines)
  assert any('Syn2 seed 1: trained, evaluating' in line for line in lines)


def test_a_workdir_of_another_configuration_is_refused(tmp_path):
  _run(tmp_path, FakeRunner(ACCURACY), seeds=1)
  record = tmp_path / 'cells' / 'Syn1' / 'seed0' / 'cell.json'
  data = json.loads(record.read_text())
  os.remove(tmp_path / 'cells' / 'Syn1' / 'seed0' / 'eval' / 'results.json')
  data['args'][0] = '--workdir=elsewhere'
  record.write_text(json.dumps(data))
  with pytest.raises(ValueError, match='made by another configuration'):
    _run(tmp_path, FakeRunner(ACCURACY), seeds=1)


def test_real_data_grids_say_why_they_are_skipped(tmp_path, capsys):
  assert experiments.main(['run', 'mixed', '--scale', 'tiny', '--out', str(tmp_path)]) == 0
  assert 'give --real PATH' in capsys.readouterr().out
  lines = []
  runner = FakeRunner({'train_synthetic': [0.9]})
  experiments.run_grid(experiments.GRIDS['domain_gap'], 'tiny', str(tmp_path), seeds=1,
                       runner=runner, log=lines.append, test_sets=TEST_SETS)
  assert runner.trained == [('train_synthetic', 'seed0')]
  assert any('train_real: skipped' in line and '--real' in line for line in lines)
  assert any('--test-pairs' in line for line in lines)
  assert experiments.main(['run', 'nope', '--out', str(tmp_path)]) == 1
  assert "grid 'nope': not a grid" in capsys.readouterr().err


def test_mean_std_by_hand():
  assert experiments.mean_std([1.0]) == (1.0, 0.0)
  mean, std = experiments.mean_std([1.0, 2.0, 4.0])
  assert mean == pytest.approx(7 / 3)
  assert std == pytest.approx(np.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
