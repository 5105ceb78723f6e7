"""Augmentation of rendered faces inside the train step: what a camera and a face detector do.

Rendered faces are clean: sharp, noise-free, perfectly aligned, with the renderer's own colours.
Real photographs are none of these, and a model that never saw a blurred, noisy, badly aligned or
JPEG-compressed face learns cues that do not survive a real camera. Each op below runs per example
with its own probability and strength (`config.synthetic.augment`), keyed by the example's key, so
a batch is reproducible from the step's key. All ops are pure and shape-static; `augment` is
vmapped over the batch and jitted with the step. Order, as in a camera pipeline:

    alignment jitter + flip -> low resolution -> blur (gaussian, defocus or motion)
      -> colour (brightness, contrast, gamma, saturation, white balance) -> grayscale
      -> occluder -> sensor noise -> JPEG-like block quantisation

Images are float [B, H, W, 3] in [-1, 1] (the generators' range) in and out; H and W must be
multiples of 8 for the JPEG op (every supported input size is a multiple of 16).
"""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

KINDS_OF_BLUR = ('gaussian', 'defocus', 'motion')
_BLUR_RADIUS = 3                 # 7 x 7 kernels.
_LOW_RES_FACTORS = (1.5, 2.0, 3.0, 4.0)


@dataclasses.dataclass(frozen=True)
class Augment:
  """Probabilities (p_*) and strengths of each op; every probability 0 means no augmentation."""
  flip: float = 0.0             # Horizontal flip probability.
  align: float = 0.0            # Probability of a detector-like alignment error:
  align_scale: float = 0.1      #   scale in [1 - s, 1 + s],
  align_shift: float = 0.05     #   shift up to this share of the image side,
  align_rotate: float = 10.0    #   rotation up to this many degrees.
  low_res: float = 0.0          # Downscale by 1.5, 2, 3 or 4 (area) and back up (bilinear).
  blur: float = 0.0             # Gaussian, defocus (disk) or motion (line) blur,
  blur_sigma: float = 1.5       #   up to this size in pixels (sigma, radius or half-length).
  colour: float = 0.0           # Brightness, contrast, gamma, saturation and white-balance jitter,
  colour_strength: float = 1.0  #   scaled by this.
  grayscale: float = 0.0
  occlude: float = 0.0          # A rectangle or ellipse of random colour over 5-25% of the face.
  noise: float = 0.0            # Gaussian read noise plus signal-dependent shot noise,
  noise_sigma: float = 0.04     #   up to this standard deviation (image range [0, 1]).
  jpeg: float = 0.0             # JPEG-like 8 x 8 DCT quantisation with 4:2:0 chroma,
  jpeg_quality: tuple = (20, 90)  # quality drawn in this range (libjpeg's scale).

  OPS = ('flip', 'align', 'low_res', 'blur', 'colour', 'grayscale', 'occlude', 'noise', 'jpeg')

  @classmethod
  def from_config(cls, block) -> 'Augment':
    """From a ConfigDict (or dict) with some of the fields above."""
    values = dict(block) if block is not None else {}
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f'config field synthetic.augment.{sorted(unknown)[0]}: not an augmentation '
                       f'option (known: {", ".join(f.name for f in dataclasses.fields(cls))})')
    if 'jpeg_quality' in values:
      values['jpeg_quality'] = tuple(values['jpeg_quality'])
    return cls(**values)

  def check(self):
    """Raises ValueError naming the first field out of range."""
    for name in self.OPS:
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f'config field synthetic.augment.{name}={value!r}: is a probability, in [0, 1]')
    for name, top in (('align_scale', 0.5), ('align_shift', 0.5), ('align_rotate', 90.0),
                      ('blur_sigma', float(_BLUR_RADIUS)), ('colour_strength', 3.0),
                      ('noise_sigma', 0.5)):
      value = getattr(self, name)
      if not 0.0 <= value <= top:
        raise ValueError(f'config field synthetic.augment.{name}={value!r}: must be in [0, {top}]')
    quality = tuple(self.jpeg_quality)
    if not (len(quality) == 2 and all(isinstance(q, (int, float)) for q in quality)
            and 1 <= quality[0] <= quality[1] <= 100):
      raise ValueError(f'config field synthetic.augment.jpeg_quality={self.jpeg_quality!r}: '
                       'must be (low, high) with 1 <= low <= high <= 100')

  @property
  def enabled(self) -> bool:
    return any(getattr(self, name) > 0 for name in self.OPS)


def augment(key, images, options: Augment):
  """Augmented copies of images [B, H, W, 3] in [-1, 1]; one independent key per example."""
  if not options.enabled:
    return images
  keys = jax.random.split(key, images.shape[0])
  x = jax.vmap(lambda k, im: augment_one(k, im, options))(keys, (images.astype(jnp.float32) + 1) / 2)
  return x * 2 - 1


def augment_one(key, x, options: Augment):
  """One image [H, W, 3] in [0, 1]. Each op draws from its own fold of `key`."""
  o = options
  # (probability that the op fires, op). Alignment jitter and flip draw their own firing inside
  # _align (either may fire alone), so it always runs when one of them is on.
  ops = (
      (1.0 if o.align > 0 or o.flip > 0 else 0.0, _align),
      (o.low_res, _low_res),
      (o.blur, _blur),
      (o.colour, _colour),
      (o.grayscale, lambda k, x, o: _grayscale(x)),
      (o.occlude, _occlude),
      (o.noise, _noise),
      (o.jpeg, _jpeg),
  )
  for index, (p, op) in enumerate(ops):
    if p <= 0:  # Static: ops switched off are not even traced.
      continue
    k_apply, k_op = jax.random.split(jax.random.fold_in(key, index))
    x = op(k_op, x, o) if p >= 1 else jnp.where(jax.random.bernoulli(k_apply, p), op(k_op, x, o), x)
  return jnp.clip(x, 0.0, 1.0)


def _uniform(key, low, high, shape=()):
  return jax.random.uniform(key, shape, jnp.float32, low, high)


def bilinear_sample(x, xs, ys):
  """x [H, W, C] read at pixel coordinates xs, ys [H', W'] (bilinear, edges extended)."""
  h, w = x.shape[:2]
  xs = jnp.clip(xs, 0.0, w - 1.0)
  ys = jnp.clip(ys, 0.0, h - 1.0)
  x0 = jnp.clip(jnp.floor(xs), 0, w - 2).astype(jnp.int32)
  y0 = jnp.clip(jnp.floor(ys), 0, h - 2).astype(jnp.int32)
  fx = (xs - x0)[..., None]
  fy = (ys - y0)[..., None]
  top = x[y0, x0] * (1 - fx) + x[y0, x0 + 1] * fx
  bottom = x[y0 + 1, x0] * (1 - fx) + x[y0 + 1, x0 + 1] * fx
  return top * (1 - fy) + bottom * fy


def _align(key, x, o):
  """A similarity transform about the centre (a detector's error) and/or a horizontal flip."""
  h, w = x.shape[:2]
  k_fire, k_flip, k_s, k_r, k_t = jax.random.split(key, 5)
  fire = jax.random.bernoulli(k_fire, o.align)
  scale = jnp.where(fire, _uniform(k_s, 1 - o.align_scale, 1 + o.align_scale), 1.0)
  angle = jnp.where(fire, _uniform(k_r, -1.0, 1.0) * math.radians(o.align_rotate), 0.0)
  shift = jnp.where(fire, _uniform(k_t, -1.0, 1.0, (2,)) * o.align_shift * jnp.array([w, h]), 0.0)
  flip = jax.random.bernoulli(k_flip, o.flip)
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing='ij')
  cx, cy = (w - 1) / 2, (h - 1) / 2
  # Output pixel -> source pixel: undo the shift, the rotation and the scale about the centre.
  dx, dy = xs - cx - shift[0], ys - cy - shift[1]
  cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
  sx = cos * dx + sin * dy
  sy = -sin * dx + cos * dy
  sx = jnp.where(flip, -sx, sx)
  return bilinear_sample(x, sx + cx, sy + cy)


def _linear_resize_matrix(n: int, m: int, antialias: bool) -> np.ndarray:
  """[m, n] float64: resizing a length-n signal to length m with the triangle (linear) kernel,
  half-pixel centres, the kernel widened by n / m when shrinking and antialias (the weights
  jax.image.resize uses; numpy, so that building them inside a trace compiles nothing)."""
  scale = m / n
  width = max(1.0 / scale, 1.0) if antialias else 1.0
  centres = (np.arange(m) + 0.5) / scale - 0.5            # Output pixel -> input coordinate.
  weights = np.maximum(0.0, 1.0 - np.abs(centres[:, None] - np.arange(n)[None, :]) / width)
  total = weights.sum(axis=1, keepdims=True)
  usable = total > 1000 * np.finfo(np.float32).eps
  weights = np.where(usable, weights / np.where(total, total, 1), 0)
  inside = (centres >= -0.5) & (centres <= n - 0.5)
  return np.where(inside[:, None], weights, 0.0)


@functools.lru_cache(maxsize=None)
def resampling_matrices(n: int):
  """[len(_LOW_RES_FACTORS), n, n] float32: for each factor, the matrix that downscales a length-n
  signal by it (antialiased, as jax.image.resize does) and upscales it back bilinearly."""
  out = []
  for f in _LOW_RES_FACTORS:
    small = max(int(round(n / f)), 4)
    up = _linear_resize_matrix(small, n, antialias=False)
    down = _linear_resize_matrix(n, small, antialias=True)
    out.append(up @ down)
  return np.stack(out).astype(np.float32)


def low_resolution(x, choice):
  """x [H, W, C] downscaled by _LOW_RES_FACTORS[choice] and upscaled back: two small matrix
  products per image (only the chosen factor is computed)."""
  h, w = x.shape[:2]
  rows = jnp.asarray(resampling_matrices(h))[choice]
  cols = jnp.asarray(resampling_matrices(w))[choice]
  return jnp.einsum('wv,hvc->hwc', cols, jnp.einsum('hu,uwc->hwc', rows, x))


def _low_res(key, x, o):
  """Downscaled (antialiased) by a random factor and upscaled back bilinearly."""
  del o
  return low_resolution(x, jax.random.randint(key, (), 0, len(_LOW_RES_FACTORS)))


def _filter2d(x, kernel):
  """x [H, W, C] correlated with kernel [K, K] (odd K, edges extended) as a sum of shifts."""
  k = kernel.shape[0]
  r = k // 2
  h, w = x.shape[:2]
  padded = jnp.pad(x, ((r, r), (r, r), (0, 0)), mode='edge')
  out = jnp.zeros_like(x)
  for i in range(k):
    for j in range(k):
      out = out + kernel[i, j] * padded[i:i + h, j:j + w]
  return out


def blur_kernel(kind, size, angle):
  """A normalised [7, 7] kernel: 'gaussian' (sigma = size), 'defocus' (disk of radius size) or
  'motion' (line of half-length size at `angle` radians). kind is an index into KINDS_OF_BLUR."""
  r = _BLUR_RADIUS
  yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
  size = jnp.maximum(size, 0.3)
  gaussian = jnp.exp(-(xx ** 2 + yy ** 2) / (2 * size ** 2))
  # Anti-aliased disk: full weight inside the radius, a linear ramp over the last pixel.
  disk = jnp.clip(size + 0.5 - np.sqrt(xx ** 2 + yy ** 2), 0.0, 1.0)
  along = xx * jnp.cos(angle) + yy * jnp.sin(angle)
  across = -xx * jnp.sin(angle) + yy * jnp.cos(angle)
  line = jnp.clip(1.0 - jnp.abs(across), 0.0, 1.0) * jnp.clip(size + 0.5 - jnp.abs(along), 0.0, 1.0)
  kernel = jnp.stack([gaussian, disk, line])[kind]
  return kernel / jnp.sum(kernel)


def _blur(key, x, o):
  k_kind, k_size, k_angle = jax.random.split(key, 3)
  kind = jax.random.randint(k_kind, (), 0, len(KINDS_OF_BLUR))
  size = _uniform(k_size, 0.4, 1.0) * o.blur_sigma
  return _filter2d(x, blur_kernel(kind, size, _uniform(k_angle, 0.0, math.pi)))


def _luma(x):
  return x @ jnp.array([0.299, 0.587, 0.114], x.dtype)


def _grayscale(x):
  return jnp.broadcast_to(_luma(x)[..., None], x.shape)


def _colour(key, x, o):
  """Camera and lighting colour changes: each a random amount times colour_strength."""
  s = o.colour_strength
  k_b, k_c, k_g, k_s, k_w = jax.random.split(key, 5)
  gain = jnp.exp(0.08 * s * jax.random.normal(k_w, (3,)))   # White balance.
  x = x * gain / jnp.mean(gain)
  gamma = jnp.exp(_uniform(k_g, -0.35, 0.35) * s)
  x = jnp.clip(x, 0.0, 1.0) ** gamma
  mean = jnp.mean(_luma(x))
  x = mean + (x - mean) * jnp.exp(_uniform(k_c, -0.4, 0.3) * s)   # Contrast.
  grey = _luma(x)[..., None]
  x = grey + (x - grey) * jnp.exp(_uniform(k_s, -0.6, 0.3) * s)    # Saturation.
  return x + _uniform(k_b, -0.12, 0.12) * s                         # Brightness.


def _occlude(key, x, o):
  """A flat or textured rectangle or ellipse (a hand, a microphone, a scarf, a sticker)."""
  del o
  h, w = x.shape[:2]
  k_area, k_aspect, k_pos, k_shape, k_colour, k_tex = jax.random.split(key, 6)
  area = _uniform(k_area, 0.05, 0.25) * h * w
  aspect = jnp.exp(_uniform(k_aspect, -0.8, 0.8))
  half_h = jnp.sqrt(area * aspect) / 2
  half_w = jnp.sqrt(area / aspect) / 2
  centre = _uniform(k_pos, 0.0, 1.0, (2,)) * jnp.array([h, w])
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) + 0.5,
                        jnp.arange(w, dtype=jnp.float32) + 0.5, indexing='ij')
  dy, dx = (ys - centre[0]) / half_h, (xs - centre[1]) / half_w
  ellipse = jax.random.bernoulli(k_shape)
  inside = jnp.where(ellipse, dx ** 2 + dy ** 2 <= 1.0, (jnp.abs(dx) <= 1) & (jnp.abs(dy) <= 1))
  colour = _uniform(k_colour, 0.0, 1.0, (3,))
  texture = colour + 0.08 * jax.random.normal(k_tex, (h, w, 1))
  return jnp.where(inside[..., None], texture, x)


def _noise(key, x, o):
  k_read, k_shot, k_n = jax.random.split(key, 3)
  read = _uniform(k_read, 0.1, 1.0) * o.noise_sigma
  shot = _uniform(k_shot, 0.0, 1.0) * o.noise_sigma
  sigma = jnp.sqrt(read ** 2 + shot ** 2 * jnp.clip(x, 0.0, 1.0))
  return x + sigma * jax.random.normal(k_n, x.shape)


# libjpeg's base quantisation tables (ITU T.81, Annex K), luminance and chrominance.
_Q_LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float32)
_Q_CHROMA = np.full((8, 8), 99, np.float32)
_Q_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def dct_matrix(n=8):
  """The orthonormal DCT-II matrix D [n, n]: coefficients = D @ block @ D.T."""
  k, i = np.mgrid[:n, :n].astype(np.float64)
  d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
  d[0] /= np.sqrt(2.0)
  return d.astype(np.float32)


def quality_scale(quality):
  """libjpeg's quality -> table scale: 50/q below 50, 2 - q/50 above."""
  return jnp.where(quality < 50, 50.0 / quality, 2.0 - quality / 50.0)


def jpeg_like(x, quality):
  """x [H, W, 3] in [0, 1] through YCbCr, 4:2:0 chroma, 8 x 8 DCT quantisation and back."""
  h, w = x.shape[:2]
  rgb_to_ycc = jnp.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]])
  ycc = x * 255.0 @ rgb_to_ycc.T + jnp.array([-128.0, 0.0, 0.0])
  d = jnp.asarray(dct_matrix())
  scale = quality_scale(quality)

  def code(plane, table):
    ph, pw = plane.shape
    blocks = plane.reshape(ph // 8, 8, pw // 8, 8).transpose(0, 2, 1, 3)
    q = jnp.maximum(jnp.floor(table * scale + 0.5), 1.0)
    coeffs = jnp.round(d @ blocks @ d.T / q) * q
    return (d.T @ coeffs @ d).transpose(0, 2, 1, 3).reshape(ph, pw)

  luma = code(ycc[..., 0], _Q_LUMA)
  chroma = []
  for c in (1, 2):
    plane = ycc[..., c]
    if h % 16 == 0 and w % 16 == 0:  # 4:2:0: chroma at half resolution.
      small = plane.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
      plane = jnp.repeat(jnp.repeat(code(small, _Q_CHROMA), 2, 0), 2, 1)
    else:
      plane = code(plane, _Q_CHROMA)
    chroma.append(plane)
  ycc = jnp.stack([luma + 128.0] + chroma, -1)
  ycc_to_rgb = jnp.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])
  return ycc @ ycc_to_rgb.T / 255.0


def _jpeg(key, x, o):
  lo, hi = o.jpeg_quality
  return jpeg_like(x, _uniform(key, float(lo), float(hi) + 1e-3))
