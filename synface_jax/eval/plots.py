"""Evaluation figures drawn with Pillow alone: score histograms, ROC curves (log FAR), CMC curves.

Each function saves a PNG at `path` (None: no file) and returns the PIL image.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

GENUINE_COLOUR = (40, 150, 60)
IMPOSTOR_COLOUR = (200, 50, 50)
PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def histogram_png(path, genuine, impostor, threshold=None, title='', bins=40, size=(640, 360),
                  label='distance'):
  """Genuine (green) and impostor (red) histograms of pair scores as a PNG; each sums to 1."""
  genuine, impostor = np.asarray(genuine, np.float64), np.asarray(impostor, np.float64)
  w, h = size
  margin = 40
  lo = float(min(genuine.min(), impostor.min()))
  hi = float(max(genuine.max(), impostor.max(), threshold if threshold is not None else lo))
  if threshold is not None:
    lo = min(lo, float(threshold))
  hi = hi if hi > lo else lo + 1.0
  edges = np.linspace(lo, hi, bins + 1)
  hist = [np.histogram(v, edges)[0] / max(len(v), 1) for v in (genuine, impostor)]
  top = max(max(x.max() for x in hist), 1e-9)
  image = Image.new('RGB', size, 'white')
  draw = ImageDraw.Draw(image)
  x_of = lambda v: margin + (v - lo) / (hi - lo) * (w - 2 * margin)
  y_of = lambda f: h - margin - f / top * (h - 2 * margin)
  for values, colour in zip(hist, (GENUINE_COLOUR, IMPOSTOR_COLOUR)):
    for k, f in enumerate(values):
      if f > 0:
        draw.rectangle([x_of(edges[k]) + 1, y_of(f), x_of(edges[k + 1]) - 1, h - margin],
                       outline=colour)
  draw.line([margin, h - margin, w - margin, h - margin], fill='black')
  digits = max(2, int(math.ceil(-math.log10(hi - lo))) + 2)  # Ticks that differ on a narrow range.
  for v in np.linspace(lo, hi, 5):
    draw.text((x_of(v) - 12, h - margin + 6), f'{v:.{digits}f}', fill='black')
  draw.text((w // 2 - 20, h - 14), label, fill='black')
  if threshold is not None:
    draw.line([x_of(threshold), margin, x_of(threshold), h - margin], fill=(60, 60, 220))
    draw.text((x_of(threshold) + 4, margin), f'threshold {threshold:g}', fill=(60, 60, 220))
  draw.text((margin, 8), title, fill='black')
  draw.text((w - margin - 150, 8), 'genuine', fill=GENUINE_COLOUR)
  draw.text((w - margin - 80, 8), 'impostor', fill=IMPOSTOR_COLOUR)
  if path is not None:
    image.save(path)
  return image


class _Axes:
  """A plot area with a linear or log10 x axis and a linear y axis on [y_lo, y_hi]."""

  def __init__(self, draw, size, x_range, y_range, log_x, margin=(60, 30, 20, 45)):
    self.draw, self.log_x = draw, log_x
    self.left, self.top, self.right, self.bottom = margin[0], margin[1], size[0] - margin[2], \
        size[1] - margin[3]
    self.x_lo, self.x_hi = (math.log10(v) for v in x_range) if log_x else x_range
    self.y_lo, self.y_hi = y_range

  def x(self, v):
    v = math.log10(v) if self.log_x else v
    return self.left + (v - self.x_lo) / (self.x_hi - self.x_lo) * (self.right - self.left)

  def y(self, v):
    return self.bottom - (v - self.y_lo) / (self.y_hi - self.y_lo) * (self.bottom - self.top)

  def frame(self, x_ticks, y_ticks, x_label, y_label, title):
    d = self.draw
    for t, text in x_ticks:
      d.line([self.x(t), self.top, self.x(t), self.bottom], fill=(225, 225, 225))
      d.text((self.x(t) - 14, self.bottom + 5), text, fill='black')
    for t in y_ticks:
      d.line([self.left, self.y(t), self.right, self.y(t)], fill=(225, 225, 225))
      d.text((6, self.y(t) - 6), f'{t:.2f}', fill='black')
    d.rectangle([self.left, self.top, self.right, self.bottom], outline='black')
    d.text(((self.left + self.right) // 2 - 3 * len(x_label), self.bottom + 22), x_label,
           fill='black')
    d.text((6, 8), f'{title}   ({y_label})' if title else y_label, fill='black')

  def legend(self, names, colours):
    for k, (name, colour) in enumerate(zip(names, colours)):
      y = self.bottom - 16 * (len(names) - k) - 4
      self.draw.line([self.right - 170, y + 6, self.right - 150, y + 6], fill=colour, width=2)
      self.draw.text((self.right - 145, y), name, fill='black')


def roc_png(path, curves: Dict[str, Tuple[Sequence[float], Sequence[float]]], title='ROC',
            far_min: Optional[float] = None, size=(640, 420)):
  """ROC curves (TAR against FAR on a log axis), one per entry of ``curves`` {name: (far, tar)}.

  FAR = 0 cannot sit on a log axis: points below ``far_min`` (default: the smallest positive FAR
  of any curve, at most 1e-4) are drawn at ``far_min``.
  """
  positive = [f for far, _ in curves.values() for f in np.asarray(far, np.float64) if f > 0]
  if far_min is None:
    far_min = min([1e-4] + positive)
  far_min = 10.0 ** math.floor(math.log10(far_min))
  image = Image.new('RGB', size, 'white')
  draw = ImageDraw.Draw(image)
  axes = _Axes(draw, size, (far_min, 1.0), (0.0, 1.0), log_x=True)
  decades = range(int(round(math.log10(far_min))), 1)
  axes.frame([(10.0 ** e, f'1e{e}' if e else '1') for e in decades], np.linspace(0, 1, 6),
             'false accept rate (log)', 'true accept rate', title)
  colours = [PALETTE[k % len(PALETTE)] for k in range(len(curves))]
  for (far, tar), colour in zip(curves.values(), colours):
    far = np.maximum(np.asarray(far, np.float64), far_min)
    points = [(axes.x(f), axes.y(t)) for f, t in zip(far, np.asarray(tar, np.float64))]
    if len(points) > 1:
      draw.line(points, fill=colour, width=2)
  axes.legend(list(curves), colours)
  if path is not None:
    image.save(path)
  return image


def cmc_png(path, curves: Dict[str, Sequence[float]], title='CMC', size=(640, 420)):
  """Cumulative match characteristic curves: identification rate against rank (1-based)."""
  max_rank = max(len(c) for c in curves.values())
  lows = [float(np.min(c)) for c in curves.values()]
  y_lo = math.floor(min(lows) * 10) / 10
  y_lo = min(y_lo, 0.9)
  image = Image.new('RGB', size, 'white')
  draw = ImageDraw.Draw(image)
  axes = _Axes(draw, size, (1, max(max_rank, 2)), (y_lo, 1.0), log_x=max_rank > 20)
  ticks = [r for r in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if r <= max_rank] \
      if max_rank > 20 else list(range(1, max_rank + 1, max(1, max_rank // 10)))
  axes.frame([(r, str(r)) for r in ticks], np.linspace(y_lo, 1.0, 6), 'rank',
             'identification rate', title)
  colours = [PALETTE[k % len(PALETTE)] for k in range(len(curves))]
  for curve, colour in zip(curves.values(), colours):
    points = [(axes.x(r + 1), axes.y(v)) for r, v in enumerate(np.asarray(curve, np.float64))]
    if len(points) > 1:
      draw.line(points, fill=colour, width=2)
    else:
      draw.ellipse([points[0][0] - 3, points[0][1] - 3, points[0][0] + 3, points[0][1] + 3],
                   fill=colour)
  axes.legend(list(curves), colours)
  if path is not None:
    image.save(path)
  return image


def _value_range(values, pad=0.05):
  lo, hi = float(min(values)), float(max(values))
  if hi - lo < 1e-9:
    lo, hi = lo - 0.05, hi + 0.05
  span = hi - lo
  return max(0.0, lo - pad * span) if lo >= 0 else lo - pad * span, \
      min(1.0, hi + pad * span) if hi <= 1 else hi + pad * span


def errorbar_png(path, series: Dict[str, Sequence[Tuple[str, float, float]]], title='',
                 x_label='', y_label='', size=(640, 420)):
  """Mean +- std per category: {series name: [(x label, mean, std), ...]}, one line per series,
  categories in order of first appearance along the x axis."""
  labels = []
  for points in series.values():
    for x, _, _ in points:
      if x not in labels:
        labels.append(x)
  ends = [m + s for p in series.values() for _, m, s in p] + \
      [m - s for p in series.values() for _, m, s in p]
  y_lo, y_hi = _value_range(ends)
  image = Image.new('RGB', size, 'white')
  draw = ImageDraw.Draw(image)
  axes = _Axes(draw, size, (-0.5, len(labels) - 0.5), (y_lo, y_hi), log_x=False)
  axes.frame([(k, str(x)) for k, x in enumerate(labels)], np.linspace(y_lo, y_hi, 6), x_label,
             y_label, title)
  colours = [PALETTE[k % len(PALETTE)] for k in range(len(series))]
  for (name, points), colour in zip(series.items(), colours):
    xy = [(axes.x(labels.index(x)), axes.y(m)) for x, m, _ in points]
    if len(xy) > 1:
      draw.line(xy, fill=colour, width=2)
    for (x, m, s), (px, py) in zip(points, xy):
      draw.line([px, axes.y(m - s), px, axes.y(m + s)], fill=colour, width=1)
      draw.line([px - 5, axes.y(m - s), px + 5, axes.y(m - s)], fill=colour)
      draw.line([px - 5, axes.y(m + s), px + 5, axes.y(m + s)], fill=colour)
      draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
  axes.legend(list(series), colours)
  if path is not None:
    image.save(path)
  return image


def attributes_png(path, by_attribute: Dict[str, list], keys: Sequence[str], title='',
                   panel=(320, 230), columns=3):
  """One panel per attribute: each of `keys` (e.g. 'accuracy', 'tar@far=0.01') per bin.

  by_attribute: {attribute: [{'lo', 'hi', key: value or None, ...} per bin]}. Every panel shares
  one y range, from a tenth below the lowest value to 1.
  """
  names = list(by_attribute)
  rows = max(1, math.ceil(len(names) / columns))
  values = [b[k] for bins in by_attribute.values() for b in bins for k in keys
            if b.get(k) is not None]
  y_lo = min(math.floor(min(values + [1.0]) * 10) / 10, 0.9)
  image = Image.new('RGB', (panel[0] * columns, panel[1] * rows + 24), 'white')
  draw = ImageDraw.Draw(image)
  draw.text((8, 6), title, fill='black')
  colours = [PALETTE[k % len(PALETTE)] for k in range(len(keys))]
  for j, (key, colour) in enumerate(zip(keys, colours)):
    draw.text((panel[0] * columns - 260 + 120 * j, 6), key, fill=colour)
  for k, name in enumerate(names):
    bins = by_attribute[name]
    sub = Image.new('RGB', panel, 'white')
    sub_draw = ImageDraw.Draw(sub)
    axes = _Axes(sub_draw, panel, (-0.5, len(bins) - 0.5), (y_lo, 1.0), log_x=False,
                 margin=(40, 20, 10, 40))
    axes.frame([(j, f"{b['lo']:.3g}-{b['hi']:.3g}") for j, b in enumerate(bins)],
               np.linspace(y_lo, 1, 6), name, '', '')
    for key, colour in zip(keys, colours):
      xy = [(axes.x(j), axes.y(b[key])) for j, b in enumerate(bins) if b.get(key) is not None]
      if len(xy) > 1:
        sub_draw.line(xy, fill=colour, width=2)
      for px, py in xy:
        sub_draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
    image.paste(sub, ((k % columns) * panel[0], 24 + (k // columns) * panel[1]))
  if path is not None:
    image.save(path)
  return image
