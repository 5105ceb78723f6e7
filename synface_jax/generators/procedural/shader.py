"""Per-pixel albedo of the procedural head, painted on the (u, v) texture plane in two passes.

`layers` computes, once per pixel, the scalar planes that say where each material is and how it is
shaded: skin shading, eyes (sclera, iris, pupil, catchlight, lids), brows, facial hair,
lips and the inside of the mouth, scalp hair. `colour` mixes the per-image colours of those
materials with them, channel by channel. The renderer materialises the layers between the two, so
the masks shared by the three channels are evaluated once (XLA would otherwise recompute the
whole graph for every channel). The broad skin tints depend on (u, v) only through smooth region
weights (`skin_regions`), so the renderer evaluates them per polygon. Inputs are planes [B, N]
(N pixels) and per-image parameters [B, 1] / [B, 3] from `texture.decode` and `eye_state`; the
albedo is three planes in [0, 1].
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from synface_jax.generators.procedural import fields as f
from synface_jax.generators.procedural.texture import PATTERN_REGIONS

_SCLERA = (0.86, 0.82, 0.79)
_CARUNCLE = (0.75, 0.45, 0.42)
_TEETH = (0.95, 0.92, 0.84)
_THROAT = (0.16, 0.05, 0.05)
# Per-channel change of the skin under blush and on the ears.
_BLUSH_TINT = (0.6, -0.5, -0.5)
_EAR_TINT = (0.06, -0.03, -0.03)


class Layers(NamedTuple):
  """Scalar planes [B, N] of the albedo, in the order `colour` applies them."""
  skin_shade: jax.Array  # cavities, nostrils, lids, eye shadow, stubble, age lines, freckles, moles
  eye: jax.Array     # the eye aperture
  sclera: jax.Array  # shading of the white of the eye
  iris: jax.Array
  ring: jax.Array    # shading of the iris
  pupil: jax.Array
  glint: jax.Array
  caruncle: jax.Array
  brow: jax.Array
  beard: jax.Array
  beard_tex: jax.Array
  lip: jax.Array
  lip_shine: jax.Array
  lip_line: jax.Array
  mouth: jax.Array   # the inside of the mouth (on the fold rows)
  teeth: jax.Array
  teeth_shade: jax.Array
  lip_edge: jax.Array
  frame: jax.Array   # spectacle frames (rims, bridge, arms)
  hair: jax.Array
  hair_tex: jax.Array


def blob(u, v, cu, cv, su, sv):
  """A cheap compact bump: (1 - r^2)^2 inside the ellipse of radii (su, sv), 0 outside."""
  inside = f.xp(u, v).maximum(1.0 - f.ellipse(u, v, cu, cv, su, sv), 0.0)
  return inside * inside


def _mix(base, colour, weight):
  """base * (1 - weight) + colour * weight for 3-tuples (of planes, columns or numbers)."""
  return tuple(b * (1 - weight) + c * weight for b, c in zip(base, colour))


def _rgb(colour):
  """[B, 3] -> three [B, 1] columns."""
  return tuple(colour[:, i:i + 1] for i in range(3))


def eye_state(expression):
  """Eye openness [B, 1] and gaze (u, v) offsets [B, 1] from expression coefficients [B, 64]."""
  blink, squint, wide = expression[:, 4:5], expression[:, 5:6], expression[:, 14:15]
  openness = jnp.clip(1.0 - 0.55 * jnp.maximum(blink, 0.0) - 0.2 * squint + 0.15 * wide, 0.05, 1.3)
  gaze_u = 0.02 * jnp.tanh(expression[:, 20:21])
  gaze_v = 0.012 * jnp.tanh(expression[:, 21:22])
  return openness, gaze_u, gaze_v


def skin_regions(u, v):
  """Weights of the skin's tint regions at texture coordinates (u, v): one plane per albedo
  pattern region (`PATTERN_REGIONS`), then the blush and the ears. They depend on (u, v) alone."""
  a = f.xp(u, v).abs(u)
  weights = [blob(a, v, *region) for region in PATTERN_REGIONS]
  blush = blob(a, v, 0.42, -0.3, 0.17, 0.15) + 0.6 * blob(u, v, 0.0, -0.33, 0.07, 0.08)
  return weights + [blush, blob(a, v, f.EAR_U, f.EAR_V, 0.22, 0.33)]


def skin_tint(regions, p):
  """Relative change of the skin colour (3 planes) from the region weights [R, ...] (as
  `skin_regions`, stacked on a leading axis) and the identity's patterns and blush."""
  weights, blush, ear = regions[:-2], regions[-2], regions[-1]
  # Region weights shared by the batch ([R, P], per polygon) or per image ([R, B, N]); a sum of
  # products rather than a matrix product, so it fuses into its consumer.
  pattern = lambda c: sum(p['patterns'][:, k, c:c + 1] * w for k, w in enumerate(weights))
  blush = p['blush'] * blush
  return tuple(pattern(c) + _BLUSH_TINT[c] * blush + _EAR_TINT[c] * ear for c in range(3))


def _cavity(u, v):
  """Shading of cavities that skylight reaches less (inner eye and mouth corners, under the lip and
  the jaw, the ears), a factor in (0, 1]."""
  a = jnp.abs(u)
  dark = (0.25 * blob(a, v, 0.16, 0.0, 0.07, 0.07) + 0.3 * blob(a, v, f.MOUTH_U + 0.01, f.MOUTH_V, 0.04, 0.035)
          + 0.18 * blob(u, v, 0.0, -0.875, 0.16, 0.04) + 0.15 * blob(a, v, 0.3, -0.5, 0.06, 0.14)
          + 0.35 * blob(a, v, f.EAR_U - 0.02, f.EAR_V - 0.05, 0.09, 0.12))
  under_jaw = f.smoothstep(-1.0, -1.25, v) * 0.3 * f.smoothstep(2.2, 1.0, a)
  return 1.0 - dark - under_jaw


def _nose(u, v):
  """Darkening of the nostrils and the creases around the nose wings."""
  a = jnp.abs(u)
  # Soft ovals a couple of pixels across: small hard ones alias into stray dark pixels.
  nostril = blob(a, v, 0.052, -0.448, 0.04, 0.022)
  crease = blob(a, v, 0.13, -0.425, 0.035, 0.05) * (1 - blob(a, v, 0.11, -0.425, 0.03, 0.04))
  under = blob(u, v, 0.0, -0.465, 0.1, 0.02)
  return 1.0 - 0.62 * nostril - 0.2 * crease - 0.12 * under


class _EyeFrame(NamedTuple):
  du: jax.Array   # from the eye centre, mirrored (positive towards the ear)
  dv: jax.Array
  s: jax.Array    # -1 .. 1 across the eye
  top: jax.Array  # lid heights
  bottom: jax.Array
  width: jax.Array


def _eye_frame(u, v, p, openness):
  du = jnp.abs(u) - f.EYE_U
  dv = v - f.EYE_V
  width = p['eye_width']
  s = jnp.clip(du / width, -1.0, 1.0)
  across = jnp.maximum(1.0 - s * s, 1e-4)  # kept off 0 so roots have finite gradients
  tilt = p['eye_tilt'] * s
  root = jnp.sqrt(across)
  top = 0.047 * p['eye_open'] * openness * root * (1 + 0.15 * s * (s < 0)) + tilt - 0.004
  bottom = -0.03 * p['eye_open'] * root * jnp.sqrt(root) + tilt * 0.6 - 0.004
  return _EyeFrame(du, dv, s, top, jnp.minimum(bottom, top - 1e-3), width)


def _eye_layers(u, v, p, openness, gaze_u, gaze_v):
  e = _eye_frame(u, v, p, openness)
  edge = 0.004
  inside = f.smoothstep(-edge, edge, e.top - e.dv) * f.smoothstep(-edge, edge, e.dv - e.bottom)
  inside = inside * f.smoothstep(1.0, 0.93, jnp.abs(e.du / e.width))
  # Sclera, shadowed under the upper lid and towards the corners.
  sclera = 1.0 - 0.45 * f.smoothstep(-0.025, 0.0, e.dv - e.top) - 0.3 * e.s ** 4
  # Iris, pupil and catchlight; the iris turns with the gaze (mirrored so both eyes look alike).
  side = jnp.sign(u)
  iu = e.du - side * gaze_u
  iv = e.dv - gaze_v + 0.003
  r = jnp.sqrt(iu * iu + iv * iv + 1e-9)
  iris_r = 0.05
  iris = f.smoothstep(iris_r + 0.003, iris_r - 0.003, r)
  ring = (1.0 - 0.5 * f.smoothstep(0.6 * iris_r, iris_r, r)) * (1.0 - 0.35 * f.smoothstep(0.01, -0.02, e.dv - e.top))
  pupil = f.smoothstep(0.021, 0.016, r)
  glint = blob(iu, iv, -0.014 * side, 0.016, 0.009, 0.009)
  caruncle = blob(e.du, e.dv, -e.width + 0.012, -0.004, 0.018, 0.014)
  return inside, sclera, iris, ring, pupil, glint, caruncle


def _lids(u, v, p, openness):
  """Darkening of the skin around the eye: lash lines, crease, eye shadow."""
  e = _eye_frame(u, v, p, openness)
  along = f.smoothstep(1.12, 0.95, jnp.abs(e.du / e.width))
  above = e.dv - e.top
  lash = f.smoothstep(0.0, 0.004, above) * f.smoothstep(0.014 + 0.004 * (e.s > 0), 0.006, above) * along
  below = e.bottom - e.dv
  lower_lash = f.smoothstep(0.0, 0.002, below) * f.smoothstep(0.008, 0.003, below) * along
  crease = blob(above, e.s, 0.032, 0.0, 0.01, 1.1)
  lid = 1.0 - 0.85 * lash - 0.35 * lower_lash - 0.18 * crease
  return lid * (1.0 - p['eye_shadow'] * blob(e.du, e.dv, -0.01, 0.03, 0.22, 0.13))


def _brow(u, v, p):
  t = (jnp.abs(u) - 0.12) / 0.44
  centre = p['brow_height'] + p['brow_arch'] * (1 - jnp.square(2 * t - 1.1)) + p['brow_tilt'] * (t - 0.4)
  thick = p['brow_thick'] * (1.15 - 0.55 * f.smoothstep(0.3, 1.0, t))
  d = jnp.abs(v - centre) / thick
  mask = f.smoothstep(1.0, 0.4, d) * f.smoothstep(-0.04, 0.08, t) * f.smoothstep(1.05, 0.88, t)
  # Sparser at the inner end and towards the edges, with a little hair texture.
  density = (0.75 + 0.25 * f.smoothstep(0.0, 0.3, t)) * (0.9 + 0.1 * f.wave(23.0 * t + 9.0 * v))
  return p['brow_dark'] * mask * density


def _skin_marks(u, v, p):
  """Shading of identity skin detail: age lines (forehead, nasolabial folds, under the eyes),
  freckles over the cheeks and nose, and a mole."""
  a = jnp.abs(u)
  forehead = blob(a, v, 0.0, 0.45, 0.42, 0.16) * f.smoothstep(0.0, 0.6, f.wave(26.0 * v + 0.4 * f.wave(2.1 * u)))
  fold_v = -0.36 - 1.3 * (a - 0.17)
  nasolabial = blob(a, v, 0.3, -0.55, 0.12, 0.2) * blob(v - fold_v, 0.0, 0.0, 0.0, 0.035, 1.0)
  bags = blob(a, v, f.EYE_U, -0.1, 0.12, 0.035)
  lines = 1.0 - p['wrinkles'] * (0.08 * forehead + 0.16 * nasolabial + 0.1 * bags)
  spots = jnp.maximum(f.wave(37.0 * u + 3.1 * f.wave(5.3 * v)) * f.wave(41.0 * v + 2.3 * f.wave(7.1 * u)) - 0.5, 0.0)
  freckles = p['freckles'] * jnp.minimum(4.0 * spots, 1.0) * blob(a, v, 0.25, -0.25, 0.5, 0.35)
  mole = p['mole'] * blob(u, v, p['mole_u'], p['mole_v'], 0.016, 0.016)
  return lines * (1.0 - 0.3 * freckles) * (1.0 - 0.5 * mole)


def _glasses(u, v, p):
  """Coverage of spectacle frames: rounded rectangular rims around the eyes, a bridge and arms
  running back to the ears, drawn on the surface."""
  a = jnp.abs(u)
  size = p['frame_size']
  width = p['frame_width']
  du = (a - f.EYE_U) / (0.155 * size)
  dv = (v - f.EYE_V - 0.01) / (0.105 * size)
  q = du * du * du * du + dv * dv * dv * dv  # A superellipse: a rectangle with round corners.
  d = jnp.sqrt(jnp.sqrt(q))
  rim = f.smoothstep(width * 1.4, width * 0.6, jnp.abs(d - 1.0) * 0.13 * size)
  bridge = (f.smoothstep(f.EYE_U - 0.13 * size, f.EYE_U - 0.16 * size, a)
            * f.smoothstep(width, 0.3 * width, jnp.abs(v - f.EYE_V - 0.045 - 0.25 * a * a)))
  arm_v = f.EYE_V + 0.04 - 0.03 * (a - 0.47)
  arm = (f.smoothstep(f.EYE_U + 0.14 * size, f.EYE_U + 0.16 * size, a) * f.smoothstep(1.7, 1.55, a)
         * f.smoothstep(0.8 * width, 0.3 * width, jnp.abs(v - arm_v)))
  return p['glasses'] * jnp.clip(rim + bridge + arm, 0.0, 1.0)


def _beard(u, v, p):
  """(hair amount, stubble amount, texture) of the facial hair, kept off the lips."""
  a = jnp.abs(u)
  line = -0.62 + 0.42 * f.smoothstep(0.3, 1.3, a)
  beard = f.smoothstep(0.02, -0.06, v - line) * f.smoothstep(-1.45, -1.25, v) * f.smoothstep(1.45, 1.3, a)
  moustache = blob(u, v, 0.0, -0.6, 0.3, 0.09)
  lip_zone = blob(a, v, 0.0, f.MOUTH_V - 0.01, f.MOUTH_U + 0.02, 0.075)
  not_lip = 1.0 - jnp.clip(2.0 * lip_zone, 0.0, 1.0)
  amount = jnp.clip(p['beard'] * beard + p['moustache'] * moustache, 0.0, 1.0) * not_lip
  stubble = p['stubble'] * jnp.clip(beard + moustache, 0.0, 1.0) * not_lip
  texture = 0.85 + 0.1 * f.wave(9.0 * a + 5.0 * v) + 0.05 * f.wave(23.0 * a - 11.0 * v)
  return 0.9 * amount, stubble, texture


def _lip_frame(u, v, p):
  a = jnp.abs(u)
  s = jnp.clip(a / (f.MOUTH_U + 0.01), 0.0, 1.0)
  across = jnp.maximum(1.0 - s * s, 1e-4)
  root = jnp.sqrt(across)
  bow = 0.012 * blob(a, 0.0, 0.045, 0.0, 0.045, 1.0) - 0.008 * blob(a, 0.0, 0.0, 0.0, 0.025, 1.0)
  upper_edge = f.MOUTH_V + p['lip_height'] * (0.048 * root * jnp.sqrt(root) + bow)
  lower_edge = f.MOUTH_V - p['lip_height'] * 0.072 * 0.5 * (root + root * jnp.sqrt(root))
  return a, s, upper_edge, lower_edge


def _lip_layers(u, v, p):
  a, s, upper_edge, lower_edge = _lip_frame(u, v, p)
  lips = f.smoothstep(0.004, -0.004, v - upper_edge) * f.smoothstep(-0.004, 0.004, v - lower_edge)
  lips = lips * f.smoothstep(1.0, 0.9, s)
  line = 0.45 * f.smoothstep(0.013, 0.0, jnp.abs(v - f.MOUTH_V)) * f.smoothstep(1.05, 0.7, s)
  shine = 1.0 + 0.12 * blob(a, v, 0.0, -0.765, 0.12, 0.02)
  return lips, shine, line


def _mouth_layers(u, m):
  """(inside, teeth, teeth shade, lip edge) on the fold rows (m in [0, 1]; -1 elsewhere)."""
  a = jnp.abs(u)
  # Beyond the corners the fold rows lie on the cheeks (stretched when the jaw opens): skin there.
  inner = (m >= 0) * f.smoothstep(f.MOUTH_U + 0.005, f.MOUTH_U - 0.02, a)
  mm = jnp.clip(m, 0.0, 1.0)
  shade = 0.93 - 0.125 * (1.0 + f.wave(u / 0.042)) - 0.3 * f.smoothstep(0.1, 0.2, a)
  upper = f.smoothstep(0.1, 0.16, mm) * f.smoothstep(0.42, 0.36, mm)
  lower = f.smoothstep(0.66, 0.72, mm) * f.smoothstep(0.88, 0.82, mm) * 0.8
  teeth = (upper + lower) * f.smoothstep(0.2, 0.12, a)
  edge = f.smoothstep(0.1, 0.0, mm) + f.smoothstep(0.9, 1.0, mm)
  return inner, teeth, shade, edge


def _hair(u, v, p):
  """(coverage, shading) of the scalp hair.

  At 112 pixels single strands are not resolved (fine stripes would alias into a knitted look), so
  the hair is drawn as what remains: an irregular, slightly fuzzy hairline, darker roots along it,
  locks of a few pixels running along the strands (down the head), and a sheen across the crown.
  """
  phase = 3.7 * p['hairline'] + 1.3 * p['temples']  # per identity, so hairlines differ
  line = f.hairline(u, p['hairline'], p['temples'], p['sideburn'], p['hair_length'])
  a = jnp.abs(u)
  fringe = 0.36 + p['fringe_tilt'] * u + 0.35 * u * u
  line = line - p['fringe'] * jnp.maximum(line - fringe, 0.0) * f.smoothstep(0.8, 0.55, a)
  side = 0.45 - 1.4 * f.smoothstep(0.62, 0.95, a)
  line = line - p['hair_side'] * jnp.maximum(line - side, 0.0) * f.smoothstep(0.55, 0.7, a)
  line = line + 0.014 * f.wave(5.3 * u + phase) + 0.007 * f.wave(13.1 * u - phase)
  fuzz = 0.008 * f.wave(11.0 * u + 2.0 * v)
  mask = f.smoothstep(line - 0.022, line + 0.03, v + fuzz)
  locks = (0.84 + 0.09 * f.wave(7.1 * u + 0.35 * f.wave(1.3 * v + phase))
           + 0.05 * f.wave(19.3 * u + 1.7 * v + 0.5 * f.wave(2.9 * v)) + 0.02 * f.wave(41.0 * u - 3.1 * v))
  roots = 1.0 - 0.18 * f.smoothstep(line + 0.08, line, v)
  sheen = 1.0 + 0.3 * blob(u, v, 0.0, 1.0, 0.75, 0.2) * (0.7 + 0.3 * f.wave(8.3 * u))
  return mask, locks * roots * sheen


def layers(u, v, m, params, openness, gaze_u, gaze_v) -> Layers:
  """The albedo layers at texture coordinates u, v and mouth-fold position m (planes [B, N])."""
  beard, stubble, beard_tex = _beard(u, v, params)
  skin_shade = (_cavity(u, v) * _nose(u, v) * _lids(u, v, params, openness) * (1.0 - 0.35 * stubble)
                * _skin_marks(u, v, params))
  eye, sclera, iris, ring, pupil, glint, caruncle = _eye_layers(u, v, params, openness, gaze_u, gaze_v)
  lip, lip_shine, lip_line = _lip_layers(u, v, params)
  mouth, teeth, teeth_shade, lip_edge = _mouth_layers(u, m)
  hair, hair_tex = _hair(u, v, params)
  return Layers(skin_shade, eye, sclera, iris, ring, pupil, glint, caruncle, _brow(u, v, params),
                beard, beard_tex, lip, lip_shine, lip_line, mouth, teeth, teeth_shade, lip_edge,
                _glasses(u, v, params), hair, hair_tex)


def colour(layers: Layers, params, tint):
  """Albedo (three planes [B, N] in [0, 1]) from the layers, the per-image colours and the skin
  tint (3 planes, `skin_tint`)."""
  l = layers
  skin, hair, iris, lip = (_rgb(params[k]) for k in ('skin', 'hair', 'iris', 'lip'))
  out = tuple(c * (1 + t) * l.skin_shade for c, t in zip(skin, tint))
  eye = tuple(c * l.sclera for c in _SCLERA)
  eye = _mix(eye, tuple(c * l.ring for c in iris), l.iris)
  eye = tuple(c * (1 - l.pupil) + 0.02 * l.pupil for c in eye)
  eye = tuple(c * (1 - l.glint) + 0.95 * l.glint for c in eye)
  eye = _mix(eye, _CARUNCLE, l.caruncle)
  out = _mix(out, eye, l.eye)
  out = _mix(out, tuple(h * (1 - params['brow_dark']) for h in hair), l.brow)
  out = _mix(out, tuple(h * l.beard_tex for h in hair), l.beard)
  out = _mix(out, tuple(c * l.lip_shine for c in lip), l.lip)
  out = tuple(c * (1 - l.lip_line) for c in out)
  mouth = tuple(t * l.teeth_shade * l.teeth + th * (1 - l.teeth) for t, th in zip(_TEETH, _THROAT))
  mouth = _mix(mouth, tuple(0.8 * c for c in lip), l.lip_edge)
  out = _mix(out, mouth, l.mouth)
  out = _mix(out, _rgb(params['frame_colour']), l.frame)
  out = _mix(out, tuple(h * l.hair_tex for h in hair), l.hair)
  return tuple(jnp.clip(c, 0.0, 1.0) for c in out)


def albedo(u, v, m, params, openness, gaze_u, gaze_v):
  """Albedo (three planes [B, N]) at texture coordinates u, v and mouth-fold position m, every
  layer evaluated per pixel."""
  tint = skin_tint(jnp.stack(skin_regions(u, v)), params)
  return colour(layers(u, v, m, params, openness, gaze_u, gaze_v), params, tint)
