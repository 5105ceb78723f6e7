"""The shell tools chain: `evaluate bin` -> `embed` -> `evaluate pairs`, and embed's other inputs."""
import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from synface_jax import embed, evaluate
from synface_jax.data import images as image_io
from synface_jax.eval.evaluator import evaluate_pairs
from conftest import exits_with_one_line, raw_embedder, write_tiny_checkpoint

TINY = 1 / 16
HW = (32, 32)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  root = tmp_path_factory.mktemp('run')
  return root, write_tiny_checkpoint(root, HW, seed=5, width=TINY)


@pytest.fixture(scope='module')
def raw_embed(checkpoint):
  return raw_embedder(checkpoint[1], TINY)


def _png(pixels):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, 'PNG')
  return buffer.getvalue()


@pytest.fixture(scope='module')
def pack(tmp_path_factory):
  """An insightface-style .bin of 20 pairs of 32x32 faces (PNG bytes, lossless)."""
  rng = np.random.default_rng(0)
  coarse = rng.integers(0, 256, (40, 8, 8, 3)).astype(np.uint8)
  faces = np.repeat(np.repeat(coarse, 4, 1), 4, 2)
  issame = np.arange(20) % 2 == 0
  for k in np.nonzero(issame)[0]:
    faces[2 * k + 1] = np.clip(faces[2 * k].astype(int) + rng.integers(-30, 31, faces[0].shape),
                               0, 255)
  path = tmp_path_factory.mktemp('pack') / 'toy.bin'
  path.write_bytes(pickle.dumps(([_png(f) for f in faces], issame.tolist())))
  return path, faces, issame


def _json_line(capsys):
  return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bin_embed_pairs_chain(checkpoint, pack, raw_embed, tmp_path, capsys):
  bin_path, faces, issame = pack
  npz = tmp_path / 'toy.npz'
  assert evaluate.main(['bin', '--bin', str(bin_path), '--out', str(npz)]) == 0
  capsys.readouterr()
  # Step 2: the pack's images -> flip-summed embeddings, with issame carried over.
  out = tmp_path / 'emb.npz'
  embed.main(['--checkpoint', str(checkpoint[0]), '--images', str(npz), '--out', str(out),
              '--flip', '--batch', '16'])
  assert 'with issame' in capsys.readouterr().out
  with np.load(out) as stored:
    assert sorted(stored.files) == ['embeddings', 'issame']
    np.testing.assert_array_equal(stored['issame'], issame)
  # Step 3: the protocol on them equals the protocol on the pack embedded independently.
  assert evaluate.main(['pairs', '--embeddings', str(out), '--protocol', 'insightface']) == 0
  got = _json_line(capsys)
  expected = evaluate_pairs(raw_embed, faces, issame, 'insightface', batch_size=8)
  assert got['accuracy'] == pytest.approx(expected['accuracy'], abs=1e-12)
  assert got['val'] == pytest.approx(expected['val'], abs=1e-12)
  # The .npy variant: interleaved embeddings, issame from the pack.
  npy = tmp_path / 'emb.npy'
  embed.main(['--checkpoint', str(checkpoint[0]), '--images', str(npz), '--out', str(npy),
              '--batch', '16'])
  assert 'not kept in a .npy' in capsys.readouterr().out
  assert evaluate.main(['pairs', '--embeddings', str(npy), '--issame', str(npz),
                        '--protocol', 'synface']) == 0
  got = _json_line(capsys)
  expected = evaluate_pairs(raw_embed, faces, issame, 'synface', batch_size=8)
  assert got['accuracy'] == pytest.approx(expected['accuracy'], abs=1e-12)
  assert got['thresholds'] == pytest.approx(expected['thresholds'].tolist(), abs=1e-12)


def test_pairs_names_what_is_missing(tmp_path, capsys):
  npy = tmp_path / 'e.npy'
  np.save(npy, np.zeros((6, 4)))
  assert evaluate.main(['pairs', '--embeddings', str(npy), '--protocol', 'synface']) == 2
  assert '--issame' in capsys.readouterr().err
  issame = tmp_path / 'issame.npy'
  np.save(issame, np.ones(4, bool))
  assert evaluate.main(['pairs', '--embeddings', str(npy), '--issame', str(issame),
                        '--protocol', 'synface']) == 2
  assert 'for 4 pairs; expected [8, D]' in capsys.readouterr().err


def test_embed_reads_image_folders(checkpoint, raw_embed, tmp_path, capsys):
  rng = np.random.default_rng(1)
  faces = rng.integers(0, 256, (5, *HW, 3), dtype=np.uint8)
  flat, ids = tmp_path / 'flat', tmp_path / 'ids'
  flat.mkdir()
  for i, face in enumerate(faces):
    Image.fromarray(face).save(flat / f'{i}.png')
    (ids / ('b' if i < 2 else 'a')).mkdir(parents=True, exist_ok=True)
    Image.fromarray(face).save(ids / ('b' if i < 2 else 'a') / f'{i}.png')
  x = image_io.model_input(faces)
  expected = raw_embed(x)
  embed.main(['--checkpoint', str(checkpoint[0]), '--images', str(flat),
              '--out', str(tmp_path / 'flat.npz'), '--batch', '16'])
  with np.load(tmp_path / 'flat.npz') as stored:
    assert stored['paths'].tolist() == [f'{i}.png' for i in range(5)]
    np.testing.assert_allclose(stored['embeddings'], expected, atol=1e-5 * np.abs(expected).max())
  embed.main(['--checkpoint', str(checkpoint[0]), '--images', str(ids),
              '--out', str(tmp_path / 'ids.npz'), '--batch', '16'])
  with np.load(tmp_path / 'ids.npz') as stored:
    # Folders in sorted order: 'a' (faces 2, 3, 4) is label 0, 'b' (faces 0, 1) label 1.
    assert stored['labels'].tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_allclose(stored['embeddings'], expected[[2, 3, 4, 0, 1]],
                               atol=1e-5 * np.abs(expected).max())
  capsys.readouterr()
  with exits_with_one_line(capsys, 'no `images` array'):
    np.savez(tmp_path / 'bad.npz', pixels=faces)
    embed.main(['--checkpoint', str(checkpoint[0]), '--images', str(tmp_path / 'bad.npz'),
                '--out', str(tmp_path / 'o.npy')])
