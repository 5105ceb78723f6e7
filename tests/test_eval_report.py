"""`evaluate run`: the report's figures against independent computations, its files, the CLI."""
import contextlib
import io
import json

import jax
import numpy as np
import pytest
from PIL import Image

import synface_jax
from synface_jax import evaluate
from synface_jax.data import images as image_io
from synface_jax.eval import evaluator as evaluator_lib
from synface_jax.eval import identification, metrics, protocols, report, sets
from synface_jax.models import iresnet
from conftest import raw_embedder, write_tiny_checkpoint
from toy_generator import ToyGenerator

TINY = 1 / 16
HW = (32, 32)


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp('run')
  return root, write_tiny_checkpoint(root, HW, seed=4, width=TINY)


@pytest.fixture(scope='module')
def raw_embed(workdir):
  """Independent of the embedder: the model on normalised pixels, no L2 normalisation."""
  return raw_embedder(workdir[1], TINY)


def _faces(rng, n):
  """Smooth random faces (8x8 upsampled) so a random network still tells them apart."""
  coarse = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
  return np.repeat(np.repeat(coarse, 4, 1), 4, 2).astype(np.uint8)


@pytest.fixture(scope='module')
def pair_npz(tmp_path_factory):
  """40 pairs in 10 folds of 2 same + 2 different: a same pair is one face and a noisy copy."""
  rng = np.random.default_rng(0)
  base = _faces(rng, 80)
  images, issame = [], []
  for k in range(40):
    same = k % 4 < 2
    second = np.clip(base[2 * k].astype(int) + rng.integers(-40, 41, base[0].shape), 0, 255)
    images += [base[2 * k], second.astype(np.uint8) if same else base[2 * k + 1]]
    issame.append(same)
  path = tmp_path_factory.mktemp('pairs') / 'toy_pairs.npz'
  np.savez(path, images=np.stack(images), issame=np.array(issame))
  return str(path)


@pytest.fixture(scope='module')
def identity_folder(tmp_path_factory):
  """10 identities x 3 noisy copies of one face each, as PNG files in identity folders."""
  rng = np.random.default_rng(1)
  root = tmp_path_factory.mktemp('ids') / 'toy_ids'
  labels, images = [], []
  for i, face in enumerate(_faces(rng, 10)):
    (root / f'id{i:02d}').mkdir(parents=True)
    for j in range(3):
      noisy = np.clip(face.astype(int) + rng.integers(-60, 61, face.shape), 0, 255).astype(np.uint8)
      Image.fromarray(noisy).save(root / f'id{i:02d}' / f'{j}.png')
      labels.append(i)
      images.append(noisy)
  return str(root), np.stack(images), np.array(labels)


@pytest.fixture(scope='module')
def cli_run(workdir, pair_npz, identity_folder, tmp_path_factory):
  out = tmp_path_factory.mktemp('report')

  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    rc = evaluate.main(['run', '--checkpoint', str(workdir[0]), '--sets', pair_npz,
                        '--identification', identity_folder[0], '--out', str(out),
                        '--distractors', '0.3', '--batch', '16'])
  assert rc == 0
  return out, json.loads((out / 'results.json').read_text()), buffer.getvalue()


def test_protocol_figures_equal_the_existing_protocols(cli_run, pair_npz, raw_embed):
  _, results, _ = cli_run
  data = np.load(pair_npz)
  images, issame = data['images'], data['issame']
  got = results['verification']['toy_pairs']['protocols']
  for protocol in ('insightface', 'synface'):
    expected = evaluator_lib.evaluate_pairs(raw_embed, images, issame, protocol, batch_size=8)
    assert got[protocol]['accuracy'] == pytest.approx(expected['accuracy'], abs=1e-12)
    assert got[protocol]['std'] == pytest.approx(expected['std'], abs=1e-12)
  assert got['insightface']['val'] == pytest.approx(
      evaluator_lib.evaluate_pairs(raw_embed, images, issame, 'insightface', 8)['val'], abs=1e-12)
  # AUC of the insightface scores = AUC of minus the protocol's squared L2 distances.
  x = image_io.model_input(images)
  e = raw_embed(x) + raw_embed(np.ascontiguousarray(x[:, :, ::-1]))
  dist = protocols.squared_l2(protocols.l2_normalize(e[0::2]), protocols.l2_normalize(e[1::2]))
  assert got['insightface']['auc'] == pytest.approx(metrics.auc(-dist[issame], -dist[~issame]),
                                                    abs=1e-9)
  assert got['insightface']['eer'] == pytest.approx(metrics.eer(-dist[issame], -dist[~issame]),
                                                    abs=1e-9)
  assert got['insightface']['auc'] > 0.8  # Noisy copies are closer than other faces.
  assert set(got['synface']['tar_at_far']) == {'0.0001', '0.001', '0.01'}
  assert not got['synface']['tar_at_far']['0.01']['far_resolved']  # Only 20 impostor pairs.


def test_identification_figures_from_the_folder(cli_run, identity_folder, raw_embed):
  _, results, _ = cli_run
  _, images, labels = identity_folder
  x = image_io.model_input(images)
  e = raw_embed(x) + raw_embed(np.ascontiguousarray(x[:, :, ::-1]))
  got = results['identification']['toy_ids']
  assert got['images'] == 30 and got['identities'] == 10
  expected = identification.closed_set(e, labels, seed=0)
  assert got['closed_set']['rank1'] == pytest.approx(expected['rank1'])
  assert got['closed_set']['cmc'] == pytest.approx(expected['cmc'], abs=1e-12)
  assert got['closed_set']['gallery'] == 10 and got['closed_set']['probes'] == 20
  assert got['open_set']['distractor_identities'] == 3 and got['open_set']['nonmated_probes'] == 9
  expected_open = identification.open_set(e, labels, 0, 0.3)
  assert got['open_set']['dir_at_fpir'] == expected_open['dir_at_fpir']


def test_report_files_and_progress_lines(cli_run):
  out, results, printed = cli_run
  lines = printed.splitlines()
  assert any(l.startswith('[1/2] toy_pairs: 40 pairs') for l in lines)
  assert any(l.startswith('[2/2] toy_ids: 30 images of 10 identities') for l in lines)
  assert lines[-1] == f'report: {out / "report.md"}'
  md = (out / 'report.md').read_text()
  rows = [l for l in md.splitlines() if l.startswith('| toy_')]
  # Per protocol: accuracy, AUC, EER, 3 TAR@FAR (+ VAL for insightface); 2 closed + 2 open rows.
  assert len(rows) == (6 + 7) + 4
  assert '| toy_pairs | insightface | AUC |' in md and '| toy_ids | closed set' in md
  for png in ('roc_insightface.png', 'roc_synface.png', 'hist_toy_pairs_insightface.png',
              'hist_toy_pairs_synface.png', 'cmc.png'):
    assert png in results['figures']
    assert Image.open(out / png).size == ((640, 360) if png.startswith('hist') else (640, 420))


def test_synthetic_sets_through_the_python_api(workdir, tmp_path):
  gen = ToyGenerator(HW)
  gen.num_identities = 10
  renderer = sets.Renderer(gen, gen.init(jax.random.key(0)), first_identity=10, seed=1, name='toy')
  emb = synface_jax.load_embedder(workdir[0], batch_size=16, normalize=False)
  logged = []
  results = report.run(emb, ['synthetic:40'], str(tmp_path),
                       identification_sources=['synthetic:5x3'], renderer=renderer,
                       protocols=('synface',), far_targets=(0.1,), fpir_targets=(0.5,),
                       log=logged.append)
  assert results['verification']['synthetic']['pairs'] == 40
  assert set(results['verification']['synthetic']['protocols']) == {'synface'}
  assert results['identification']['synthetic_5x3']['identities'] == 5
  assert results['identification']['synthetic_5x3']['open_set']['distractor_identities'] == 1
  assert results['generator'] == {'name': 'toy', 'first_identity': 10}
  assert len(logged) == 2
  # The pairs are those synthetic_pairs renders for the same key.
  images, issame = sets.load_pairs('synthetic:40', renderer)
  assert images.shape == (80, *HW, 3) and issame.sum() == 20


def test_generator_config_sources(workdir, tmp_path):
  config, origin = report.generator_config(workdir[0], '', (32, 32))
  assert origin == 'the base config'
  assert config.generator.name == 'procedural' and tuple(config.generator.image_size) == (32, 32)
  stored = {'generator': {'name': 'procedural', 'image_size': [48, 48], 'num_identities': 7},
            'synthetic': {'num_identities': 7}}
  (tmp_path / 'checkpoints').mkdir()
  (tmp_path / 'config.json').write_text(json.dumps(stored))
  config, origin = report.generator_config(tmp_path / 'checkpoints')
  assert origin == str(tmp_path / 'config.json') and config.synthetic.num_identities == 7
  config, origin = report.generator_config(tmp_path, 'configs/demo.py')
  assert origin == 'configs/demo.py' and config.synthetic.num_identities == 1000


def test_cli_errors_name_the_input(workdir, tmp_path, capsys):
  assert evaluate.main(['run', '--checkpoint', str(workdir[0]), '--out', str(tmp_path)]) == 2
  assert '--sets' in capsys.readouterr().err
  assert evaluate.main(['run', '--checkpoint', str(workdir[0]), '--sets', 'nope.npz',
                        '--out', str(tmp_path)]) == 2
  assert 'nope.npz' in capsys.readouterr().err
  assert evaluate.main(['run', '--checkpoint', str(tmp_path / 'none'), '--sets', 'x.bin',
                        '--out', str(tmp_path)]) == 2
  assert 'none' in capsys.readouterr().err
  assert evaluate.main(['run', '--checkpoint', str(workdir[0]), '--sets', 'x.bin',
                        '--protocols', 'lfw', '--out', str(tmp_path)]) == 2
  assert 'protocols' in capsys.readouterr().err


def test_the_training_evaluator_reports_the_same_figures(workdir, pair_npz, cli_run, raw_embed):
  from synface_jax import config as config_lib
  _, results, _ = cli_run
  _, variables = workdir
  config = config_lib.base_config()
  config.model.input_size = HW
  config.eval.pairs = (pair_npz,)
  config.eval.batch_size = 16
  evaluator = evaluator_lib.PairEvaluator(config, iresnet('r18', width=TINY))
  got = evaluator(variables['params'], variables['batch_stats'])
  data = np.load(pair_npz)
  for protocol in ('insightface', 'synface'):
    expected = evaluator_lib.evaluate_pairs(raw_embed, data['images'], data['issame'], protocol, 8)
    assert got[f'eval/toy_pairs/{protocol}/accuracy'] == pytest.approx(expected['accuracy'], abs=1e-12)
    stored = results['verification']['toy_pairs']['protocols'][protocol]
    assert got[f'eval/toy_pairs/{protocol}/auc'] == pytest.approx(stored['auc'], abs=1e-9)
    assert got[f'eval/toy_pairs/{protocol}/tar@far=0.01'] == pytest.approx(
        stored['tar_at_far']['0.01']['tar'], abs=1e-9)
  assert 'eval/toy_pairs/insightface/val' in got and 'eval/toy_pairs/synface/val' not in got


def test_pairs_listed_same_first_are_warned_about(tmp_path, caplog):
  # 40 pairs, every same pair first: the first folds hold only same pairs. LFW's order (each fold
  # half same, half different) and a shuffled order give no warning.
  ordered = np.array([True] * 20 + [False] * 20)
  lfw_like = np.tile(np.array([True] * 2 + [False] * 2), 10)
  shuffled = np.random.default_rng(0).permutation(np.repeat([True, False], 200))
  assert 'fold 1 of 10' in sets.unmixed_folds(ordered, 'p.npz')
  assert 'only same pairs' in sets.unmixed_folds(ordered, 'p.npz')
  assert sets.unmixed_folds(lfw_like, 'p.npz') is None
  assert sets.unmixed_folds(shuffled, 'p.npz') is None
  assert sets.unmixed_folds(np.ones(40, bool), 'p.npz') is None  # Nothing to mix.
  path = tmp_path / 'ordered.npz'
  np.savez(path, images=np.zeros((80, 8, 8, 3), np.uint8), issame=ordered)
  with caplog.at_level('WARNING'):
    images, issame = sets.load_pairs(str(path))
  assert images.shape[0] == 80 and issame.sum() == 20
  logged = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert len(logged) == 1 and str(path) in logged[0] and 'shuffle the pairs' in logged[0]
