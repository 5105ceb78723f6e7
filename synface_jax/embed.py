"""Face embeddings of an image array with a trained or converted IResNet backbone.

Usage:
  python -m synface_jax.embed --checkpoint DIR --images X.npy --out Y.npy [--flip] [--batch 64] \
      [--arch r18 --width 1.0]

X is uint8 NHWC RGB (normalised here as (x / 255 - 0.5) / 0.5) or float NHWC already normalised.
Y is float32 [N, num_features], not L2-normalised; with --flip each row is
embedding(x) + embedding(horizontally flipped x), insightface's flip sum.
The model comes from DIR's model.json (written by training and by models.convert); --arch and
--width override it, and rebuild checkpoints written before it existed. In Python, use
`synface_jax.load_embedder` (L2-normalised embeddings of arrays, PIL images or files).
"""
import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.models import model_spec
from synface_jax.models.checkpoint import load_backbone


def check_images(images, name):
  """Raises ValueError naming `name` unless images is uint8/float NHWC RGB with sides % 16 == 0."""
  if images.ndim != 4:
    raise ValueError(f'{name}: expected NHWC images with 4 dims, got shape {images.shape}')
  if images.shape[-1] != 3:
    raise ValueError(f'{name}: expected 3 RGB channels last, got shape {images.shape}')
  if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f'{name}: expected uint8 or float images, got dtype {images.dtype}')
  if images.shape[1] % 16 or images.shape[2] % 16:
    raise ValueError(f'{name}: height and width must be divisible by 16, got '
                     f'{images.shape[1]}x{images.shape[2]}')
  if len(images) == 0:
    raise ValueError(f'{name}: no images')


def _shapes(variables):
  """Leaf path -> shape of a variables tree."""
  flat, _ = jax.tree_util.tree_flatten_with_path(variables)
  return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in flat}


def check_variables(model, variables, image_hw, name):
  """Raises ValueError naming `name` if the variables do not fit the model at this image size."""
  expected = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_hw, 3)), train=False))
  want, got = _shapes(dict(expected)), _shapes(dict(variables))
  if want != got:
    key = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))[0]
    if key not in got:
      problem = 'is missing from the checkpoint'
    elif key not in want:
      problem = 'is not part of this model'
    else:
      problem = f'has shape {got[key]}, the model expects {want[key]}'
    raise ValueError(f'{name}: variables do not fit {type(model).__name__} at {image_hw[0]}x'
                     f'{image_hw[1]} images (check arch, width and image size): {key} {problem}')


def load_images(path):
  """Loads and checks a .npy image array; errors name the file."""
  try:
    images = np.load(path, allow_pickle=False)
  except ValueError as e:
    raise ValueError(f'{path}: not a plain .npy array ({e})') from None
  check_images(images, path)
  return images


def main(argv=None):
  from synface_jax.embedder import Embedder
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--checkpoint', required=True,
                      help='CheckpointManager directory or training workdir')
  parser.add_argument('--arch', default=None,
                      help="r18, r34, r50, r100 or r200 (default: the checkpoint's model.json)")
  parser.add_argument('--width', type=float, default=None,
                      help="channel multiplier (default: the checkpoint's)")
  parser.add_argument('--images', required=True, help='.npy of NHWC RGB images')
  parser.add_argument('--out', required=True, help='.npy to write the embeddings to')
  parser.add_argument('--flip', action='store_true', help='add the flipped-image embedding')
  parser.add_argument('--batch', type=int, default=64, help='images per forward pass')
  args = parser.parse_args(argv)
  try:
    images = load_images(args.images)
    variables, step = load_backbone(args.checkpoint)
    # The images' size is the model's input size; arch and width come from model.json or flags.
    spec = model_spec.resolve_spec(args.checkpoint, variables, arch=args.arch, width=args.width,
                                   input_size=tuple(images.shape[1:3]))
    embedder = Embedder(variables, spec, step=step, batch_size=args.batch, flip=args.flip,
                        normalize=False, source=args.checkpoint)
    embeddings = embedder(images)
    np.save(args.out, embeddings)
  except (OSError, ValueError) as e:
    sys.exit(f'embed: {e}')
  print(f'wrote {embeddings.shape} embeddings from step {step} to {args.out}')


if __name__ == '__main__':
  main()
