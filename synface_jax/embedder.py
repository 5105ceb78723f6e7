"""Face embeddings in a notebook: a trained (or converted) backbone behind one call.

    from synface_jax import load_embedder

    emb = load_embedder('runs/demo')              # a workdir, its checkpoints/ or a convert output
    e = emb(images)                               # [N, D] float32, rows of unit length
    emb.verify(faces_a, faces_b)                  # cosine similarity of each pair, [N]
    scores, index = emb.search(queries, gallery, k=5)

Images are aligned faces at the model's input size (model.json of the checkpoint; 112x112 for
insightface models): uint8 arrays [N, H, W, 3] or [H, W, 3] (RGB, normalised here as
(x / 255 - 0.5) / 0.5), float arrays already normalised that way, PIL images, file paths, or a
list of any of these. They are embedded in fixed-size batches by one jitted function.
"""
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.models import model_spec

Images = Any  # np.ndarray [N, H, W, 3] / [H, W, 3], PIL.Image, str / os.PathLike, or a list of them


def _is_path(x) -> bool:
  return isinstance(x, (str, os.PathLike))


def _pil_to_array(image, name) -> np.ndarray:
  if image.mode != 'RGB':
    image = image.convert('RGB')
  array = np.asarray(image, np.uint8)
  if array.ndim != 3:
    raise ValueError(f'{name}: expected an RGB image, got shape {array.shape}')
  return array


def _one_image(x, name) -> np.ndarray:
  """[H, W, 3] uint8 or float array of one path, PIL image or array."""
  if _is_path(x):
    from PIL import Image
    try:
      with Image.open(x) as image:
        return _pil_to_array(image, x)
    except OSError as e:
      raise ValueError(f'{x}: cannot read the image ({e})') from None
  if hasattr(x, 'mode') and hasattr(x, 'convert'):  # A PIL image.
    return _pil_to_array(x, name)
  array = np.asarray(x)
  if array.ndim != 3:
    raise ValueError(f'{name}: expected one [H, W, 3] image, got shape {array.shape}')
  return array


def as_image_batch(images: Images) -> np.ndarray:
  """The images as one [N, H, W, 3] uint8 or float array."""
  if _is_path(images) or hasattr(images, 'convert'):
    return _one_image(images, 'image')[None]
  if isinstance(images, (list, tuple)):
    if not images:
      raise ValueError('no images')
    arrays = [_one_image(x, f'image {i}') for i, x in enumerate(images)]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
      raise ValueError(f'images differ in shape: {sorted(shapes)}')
    return np.stack(arrays)
  array = np.asarray(images)
  return array[None] if array.ndim == 3 else array


class Embedder:
  """L2-normalised embeddings of aligned faces from one backbone (see the module docstring).

  Attributes:
    spec: the model description (arch, width, num_features, input_size, dtype).
    step: the checkpoint step the weights come from.
    batch_size: images per forward pass (the last batch is padded to it: one compiled shape).
    flip: when True, each embedding is that of the face plus that of its mirror image
      (insightface's evaluation), normalised after the sum.
    normalize: False returns the backbone's raw output (what `python -m synface_jax.embed` writes).
    source: names the weights in error messages.
  """

  def __init__(self, variables, spec: model_spec.ModelSpec, *, step: int = 0,
               batch_size: int = 64, flip: bool = False, normalize: bool = True,
               source: str = 'weights'):
    from synface_jax import embed
    if batch_size < 1:
      raise ValueError(f'batch_size must be positive, got {batch_size}')
    self.spec, self.step, self.batch_size, self.flip = spec, step, batch_size, flip
    self._model = spec.model()
    embed.check_variables(self._model, variables, spec.input_size, str(source))
    self._variables = jax.device_put(variables)

    def forward(variables, x):
      e = self._model.apply(variables, x, train=False).astype(jnp.float32)
      if flip:
        e = e + self._model.apply(variables, x[:, :, ::-1], train=False).astype(jnp.float32)
      if not normalize:
        return e
      return e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    self._forward = jax.jit(forward)

  @property
  def dim(self) -> int:
    return self.spec.num_features

  def _check(self, batch: np.ndarray) -> np.ndarray:
    from synface_jax import embed
    embed.check_images(batch, 'images')
    if tuple(batch.shape[1:3]) != self.spec.input_size:
      h, w = self.spec.input_size
      raise ValueError(f'images are {batch.shape[1]}x{batch.shape[2]}; this model takes aligned '
                       f'faces of {h}x{w}')
    return batch

  def __call__(self, images: Images, *, progress: str = '') -> np.ndarray:
    """float32 [N, D] embeddings (of unit length unless built with normalize=False).

    progress: when given, the name on progress lines (synface_jax.progress) counting the faces.
    """
    from synface_jax import progress as progress_lib
    from synface_jax.data import images as image_io
    batch = self._check(as_image_batch(images))
    bar = progress_lib.Progress(progress, len(batch), unit='faces') if progress else None
    out = []
    for start in range(0, len(batch), self.batch_size):
      chunk = batch[start:start + self.batch_size]
      real = len(chunk)
      if real < self.batch_size:
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], self.batch_size - real, 0)])
      out.append(np.asarray(self._forward(self._variables, image_io.model_input(chunk)))[:real])
      if bar:
        bar.update(real)
    if bar:
      bar.close()
    return np.concatenate(out).astype(np.float32)

  def _embeddings(self, x) -> np.ndarray:
    """Unit-length rows: of x itself when it already is [N, D] embeddings, else of embed(x)."""
    if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.shape[1] == self.dim):
      x = self(x)
    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

  def verify(self, a: Images, b: Images) -> np.ndarray:
    """Cosine similarity [N] of a[i] and b[i] (images, or [N, D] embeddings)."""
    ea, eb = self._embeddings(a), self._embeddings(b)
    if ea.shape != eb.shape:
      raise ValueError(f'verify needs as many faces in a as in b, got {len(ea)} and {len(eb)}')
    return np.sum(ea * eb, axis=1)

  def search(self, queries: Images, gallery: Images, k: int = 5):
    """The k gallery entries most similar to each query: (scores [Q, k], indices [Q, k]),
    best first. queries and gallery are images or [N, D] embeddings."""
    q, g = self._embeddings(queries), self._embeddings(gallery)
    k = min(k, len(g))
    similarity = q @ g.T
    index = np.argsort(-similarity, axis=1, kind='stable')[:, :k]
    return np.take_along_axis(similarity, index, axis=1), index

  def __repr__(self):
    s = self.spec
    return (f'Embedder({s.arch}, width={s.width}, {s.input_size[0]}x{s.input_size[1]} -> '
            f'{s.num_features}, step={self.step}, flip={self.flip})')


def load_embedder(path, *, step: int | None = None, batch_size: int = 64, flip: bool = False,
                  normalize: bool = True, arch: str | None = None, width: float | None = None,
                  input_size: Sequence[int] | None = None) -> Embedder:
  """An Embedder for the backbone in `path` (training workdir, its checkpoints/, or the output
  of `python -m synface_jax.models.convert`), at the latest step unless `step` is given.

  The model is described by the checkpoint's model.json; arch, width and input_size override it,
  and rebuild checkpoints that have none (arch, width and embedding size can also be read off the
  weights; the input size then defaults to the square one the weights fit).
  """
  from synface_jax.models.checkpoint import load_backbone
  variables, step = load_backbone(path, step)
  spec = model_spec.resolve_spec(path, variables, arch=arch, width=width,
                                 input_size=tuple(input_size) if input_size else None)
  return Embedder(variables, spec, step=step, batch_size=batch_size, flip=flip,
                  normalize=normalize, source=os.fspath(path))
