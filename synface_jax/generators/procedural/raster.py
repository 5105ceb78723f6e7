"""A z-buffered rasteriser for meshes of small polygons, written for vectorised CPU execution.

Visibility: every polygon (a triangle, or a convex quad) tests the pixel centres in a `window` x
`window` block at the top-left corner of its bounding box, and writes a packed key (quantised depth
in the high bits, polygon id in the low bits) into a per-pixel scatter-min: the nearest covering
polygon wins. Polygons should be smaller than `window` pixels across; single-pixel holes left by
larger ones (up to two pixels wide) are filled from their neighbours.

Interpolation: each pixel recomputes barycentric weights in its polygon from the projected corners,
so whatever is interpolated is differentiable with respect to vertex positions (visibility itself
is piecewise constant). Pixel centres are at integer coordinates (x right, y down).
"""
import jax
import jax.numpy as jnp
import numpy as np

_EMPTY = np.iinfo(np.int32).max
_BORDER = _EMPTY - 1  # Above every key (keys quantise depth to at most 2^31 - 2, see visibility).


def unfused(fn, operands, anchor):
  """fn(operands), with the operands computed in full before fn reads them.

  XLA fuses elementwise producers into their consumers, recomputing them per element read; fused
  into a serial scatter loop, a gather or a channel-interleaving copy, a large producer graph runs
  many times slower (and optimisation barriers do not survive CPU compilation). A conditional is a
  boundary fusion cannot cross. Its predicate, anchor == anchor, holds for any finite runtime
  value; the other branch (zeros) only keeps the compiler from folding the conditional away.
  """
  zeros = lambda ops: jax.tree.map(jnp.zeros_like, fn(ops))
  return jax.lax.cond(anchor == anchor, fn, zeros, operands)


def pixel_centres(height: int, width: int):
  """(x [H * W], y [H * W]) float32 pixel centres, row-major."""
  ys, xs = np.divmod(np.arange(height * width), width)
  return xs.astype(np.float32), ys.astype(np.float32)


def _min4(a):
  return jnp.minimum(jnp.minimum(a[0], a[1]), jnp.minimum(a[2], a[3])) if len(a) == 4 else (
      jnp.minimum(jnp.minimum(a[0], a[1]), a[2]))


def _fill_holes(zbuf, gap=None, reach: int = 2):
  """Gives a pixel the nearest key of its neighbours when covered pixels surround it on two
  opposite sides, each within `reach` pixels (gaps up to 2 * reach - 1 wide close), and it is
  empty, or (with `gap`, in key units) it sees something farther than both sides by more than gap:
  a surface behind, through a crack between polygons seen edge-on.

  Beyond the image border lies a sentinel key that counts as covered but loses to every real key,
  so holes along the border fill too (from the inside).
  """
  height, width = zbuf.shape[1:]
  pad = jnp.pad(zbuf, ((0, 0), (reach, reach), (reach, reach)), constant_values=_BORDER)
  at = lambda dy, dx: pad[:, reach + dy:reach + dy + height, reach + dx:reach + dx + width]
  full = lambda a: a != _EMPTY

  def side(dy, dx):
    """The key of the nearest covered pixel in direction (dy, dx), within reach (or empty)."""
    key = at(dy, dx)
    for k in range(2, reach + 1):
      key = jnp.where(full(key), key, at(k * dy, k * dx))
    return key

  up, down, left, right = side(-1, 0), side(1, 0), side(0, -1), side(0, 1)
  enclosed = (full(up) & full(down)) | (full(left) & full(right))
  nearest = jnp.minimum(jnp.minimum(up, down), jnp.minimum(left, right))
  hole = zbuf == _EMPTY
  if gap is not None:
    real = lambda a: full(a) & (a != _BORDER)
    behind = lambda a, b: real(a) & real(b) & (zbuf - jnp.maximum(a, b) > gap)
    hole = hole | behind(up, down) | behind(left, right)
  return jnp.where(hole & enclosed, nearest, zbuf)


def visibility(corner_x, corner_y, depth, height: int, width: int, window: int = 2,
               cull_back: bool = True, fill_holes: bool = True, depth_range=None, valid=None,
               see_through=None):
  """The nearest polygon covering each pixel centre.

  Args:
    corner_x, corner_y: lists of K planes [B, P], the pixel coordinates of the polygon corners in
      order (K = 3 or 4; quads must be convex).
    depth: [B, P] distance of each polygon from the camera (smaller is nearer).
    height, width: image size.
    window: side of the block of pixel centres each polygon may cover.
    cull_back: ignore polygons facing away, for meshes wound counter-clockwise seen from outside
      (front-facing polygons have a negative signed area in pixel axes, y down).
    fill_holes: fill single empty pixels enclosed by covered ones.
    depth_range: (near, far) bounds of the depth for the key; per image min and max by default.
    valid: optional bool [P], False for polygon ids that are not polygons (never drawn).
    see_through: with fill_holes, a depth difference: a pixel that sees a polygon farther than
      this behind the polygons on two opposite sides of it takes the nearer one instead (thin
      polygons seen edge-on can miss pixel centres and let a surface behind show through).

  Returns:
    (polygon_ids int32 [B, H * W], hit bool [B, H * W]); ids are 0 where nothing was hit.
  """
  corner_x = [jax.lax.stop_gradient(x) for x in corner_x]
  corner_y = [jax.lax.stop_gradient(y) for y in corner_y]
  depth = jax.lax.stop_gradient(depth)
  batch, num_polys = depth.shape
  k_corners = len(corner_x)
  index_bits = max(1, int(np.ceil(np.log2(num_polys + 1))))
  depth_bits = 31 - index_bits
  if depth_bits < 10:
    raise ValueError(f'too many polygons ({num_polys}) to pack with a depth key')
  pixels = height * width

  if depth_range is None:
    lo = jnp.min(depth, axis=1, keepdims=True)
    hi = jnp.max(depth, axis=1, keepdims=True)
  else:
    lo, hi = depth_range
  top = (1 << depth_bits) - 2
  quant = jnp.clip((depth - lo) / jnp.maximum(hi - lo, 1e-6) * top, 0, top).astype(jnp.int32)
  keys = (quant << index_bits) | jnp.arange(num_polys, dtype=jnp.int32)
  gap = None  # see_through in key units, per image.
  if see_through is not None:
    gap = jnp.asarray(see_through / jnp.maximum(hi - lo, 1e-6) * top, jnp.int32) << index_bits
    gap = jnp.reshape(gap, (-1, 1, 1))

  # The candidate pixels of every polygon, one [B * P] array per offset of the window (each its
  # own fused loop). Edge k runs from corner k to k + 1; inside the polygon cross(edge_k, p -
  # corner_k) has the sign of the polygon's signed area for every k.
  nxt = lambda k: (k + 1) % k_corners
  area = sum(corner_x[k] * corner_y[nxt(k)] - corner_x[nxt(k)] * corner_y[k] for k in range(k_corners))
  sign = jnp.where(area < 0, 1.0, -1.0)
  drawn = (area < 0) if cull_back else (area != 0)
  if valid is not None:
    drawn = drawn & np.asarray(valid)[None, :]
  left, top = jnp.ceil(_min4(corner_x)), jnp.ceil(_min4(corner_y))
  base = (jnp.arange(batch, dtype=jnp.int32) * pixels)[:, None]
  candidates = []
  for dy in range(window):
    for dx in range(window):
      px, py = left + dx, top + dy
      inside = drawn & (px >= 0) & (px < width) & (py >= 0) & (py < height)
      for k in range(k_corners):
        e = ((corner_x[nxt(k)] - corner_x[k]) * (py - corner_y[k])
             - (corner_y[nxt(k)] - corner_y[k]) * (px - corner_x[k]))
        inside = inside & (sign * e <= 1e-6)
      flat = base + py.astype(jnp.int32) * width + px.astype(jnp.int32)
      candidates.append(jnp.where(inside, flat, batch * pixels).reshape(-1))

  def scatter(operands):
    # One scatter-min per window offset, so the keys are read in place (never broadcast), into a
    # buffer with one extra slot that takes every rejected candidate (no bounds checks).
    candidates, keys = operands
    zbuf = jnp.full((batch * pixels + 1,), _EMPTY, jnp.int32)
    numbers = jax.lax.ScatterDimensionNumbers(
        update_window_dims=(), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,))
    for c in candidates:
      zbuf = jax.lax.scatter_min(zbuf, c[:, None], keys.reshape(-1), numbers,
                                 mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)
    return zbuf[:-1]

  zbuf = unfused(scatter, (candidates, keys), depth[0, 0])
  zbuf = zbuf.reshape(batch, height, width)
  if fill_holes:
    # Each pass is materialised: fused, the second would redo the first for every neighbour it
    # reads, and the ids and the hit mask would each redo both.
    fill = lambda ops: _fill_holes(*ops)
    for _ in range(2):
      zbuf = unfused(fill, (zbuf, gap), depth[0, 0])
  zbuf = zbuf.reshape(batch, pixels)
  hit = zbuf != _EMPTY
  return jnp.where(hit, zbuf & ((1 << index_bits) - 1), 0), hit


def barycentric(corner_x, corner_y, px, py):
  """Barycentric weights of pixels in their polygons, split into the fan (0, k, k + 1).

  Args:
    corner_x, corner_y: lists of K planes [...], the corners of each pixel's polygon.
    px, py: planes [...] (or broadcastable), the pixel centres.

  Returns:
    K weight planes (non-negative, summing to 1) from the fan triangle that contains the pixel
    best; pixels outside their polygon get the clipped weights of the nearest triangle.
  """
  k_corners = len(corner_x)
  best, best_score = None, None
  for k in range(1, k_corners - 1):
    ax, ay = corner_x[0], corner_y[0]
    bx, by = corner_x[k], corner_y[k]
    cx, cy = corner_x[k + 1], corner_y[k + 1]
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    inv = 1.0 / jnp.where(jnp.abs(area) > 1e-9, area, 1e-9)
    wa = ((bx - px) * (cy - py) - (by - py) * (cx - px)) * inv
    wb = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) * inv
    wc = 1.0 - wa - wb
    w = [jnp.zeros_like(wa)] * k_corners
    w[0], w[k], w[k + 1] = wa, wb, wc
    score = jnp.minimum(jnp.minimum(wa, wb), wc)
    if best is None:
      best, best_score = w, score
    else:
      take = score > best_score
      best = [jnp.where(take, n, o) for n, o in zip(w, best)]
      best_score = jnp.maximum(score, best_score)
  best = [jnp.maximum(w, 0.0) for w in best]
  total = sum(best)
  inv = 1.0 / jnp.maximum(total, 1e-9)
  return [w * inv for w in best]


def quad_coords(corner_x, corner_y, px, py):
  """Coordinates of pixels in their quads, from the quad's mean parallelogram.

  Args:
    corner_x, corner_y: lists of 4 planes [...], the corners (r, c), (r + 1, c), (r + 1, c + 1),
      (r, c + 1) of each pixel's quad.
    px, py: planes [...] (or broadcastable), the pixel centres.

  Returns:
    (s, t) planes in [0, 1], the pixel's position along the quad's row and column directions (its
    bilinear weights are (1 - s)(1 - t), s(1 - t), st, (1 - s)t). Exact for parallelograms and
    close for the small, nearly flat quads of a fine grid; far cheaper than inverting the bilinear
    map (one reciprocal per pixel).
  """
  x0, x1, x2, x3 = corner_x
  y0, y1, y2, y3 = corner_y
  rx, ry = 0.5 * (x1 - x0 + x2 - x3), 0.5 * (y1 - y0 + y2 - y3)
  cx, cy = 0.5 * (x3 - x0 + x2 - x1), 0.5 * (y3 - y0 + y2 - y1)
  dx = px - 0.25 * (x0 + x1 + x2 + x3)
  dy = py - 0.25 * (y0 + y1 + y2 + y3)
  det = rx * cy - ry * cx
  inv = 1.0 / jnp.where(jnp.abs(det) > 1e-9, det, 1e-9)
  s = jnp.clip(0.5 + (dx * cy - dy * cx) * inv, 0.0, 1.0)
  t = jnp.clip(0.5 + (rx * dy - ry * dx) * inv, 0.0, 1.0)
  return s, t
