"""Checking and decoding encoded face images, and the report of what a scan skipped or converted.

Every image that enters a prepared dataset passes `check_image` first: it must decode completely
(a corrupt or truncated file is skipped), and it is stored as RGB JPEG or PNG bytes (other modes
and formats, e.g. grayscale, CMYK or BMP, are converted to RGB PNG and reported). Decoding for the
shell tools uses Pillow, as the golden files do.

Faces that reach a model outside the tf.data pipeline (the evaluator, the embedder) are decoded,
fitted to the input size and normalised here (`decode`, `fit_to_size`, `model_input`), without
TensorFlow; `augment` holds training's graph twins of the first two and shares `normalize`.
"""
import dataclasses
import io
import os
import stat
import warnings

import numpy as np

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
KEPT_FORMATS = ('JPEG', 'PNG')
MAX_NAMED = 20  # Files named in one warning; `stats` lists them all.


class BadImage(ValueError):
  """An image that cannot be used; the message is the reason."""


@dataclasses.dataclass
class Report:
  """Files a scan skipped or converted, each with its reason."""
  source: str
  skipped: list = dataclasses.field(default_factory=list)    # [(file, reason)]
  converted: list = dataclasses.field(default_factory=list)  # [(file, reason)]

  def skip(self, file: str, reason: str) -> None:
    self.skipped.append((str(file), reason))

  def convert(self, file: str, reason: str) -> None:
    self.converted.append((str(file), reason))

  def reasons(self) -> dict:
    """Number of skipped files per reason (the reason's text up to its first colon)."""
    counts = {}
    for _, reason in self.skipped:
      head = reason.split(':')[0]
      counts[head] = counts.get(head, 0) + 1
    return counts

  def warn(self) -> None:
    """One warning for the skipped files and one for the converted files, naming them."""
    for what, items in (('skipped', self.skipped), ('converted to RGB', self.converted)):
      if not items:
        continue
      named = '; '.join(f'{f} ({r})' for f, r in items[:MAX_NAMED])
      more = (f'; and {len(items) - MAX_NAMED} more (python -m synface_jax.data stats lists all)'
              if len(items) > MAX_NAMED else '')
      warnings.warn(f'{self.source}: {what} {len(items)} files: {named}{more}', stacklevel=2)

  def to_json(self) -> dict:
    return {
        'skipped': len(self.skipped),
        'skipped_reasons': self.reasons(),
        'skipped_files': [{'file': f, 'reason': r} for f, r in self.skipped],
        'converted': len(self.converted),
        'converted_files': [{'file': f, 'reason': r} for f, r in self.converted],
    }


def check_image(data: bytes, size: tuple | None = None) -> tuple[bytes, str | None, tuple]:
  """Decodes `data` completely and returns (bytes to store, conversion note or None, (H, W)).

  Raises:
    BadImage: the data does not decode completely, or its size is not `size` (H, W) when given.
  """
  from PIL import Image
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
      fmt, mode = im.format, im.mode
      hw = (im.height, im.width)
      if size is not None and hw != tuple(size):
        raise BadImage(f'wrong size: {hw[0]}x{hw[1]}, the set is {size[0]}x{size[1]}')
      if fmt in KEPT_FORMATS and mode == 'RGB':
        return data, None, hw
      rgb = to_rgb(im)
  except BadImage:
    raise
  except Exception as e:  # Pillow raises many types for damaged files.
    raise BadImage(f'cannot decode: {type(e).__name__}: {e}') from None
  buffer = io.BytesIO()
  rgb.save(buffer, 'PNG')
  return buffer.getvalue(), f'{fmt} {mode} stored as RGB PNG', hw


def to_rgb(im):
  """An RGB Pillow image of `im`; 16-bit grey (modes I;16*, and I holding 16-bit values) is scaled
  to 8 bits (v * 255 / 65535, rounded) where Pillow's own conversion clips it at 255."""
  from PIL import Image
  if im.mode.startswith('I;16') or im.mode == 'I':
    grey = np.asarray(im).astype(np.float64)
    grey = np.clip(np.rint(grey * (255 / 65535)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, 'L').convert('RGB')
  return im.convert('RGB')


def read_file(path: str) -> bytes:
  """The bytes of the regular file at `path`; BadImage when it cannot be read or is not a regular
  file (a FIFO, socket, device or folder named like an image: never waited on)."""
  try:
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0))
  except OSError as e:
    raise BadImage(f'cannot read: {e.strerror}') from None
  try:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
      raise BadImage('not a regular file')
    with os.fdopen(os.dup(fd), 'rb') as f:
      return f.read()
  except OSError as e:
    raise BadImage(f'cannot read: {e.strerror}') from None
  finally:
    os.close(fd)


def image_size(data: bytes) -> tuple[int, int] | None:
  """(H, W) from the image header without decoding the pixels; None when unreadable."""
  from PIL import Image
  try:
    with Image.open(io.BytesIO(data)) as im:
      return im.height, im.width
  except Exception:  # Damaged files are reported by check_image.
    return None


def decode(data: bytes, source: str = 'image') -> np.ndarray:
  """uint8 [H, W, 3] RGB pixels of an encoded image (Pillow).

  Training decodes the same bytes inside its tf.data graph (`augment.decode`, libjpeg's accurate
  integer IDCT, which is what Pillow uses), so both give the same pixels.

  Raises:
    BadImage: 'cannot decode SOURCE: why' when the data do not decode completely.
  """
  from PIL import Image
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
      return np.asarray(to_rgb(im), dtype=np.uint8)
  except Exception as e:  # Pillow raises many types for damaged files.
    raise BadImage(f'cannot decode {source}: {e}') from None


def stack(images: list, source: str) -> np.ndarray:
  """uint8 [N, H, W, 3] of equally sized images; ValueError naming the first that differs."""
  if not images:
    return np.zeros((0, 0, 0, 3), dtype=np.uint8)
  for i, image in enumerate(images):
    if image.shape != images[0].shape:
      raise ValueError(f'{source}: image {i} has shape {image.shape}, image 0 has '
                       f'{images[0].shape}; all images must have the same size')
  return np.stack(images)


def normalize(pixels):
  """float32 pixels in [0, 255] -> [-1, 1]: (x / 255 - 0.5) / 0.5.

  The one formula for numpy arrays (`model_input`) and for tf tensors (`augment.normalize`, in
  training's tf.data graph).
  """
  return (pixels / 255.0 - 0.5) / 0.5


def model_input(images: np.ndarray) -> np.ndarray:
  """What the backbone takes: uint8 pixels normalised to float32 in [-1, 1] (`normalize`); float
  images are taken as already normalised."""
  if images.dtype != np.uint8:
    return images.astype(np.float32)
  return normalize(images.astype(np.float32))


def fit_to_size(images: np.ndarray, size) -> np.ndarray:
  """Centre-crops uint8 [N, H, W, 3] to the aspect of size=(h, w), then resizes (bilinear).

  The numpy twin of training's `augment.fit_to_size`, which runs inside the tf.data graph: this
  one serves the evaluator and the embedder, which run without TensorFlow. Both crop alike, and
  Pillow's bilinear filter widens with the scale on downsizing exactly as tf's antialias=True
  does; they differ only in rounding (Pillow stores uint8), by at most one grey level.
  """
  h, w = size
  _, ih, iw, _ = images.shape
  if (ih, iw) == (h, w):
    return images
  crop_h, crop_w = min(ih, iw * h // w), min(iw, ih * w // h)
  top, left = (ih - crop_h) // 2, (iw - crop_w) // 2
  images = images[:, top:top + crop_h, left:left + crop_w]
  if (crop_h, crop_w) == (h, w):
    return images
  from PIL import Image
  return np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR)) for im in images])


def encode_jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
  """JPEG bytes of uint8 [H, W, 3] RGB pixels (Pillow)."""
  from PIL import Image
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(pixels, np.uint8), 'RGB').save(buffer, 'JPEG', quality=quality)
  return buffer.getvalue()


def most_common_size(sizes) -> tuple[int, int] | None:
  """The most frequent (H, W) among `sizes` (None entries ignored); ties go to the first seen."""
  counts = {}
  for s in sizes:
    if s is not None:
      counts[s] = counts.get(s, 0) + 1
  return max(counts, key=counts.get) if counts else None
