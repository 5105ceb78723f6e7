"""Per-pixel albedo of the procedural head, painted on the (u, v) texture plane.

Skin with regional tints and cavity darkening, eyes (sclera, iris, pupil, catchlight, lids, lashes,
crease), brows, lips, the inside of the mouth (teeth, tongue, throat), nostrils, hair with a hairline,
facial hair. Inputs are planes [B, N] (N pixels) and per-image parameters [B, 1] / [B, 3] from
`texture.decode` and `eye_state`; the output is three albedo planes in [0, 1].
"""
import jax.numpy as jnp

from synface_jax.generators.procedural import fields as f
from synface_jax.generators.procedural.texture import PATTERN_REGIONS


def blob(u, v, cu, cv, su, sv):
  """A cheap compact bump: (1 - r^2)^2 inside the ellipse of radii (su, sv), 0 outside."""
  return jnp.square(jnp.maximum(1.0 - f.ellipse(u, v, cu, cv, su, sv), 0.0))


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


def _eyes(u, v, p, openness, gaze_u, gaze_v, skin, colour):
  a = jnp.abs(u)
  side = jnp.sign(u)
  du = a - f.EYE_U
  dv = v - f.EYE_V
  width = p['eye_width']
  s = jnp.clip(du / width, -1.0, 1.0)
  across = jnp.maximum(1.0 - s * s, 1e-4)  # kept off 0 so powers have finite gradients
  tilt = p['eye_tilt'] * s
  top = 0.047 * p['eye_open'] * openness * jnp.sqrt(across) * (1 + 0.15 * s * (s < 0)) + tilt - 0.004
  bottom = -0.03 * p['eye_open'] * f.root4(across) + tilt * 0.6 - 0.004
  bottom = jnp.minimum(bottom, top - 1e-3)
  edge = 0.004
  inside = f.smoothstep(-edge, edge, top - dv) * f.smoothstep(-edge, edge, dv - bottom)
  inside = inside * f.smoothstep(1.0, 0.93, jnp.abs(du / width))
  # Sclera, shadowed under the upper lid and towards the corners.
  shade = 1.0 - 0.45 * f.smoothstep(-0.025, 0.0, dv - top) - 0.3 * s ** 4
  sclera = tuple(c * shade for c in (0.86, 0.82, 0.79))
  # Iris, pupil and catchlight; the iris turns with the gaze (mirrored so both eyes look alike).
  iu = du - side * gaze_u
  iv = dv - gaze_v + 0.003
  r = jnp.sqrt(iu * iu + iv * iv + 1e-9)
  iris_r = 0.05
  iris_mask = f.smoothstep(iris_r + 0.003, iris_r - 0.003, r)
  ring = 1.0 - 0.5 * f.smoothstep(0.6 * iris_r, iris_r, r)
  iris = tuple(c * ring * (1.0 - 0.35 * f.smoothstep(0.01, -0.02, dv - top)) for c in _rgb(p['iris']))
  eye = _mix(sclera, iris, iris_mask)
  pupil = f.smoothstep(0.021, 0.016, r)
  eye = tuple(c * (1 - pupil) + 0.02 * pupil for c in eye)
  glint = blob(iu, iv, -0.014 * side, 0.016, 0.009, 0.009)
  eye = tuple(c * (1 - glint) + 0.95 * glint for c in eye)
  caruncle = blob(du, dv, -width + 0.012, -0.004, 0.018, 0.014)
  eye = _mix(eye, (0.75, 0.45, 0.42), caruncle)
  # Lids: lash line above the aperture, a lighter one below, a crease higher up.
  along = f.smoothstep(1.12, 0.95, jnp.abs(du / width))
  lash = f.smoothstep(0.0, 0.004, dv - top) * f.smoothstep(0.014 + 0.004 * (s > 0), 0.006, dv - top) * along
  lower_lash = f.smoothstep(0.0, 0.002, bottom - dv) * f.smoothstep(0.008, 0.003, bottom - dv) * along
  crease = blob(dv - top, s, 0.032, 0.0, 0.01, 1.1)
  lid = 1.0 - 0.85 * lash - 0.35 * lower_lash - 0.18 * crease
  shadow = 1.0 - p['eye_shadow'] * blob(du, dv, -0.01, 0.03, 0.22, 0.13)
  skin_here = tuple(c * lid * shadow for c in colour)
  out = tuple(e * inside + s_ * (1 - inside) for e, s_ in zip(eye, skin_here))
  return out, lash


def _brows(u, v, p, colour):
  a = jnp.abs(u)
  t = (a - 0.12) / 0.44
  centre = p['brow_height'] + p['brow_arch'] * (1 - jnp.square(2 * t - 1.1)) + p['brow_tilt'] * (t - 0.4)
  thick = p['brow_thick'] * (1.15 - 0.55 * f.smoothstep(0.3, 1.0, t))
  d = jnp.abs(v - centre) / thick
  mask = f.smoothstep(1.0, 0.45, d) * f.smoothstep(-0.04, 0.06, t) * f.smoothstep(1.05, 0.9, t)
  brow = tuple(h * (1 - p['brow_dark']) + 0.0 for h in _rgb(p['hair']))
  density = p['brow_dark'] * mask
  return tuple(c * (1 - density) + b * density for c, b in zip(colour, brow))


def _lips(u, v, m, p, colour):
  a = jnp.abs(u)
  s = jnp.clip(a / (f.MOUTH_U + 0.01), 0.0, 1.0)
  across = jnp.maximum(1.0 - s * s, 1e-4)
  bow = 0.012 * blob(a, 0.0, 0.045, 0.0, 0.045, 1.0) - 0.008 * blob(a, 0.0, 0.0, 0.0, 0.025, 1.0)
  upper_edge = f.MOUTH_V + p['lip_height'] * (0.048 * f.root4(across) + bow)
  lower_edge = f.MOUTH_V - p['lip_height'] * 0.072 * 0.5 * (jnp.sqrt(across) + f.root4(across))
  lips = f.smoothstep(0.004, -0.004, v - upper_edge) * f.smoothstep(-0.004, 0.004, v - lower_edge)
  lips = lips * f.smoothstep(1.0, 0.9, s)
  line = f.smoothstep(0.008, 0.0, jnp.abs(v - f.MOUTH_V)) * f.smoothstep(1.05, 0.7, s)
  lower_shine = 1.0 + 0.12 * blob(a, v, 0.0, -0.765, 0.12, 0.02)
  lip = tuple(c * lower_shine for c in _rgb(p['lip']))
  out = tuple(c * (1 - lips) + l * lips for c, l in zip(colour, lip))
  out = tuple(c * (1 - 0.55 * line) for c in out)
  # Inside of the mouth, on the fold rows (m in [0, 1]).
  inner = (m >= 0).astype(u.dtype)
  mm = jnp.clip(m, 0.0, 1.0)
  teeth_u = 0.93 - 0.125 * (1.0 + f.wave(u / 0.042)) - 0.3 * f.smoothstep(0.1, 0.2, a)
  upper_teeth = f.smoothstep(0.1, 0.16, mm) * f.smoothstep(0.42, 0.36, mm)
  lower_teeth = f.smoothstep(0.66, 0.72, mm) * f.smoothstep(0.88, 0.82, mm) * 0.8
  teeth = (upper_teeth + lower_teeth) * f.smoothstep(0.2, 0.12, a)
  throat = (0.16, 0.05, 0.05)
  mouth = tuple(t * teeth * c + th * (1 - teeth) for t, c, th in zip((teeth_u,) * 3, (0.95, 0.92, 0.84), throat))
  lip_edge = f.smoothstep(0.1, 0.0, mm) + f.smoothstep(0.9, 1.0, mm)
  mouth = tuple(mo * (1 - lip_edge) + l * 0.8 * lip_edge for mo, l in zip(mouth, lip))
  return tuple(o * (1 - inner) + mo * inner for o, mo in zip(out, mouth))


def _nose(u, v, colour):
  a = jnp.abs(u)
  nostril = blob(a, v, 0.055, -0.445, 0.032, 0.016)
  crease = blob(a, v, 0.13, -0.425, 0.035, 0.05) * (1 - blob(a, v, 0.11, -0.425, 0.03, 0.04))
  under = blob(u, v, 0.0, -0.465, 0.1, 0.02)
  dark = 1.0 - 0.88 * nostril - 0.2 * crease - 0.15 * under
  return tuple(c * dark for c in colour)


def _skin(u, v, p):
  a = jnp.abs(u)
  colour = _rgb(p['skin'])
  # Regional tints (the albedo patterns).
  for k, (cu, cv, su, sv) in enumerate(PATTERN_REGIONS):
    w = blob(a, v, cu, cv, su, sv)
    colour = tuple(c * (1 + p['patterns'][:, k, i:i + 1] * w) for i, c in enumerate(colour))
  blush = p['blush'] * (blob(a, v, 0.42, -0.3, 0.17, 0.15) + 0.6 * blob(u, v, 0.0, -0.33, 0.07, 0.08))
  colour = (colour[0] * (1 + 0.6 * blush), colour[1] * (1 - 0.5 * blush), colour[2] * (1 - 0.5 * blush))
  # Cavities that skylight reaches less: inner eye corners, mouth corners, under lip and jaw, ears.
  cavity = (0.25 * blob(a, v, 0.16, 0.0, 0.07, 0.07) + 0.3 * blob(a, v, f.MOUTH_U + 0.01, f.MOUTH_V, 0.04, 0.035)
            + 0.18 * blob(u, v, 0.0, -0.875, 0.16, 0.04) + 0.15 * blob(a, v, 0.3, -0.5, 0.06, 0.14)
            + 0.35 * blob(a, v, f.EAR_U - 0.02, f.EAR_V - 0.05, 0.09, 0.12))
  under_jaw = f.smoothstep(-1.0, -1.25, v) * 0.3 * f.smoothstep(2.2, 1.0, a)
  shade = 1.0 - cavity - under_jaw
  ear = blob(a, v, f.EAR_U, f.EAR_V, 0.22, 0.33)
  colour = (colour[0] * (1 + 0.06 * ear), colour[1] * (1 - 0.03 * ear), colour[2] * (1 - 0.03 * ear))
  return tuple(c * shade for c in colour)


def _facial_hair(u, v, p, colour, lips_mask_v):
  a = jnp.abs(u)
  line = -0.62 + 0.42 * f.smoothstep(0.3, 1.3, a)
  beard = f.smoothstep(0.02, -0.06, v - line) * f.smoothstep(-1.45, -1.25, v) * f.smoothstep(1.45, 1.3, a)
  moustache = blob(u, v, 0.0, -0.6, 0.3, 0.09)
  not_lip = 1.0 - lips_mask_v
  amount = jnp.clip(p['beard'] * beard + p['moustache'] * moustache, 0.0, 1.0) * not_lip
  stubble = p['stubble'] * jnp.clip(beard + moustache, 0.0, 1.0) * not_lip
  texture = 0.8 + 0.2 * f.wave((230.0 * a + 140.0 * v) / (2 * jnp.pi))
  hair = tuple(h * texture for h in _rgb(p['hair']))
  colour = tuple(c * (1 - 0.35 * stubble) for c in colour)
  return tuple(c * (1 - 0.9 * amount) + h * 0.9 * amount for c, h in zip(colour, hair))


def _hair(u, v, p, colour):
  line = f.hairline(u, p['hairline'], p['temples'], p['sideburn'], p['hair_length'])
  mask = f.smoothstep(line - 0.01, line + 0.035, v)
  strands = 0.8 + 0.2 * f.wave((95.0 * u + 12.0 * v * v) / (2 * jnp.pi))
  sheen = 1.0 + 0.25 * blob(u, v, 0.0, 1.05, 0.6, 0.25)
  hair = tuple(h * strands * sheen for h in _rgb(p['hair']))
  return tuple(c * (1 - mask) + h * mask for c, h in zip(colour, hair))


def albedo(u, v, m, params, openness, gaze_u, gaze_v):
  """Albedo (three planes [B, N]) at texture coordinates u, v and mouth-fold position m."""
  colour = _skin(u, v, params)
  colour = _nose(u, v, colour)
  colour, _ = _eyes(u, v, params, openness, gaze_u, gaze_v, params['skin'], colour)
  colour = _brows(u, v, params, colour)
  lip_zone = blob(jnp.abs(u), v, 0.0, f.MOUTH_V - 0.01, f.MOUTH_U + 0.02, 0.075)
  colour = _facial_hair(u, v, params, colour, jnp.clip(2.0 * lip_zone, 0.0, 1.0))
  colour = _lips(u, v, m, params, colour)
  colour = _hair(u, v, params, colour)
  return tuple(jnp.clip(c, 0.0, 1.0) for c in colour)
