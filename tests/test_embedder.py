"""load_embedder: a checkpoint's own model, images in several forms, verify and search."""
import jax
import numpy as np
import pytest
from PIL import Image

import synface_jax
from synface_jax import embed
from synface_jax.models import convert, iresnet
from conftest import write_tiny_checkpoint

TINY = 1 / 16
HW = (32, 48)


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A training-workdir layout (checkpoints/ with model.json) holding a tiny r18 at 32x48."""
  root = tmp_path_factory.mktemp('run')
  return root, write_tiny_checkpoint(root, HW, seed=2, width=TINY)


@pytest.fixture(scope='module')
def emb(workdir):
  return synface_jax.load_embedder(workdir[0], batch_size=4)


@pytest.fixture(scope='module')
def faces():
  return np.random.default_rng(0).integers(0, 256, (7, *HW, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def expected(workdir, faces):
  """Independent of the embedder: the model applied to the normalised pixels, rows scaled to 1."""
  _, variables = workdir
  x = (faces.astype(np.float32) / 255 - 0.5) / 0.5
  out = np.asarray(jax.jit(lambda v, x: iresnet('r18', width=TINY).apply(v, x, train=False))(
      variables, x), np.float64)
  return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_reads_the_model_from_the_checkpoint(emb):
  assert (emb.spec.arch, emb.spec.width, emb.spec.input_size, emb.dim) == ('r18', TINY, HW, 512)
  assert emb.step == 0


def test_arrays_batched_and_normalised(emb, faces, expected):
  e = emb(faces)  # 7 faces in batches of 4: the last batch is padded.
  assert e.shape == (7, 512) and e.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(e, expected, rtol=0, atol=2e-5)
  np.testing.assert_allclose(emb(faces[3]), expected[3:4], rtol=0, atol=2e-5)  # One [H, W, 3].
  # Float input is taken as already normalised.
  np.testing.assert_allclose(emb((faces / 255 - 0.5) / 0.5), expected, rtol=0, atol=2e-5)


def test_pil_images_and_paths(emb, faces, expected, tmp_path):
  paths = []
  for i, face in enumerate(faces[:3]):
    paths.append(tmp_path / f'{i}.png')
    Image.fromarray(face).save(paths[-1])
  mixed = [str(paths[0]), Image.open(paths[1]), paths[2]]
  np.testing.assert_allclose(emb(mixed), expected[:3], rtol=0, atol=2e-5)
  np.testing.assert_allclose(emb(Image.fromarray(faces[4]).convert('L').convert('RGB')),
                             emb(np.asarray(Image.fromarray(faces[4]).convert('L').convert('RGB'))))


def test_verify_and_search(emb, faces, expected):
  similarity = emb.verify(faces[:4], faces[[0, 2, 1, 3]])
  np.testing.assert_allclose(similarity, np.sum(expected[:4] * expected[[0, 2, 1, 3]], axis=1),
                             rtol=0, atol=1e-5)
  np.testing.assert_allclose(similarity[[0, 3]], 1.0, atol=1e-5)
  gallery = emb(faces)
  scores, index = emb.search(faces[[5, 1]], gallery, k=3)
  assert index.shape == scores.shape == (2, 3)
  assert index[:, 0].tolist() == [5, 1]
  want = np.sort(expected[[5, 1]] @ expected.T, axis=1)[:, ::-1][:, :3]
  np.testing.assert_allclose(scores, want, rtol=0, atol=1e-5)
  # Embeddings are taken as they are (rows scaled to unit length).
  np.testing.assert_allclose(emb.verify(3 * gallery[:2], gallery[:2]), 1.0, atol=1e-5)


def test_flip_sum(workdir, faces, expected):
  _, variables = workdir
  flipped = synface_jax.load_embedder(workdir[0], flip=True)(faces[:2])
  x = (faces[:2].astype(np.float32) / 255 - 0.5) / 0.5
  apply = jax.jit(lambda v, x: iresnet('r18', width=TINY).apply(v, x, train=False))
  want = np.asarray(apply(variables, x)) + np.asarray(apply(variables, x[:, :, ::-1]))
  np.testing.assert_allclose(flipped, want / np.linalg.norm(want, axis=1, keepdims=True),
                             rtol=0, atol=2e-5)


def test_wrong_image_size(emb):
  with pytest.raises(ValueError, match='32x48'):
    emb(np.zeros((1, 48, 32, 3), np.uint8))


def test_embed_cli_without_arch(workdir, faces, tmp_path, capsys):
  root, variables = workdir
  np.save(tmp_path / 'x.npy', faces[:2])
  embed.main(['--checkpoint', str(root), '--images', str(tmp_path / 'x.npy'),
              '--out', str(tmp_path / 'y.npy')])
  assert f"embed {tmp_path / 'x.npy'}: 2/2 faces (100.0%)" in capsys.readouterr().err  # Progress.
  x = (faces[:2].astype(np.float32) / 255 - 0.5) / 0.5
  raw = np.asarray(jax.jit(lambda v, x: iresnet('r18', width=TINY).apply(v, x, train=False))(
      variables, x))
  np.testing.assert_allclose(np.load(tmp_path / 'y.npy'), raw, rtol=0,
                             atol=1e-5 * np.abs(raw).max())  # Not normalised, as before.
