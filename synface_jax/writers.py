"""TensorBoard metrics and progress lines for the training loop, without TensorFlow.

clu's `metric_writers` and `periodic_actions` import TensorFlow when they are imported, so the
loop uses these two instead: `MetricWriter` has the methods of clu's MetricWriter (write_scalars,
write_images, write_histograms, write_texts, write_hparams, flush, close), logs every value as
clu's LoggingWriter does (`[step] name=value, ...`) and writes the TensorBoard event files with
tensorboardX; `ReportProgress` logs steps/s, percent done and the ETA, like clu's hook of that name.
"""
import collections
import contextlib
import datetime
import time
from typing import Any, Mapping

from absl import logging
import numpy as np


def _python_value(value):
  """Python scalar of a numpy/jax scalar; other values unchanged."""
  if isinstance(value, np.generic) or (hasattr(value, 'shape') and np.ndim(value) == 0):
    return np.asarray(value).item()
  return value


def hparam_value(value):
  """A value TensorBoard's hparams plugin can show: bool, number or string (anything else str)."""
  value = _python_value(value)
  if isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


class MetricWriter:
  """Log lines plus TensorBoard event files in `logdir` (only log lines when logdir is None)."""

  def __init__(self, logdir: str | None = None, *, just_logging: bool = False):
    self._summary = None
    if logdir is not None and not just_logging:
      from tensorboardX import SummaryWriter
      self._summary = SummaryWriter(logdir=str(logdir), flush_secs=30)

  @property
  def logdir(self) -> str | None:
    return self._summary.logdir if self._summary else None

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    scalars = {k: _python_value(v) for k, v in scalars.items()}
    logging.info('[%d] %s', step, ', '.join(
        f'{k}={v:.6g}' if isinstance(v, float) else f'{k}={v}' for k, v in sorted(scalars.items())))
    if self._summary:
      for k, v in scalars.items():
        self._summary.add_scalar(k, v, global_step=step)

  def write_images(self, step: int, images: Mapping[str, Any]):
    """Images [H, W, C] or [N, H, W, C] (N tiled into one grid), uint8 or float in [0, 1]."""
    logging.info('[%d] Got images: %s.', step, {k: np.shape(v) for k, v in images.items()})
    if self._summary:
      for k, v in images.items():
        v = np.asarray(v)
        if v.ndim == 4:
          self._summary.add_images(k, v, global_step=step, dataformats='NHWC')
        else:
          self._summary.add_image(k, v, global_step=step, dataformats='HWC')

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Mapping[str, int] | None = None):
    num_buckets = num_buckets or {}
    logging.info('[%d] Got histograms: %s.', step, {k: np.shape(v) for k, v in arrays.items()})
    if self._summary:
      for k, v in arrays.items():
        self._summary.add_histogram(k, np.asarray(v), global_step=step,
                                    bins=num_buckets.get(k, 30))

  def write_texts(self, step: int, texts: Mapping[str, str]):
    logging.info('[%d] Got texts: %s.', step, texts)
    if self._summary:
      for k, v in texts.items():
        self._summary.add_text(k, v, global_step=step)

  def write_hparams(self, hparams: Mapping[str, Any]):
    """Numbers and booleans stay numeric (TensorBoard can sort and plot them); others are strings."""
    hparams = {k: hparam_value(v) for k, v in hparams.items()}
    logging.info('[Hyperparameters] %s', hparams)
    if self._summary:
      from tensorboardX.summary import hparams as hparams_summary
      experiment, session_start, _ = hparams_summary(hparams, {})
      self._summary.file_writer.add_summary(experiment)
      self._summary.file_writer.add_summary(session_start)

  def flush(self):
    if self._summary:
      self._summary.flush()

  def close(self):
    if self._summary:
      self._summary.close()
      self._summary = None


def to_uint8(images) -> np.ndarray:
  """uint8 pixels of images normalised to [-1, 1] (uint8 images unchanged)."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return np.clip((images.astype(np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def image_grid(rows: Mapping[str, Any], captions: Mapping[str, Any] | None = None,
               min_tile: int = 64) -> np.ndarray:
  """One uint8 [H, W, 3] picture: a row of tiles per named part, its name on the left and a caption
  under each tile (captions[name][k] for tile k).

  rows: {name: images [N, H, W, 3], float in [-1, 1] or uint8}; tiles smaller than `min_tile`
  pixels wide are enlarged by a whole factor (nearest neighbour) so the captions fit.
  """
  from PIL import Image, ImageDraw
  captions = captions or {}
  tiles = {name: to_uint8(images) for name, images in rows.items()}
  h, w = next(iter(tiles.values())).shape[1:3]
  zoom = max(1, -(-min_tile // w))
  h, w = h * zoom, w * zoom
  label_w, caption_h, pad = 80, 12, 2
  cols = max(len(t) for t in tiles.values())
  canvas = Image.new('RGB', (label_w + cols * (w + pad), len(tiles) * (h + caption_h + pad)),
                     'white')
  draw = ImageDraw.Draw(canvas)
  for r, (name, images) in enumerate(tiles.items()):
    top = r * (h + caption_h + pad)
    draw.text((4, top + h // 2 - 6), name, fill='black')
    for k, image in enumerate(images):
      left = label_w + k * (w + pad)
      canvas.paste(Image.fromarray(np.repeat(np.repeat(image, zoom, 0), zoom, 1)), (left, top))
      texts = captions.get(name)
      if texts is not None and k < len(texts):
        draw.text((left + 2, top + h), str(texts[k]), fill='black')
  return np.asarray(canvas)


def create_default_writer(logdir: str | None, *, just_logging: bool = False) -> MetricWriter:
  """The writer of a training run: TensorBoard files in logdir on process 0, log lines on all."""
  return MetricWriter(logdir, just_logging=just_logging)


def format_seconds(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(round(seconds))))


class ReportProgress:
  """Logs `step/total (percent), steps/s, ETA` every `every_steps` steps and at the last step.

  The rate is measured between reports, without the time spent inside `timed(name)` blocks
  (evaluation, say); the ETA adds those blocks' share of the time so far per step done.
  Also writes `steps_per_sec` to the writer. The first call only starts the clock (that step
  includes compilation).
  """

  def __init__(self, *, num_train_steps: int, writer: MetricWriter | None = None,
               every_steps: int = 100):
    self._total = num_train_steps
    self._writer = writer
    self._every = max(1, every_steps)
    self._previous = None           # (step, time) of the last report.
    self._timed = collections.defaultdict(float)
    self._timed_since = 0.0         # Timed seconds since the last report.
    self._first_step = None

  @contextlib.contextmanager
  def timed(self, name: str):
    start = time.monotonic()
    try:
      yield
    finally:
      elapsed = time.monotonic() - start
      self._timed[name] += elapsed
      self._timed_since += elapsed

  def __call__(self, step: int) -> str | None:
    now = time.monotonic()
    if self._previous is None:
      self._previous, self._first_step, self._timed_since = (step, now), step, 0.0
      return None
    if step % self._every and step != self._total:
      return None
    last_step, last_time = self._previous
    if step <= last_step:
      return None
    seconds = max(now - last_time - self._timed_since, 1e-9)
    rate = (step - last_step) / seconds
    message = f'step {step}/{self._total} ({100 * step / self._total:.1f}%), {rate:.2f} steps/s'
    if step < self._total:
      timed_per_step = sum(self._timed.values()) / max(step - self._first_step, 1)
      eta = (self._total - step) * (1 / rate + timed_per_step)
      message += f', ETA {format_seconds(eta)}'
    if self._timed:
      message += ' (' + ', '.join(f'{name} {format_seconds(t)}'
                                  for name, t in sorted(self._timed.items())) + ')'
    logging.info('%s', message)
    if self._writer is not None:
      self._writer.write_scalars(step, {'steps_per_sec': rate})
    self._previous, self._timed_since = (step, now), 0.0
    return message
