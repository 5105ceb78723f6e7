"""Face embeddings of an image array with a trained or converted IResNet backbone.

Usage:
  python -m synface_jax.embed --checkpoint DIR --images X --out Y.npy|Y.npz [--flip] [--batch 64] \
      [--arch r18 --width 1.0]

X is one of
  X.npy   uint8 NHWC RGB (normalised here as (x / 255 - 0.5) / 0.5) or float NHWC already normalised;
  X.npz   the same under the key `images`, with `issame` (a pair set, as `evaluate bin` writes it)
          and/or `labels` (a labelled set) carried over to Y;
  DIR     an image folder: one sub-folder per identity (labels are the folder's position in
          sorted order), or image files directly in DIR (their names go to Y as `paths`).
Y.npy is float32 [N, num_features]; Y.npz holds it as `embeddings` plus whatever X carried
(`issame`, `labels`, `paths`), which is what `python -m synface_jax.evaluate pairs` reads. The rows
are not L2-normalised; with --flip each is embedding(x) + embedding(horizontally flipped x),
insightface's flip sum.
The model comes from DIR's model.json (written by training and by models.convert); --arch and
--width override it, and rebuild checkpoints written before it existed. In Python, use
`synface_jax.load_embedder` (L2-normalised embeddings of arrays, PIL images or files).
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax import cli
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


CARRIED_KEYS = ('issame', 'labels')


def load_images(path):
  """Loads and checks a .npy image array; errors name the file."""
  try:
    images = np.load(path, allow_pickle=False)
  except ValueError as e:
    raise ValueError(f'{path}: not a plain .npy array ({e})') from None
  if not isinstance(images, np.ndarray):
    raise ValueError(f'{path}: an .npz archive, not a .npy array (use load_inputs)')
  check_images(images, path)
  return images


def _image_files(folder):
  from synface_jax.data.images import IMAGE_EXTENSIONS
  return sorted(n for n in os.listdir(folder)
                if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, n)))


def load_inputs(path):
  """(images, extras) from a .npy, an .npz (`images`, optional `issame` / `labels`) or a folder.

  extras holds what goes to the output beside the embeddings: `issame`, `labels` or `paths`.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    if any(os.path.isdir(os.path.join(path, n)) for n in os.listdir(path)):
      from synface_jax.eval.sets import load_labelled
      images, labels = load_labelled(path)
      extras = {'labels': labels}
    else:
      from synface_jax.embedder import as_image_batch
      names = _image_files(path)
      if not names:
        raise ValueError(f'{path}: no image files and no identity sub-folders')
      images = as_image_batch([os.path.join(path, n) for n in names])
      extras = {'paths': np.array(names)}
    check_images(images, path)
    return images, extras
  if path.endswith('.npz'):
    try:
      with np.load(path, allow_pickle=False) as data:
        if 'images' not in data.files:
          raise ValueError(f'{path}: no `images` array (has {sorted(data.files)})')
        images = data['images']
        extras = {k: data[k] for k in CARRIED_KEYS if k in data.files}
    except (OSError, EOFError) as e:
      raise ValueError(f'{path}: cannot read .npz ({e})') from None
    check_images(images, path)
    return images, extras
  return load_images(path), {}


def _finite(variables) -> bool:
  return all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(variables)
             if np.issubdtype(np.asarray(v).dtype, np.inexact))


def main(argv=None):
  from synface_jax.embedder import Embedder
  parser = cli.parser('synface_jax.embed', __doc__.splitlines()[0])
  parser.add_argument('--checkpoint', required=True,
                      help='CheckpointManager directory or training workdir')
  parser.add_argument('--arch', default=None,
                      help="r18, r34, r50, r100 or r200 (default: the checkpoint's model.json)")
  parser.add_argument('--width', type=float, default=None,
                      help="channel multiplier (default: the checkpoint's)")
  parser.add_argument('--images', required=True,
                      help='.npy of NHWC RGB images, .npz with `images`, or an image folder')
  parser.add_argument('--out', required=True,
                      help='.npy (embeddings only) or .npz (embeddings + issame/labels/paths)')
  parser.add_argument('--flip', action='store_true', help='add the flipped-image embedding')
  parser.add_argument('--batch', type=int, default=64, help='images per forward pass')
  args = parser.parse_args(argv)
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.images):
      images, extras = load_inputs(args.images)
    with file_errors.reading(args.checkpoint):
      variables, step = load_backbone(args.checkpoint)
      # The images' size is the model's input size; arch and width come from model.json or flags.
      spec = model_spec.resolve_spec(args.checkpoint, variables, arch=args.arch, width=args.width,
                                     input_size=tuple(images.shape[1:3]))
    if not _finite(variables):
      raise ValueError(f'{args.checkpoint}: the weights of step {step} hold NaN or infinite '
                       f'values; nothing written to {args.out}')
    embedder = Embedder(variables, spec, step=step, batch_size=args.batch, flip=args.flip,
                        normalize=False, source=args.checkpoint)
    embeddings = embedder(images, progress=f'embed {args.images}')
    bad = int(np.size(embeddings) and (~np.isfinite(embeddings).all(axis=-1)).sum())
    if bad:
      raise ValueError(f'{args.images}: {bad} of {len(embeddings)} embeddings are NaN or '
                       f'infinite (the images hold NaN or infinite values); nothing written to '
                       f'{args.out}')
    if args.out.endswith('.npz'):
      np.savez(args.out, embeddings=embeddings, **extras)
    else:
      np.save(args.out, embeddings)
  except file_errors.FILE_ERRORS as e:
    cli.fail(str(e))
  kept = f' with {", ".join(extras)}' if extras and args.out.endswith('.npz') else ''
  dropped = (f' ({", ".join(extras)} not kept in a .npy: use --out X.npz)'
             if extras and not args.out.endswith('.npz') else '')
  print(f'wrote {embeddings.shape} embeddings from step {step} to {args.out}{kept}{dropped}')


if __name__ == '__main__':
  main()
