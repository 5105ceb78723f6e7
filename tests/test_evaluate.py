"""`python -m synface_jax.evaluate`: the pairs and bin commands."""
import json

import numpy as np
import pytest
from conftest import VERIFICATION, reference_file

from synface_jax import evaluate as ev


# ------------------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('protocol', ['insightface', 'synface'])
def test_cli_pairs(protocol, verification_golden, tmp_path, capsys):
  path = tmp_path / 'emb.npz'
  np.savez(path, **{k: verification_golden[k] for k in ('embeddings1', 'embeddings2', 'issame')})
  assert ev.main(['pairs', '--embeddings', str(path), '--protocol', protocol]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 1
  out = json.loads(lines[0])
  keys = {'accuracy', 'std', 'thresholds'}
  if protocol == 'insightface':
    keys |= {'val', 'val_std', 'far'}
    assert out['val'] == verification_golden['insightface_val']
    assert out['far'] == verification_golden['insightface_far']
  assert set(out) == keys
  assert out['accuracy'] == verification_golden[f'{protocol}_acc_mean']
  assert out['std'] == verification_golden[f'{protocol}_acc_std']
  assert out['thresholds'] == verification_golden[f'{protocol}_best_thresholds'].tolist()


def test_cli_errors(tmp_path, capsys):
  path = tmp_path / 'emb.npz'
  np.savez(path, embeddings1=np.zeros((12, 3)), issame=np.zeros(12, bool))
  assert ev.main(['pairs', '--embeddings', str(path), '--protocol', 'synface']) != 0
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(path) in err and 'embeddings2' in err
  missing = tmp_path / 'nope.npz'
  assert ev.main(['pairs', '--embeddings', str(missing), '--protocol', 'synface']) != 0
  assert str(missing) in capsys.readouterr().err
  bad_bin = tmp_path / 'bad.bin'
  bad_bin.write_bytes(b'not a pickle')
  assert ev.main(['bin', '--bin', str(bad_bin), '--out', str(tmp_path / 'x.npz')]) != 0
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(bad_bin) in err


def test_cli_bin(tmp_path, capsys, tiny_pairs_decoded):
  out = tmp_path / 'tiny.npz'
  source = reference_file(VERIFICATION, 'tiny_pairs_py2str.bin')
  assert ev.main(['bin', '--bin', str(source), '--out', str(out)]) == 0
  assert len(capsys.readouterr().out.strip().splitlines()) == 1
  with np.load(out) as data:
    np.testing.assert_array_equal(data['images'], tiny_pairs_decoded[0])
    np.testing.assert_array_equal(data['issame'], tiny_pairs_decoded[1])
