"""Identity (80) and expression (64) deformations of the procedural head.

Each basis vector is a smooth displacement field [V, 3] over the mesh, built from masks on the
(u, v) texture plane times a direction (the base surface normal or a fixed axis). A coefficient of 1
is a typical (one standard deviation) change. The first fields are named (face width, nose length,
smile, ...); the rest are random smooth local deformations with decreasing size.
"""
import numpy as np

from synface_jax.generators.procedural import fields as f

IDENTITY_NAMES = (
    'face_width', 'face_length', 'jaw_width', 'chin_forward', 'chin_down', 'cheekbones',
    'cheek_fat', 'nose_length', 'nose_width', 'nose_bridge', 'nose_tip', 'nose_tip_up',
    'nose_hump', 'eye_spacing', 'eye_size', 'eye_depth', 'brow_ridge', 'eyes_height',
    'upper_lip', 'lower_lip', 'mouth_width', 'mouth_height', 'forehead', 'head_length',
    'ear_size', 'ear_out', 'hair_volume', 'lips_forward', 'asymmetry', 'jaw_angle', 'temples',
    'face_round', 'nostril_flare', 'neck', 'nasolabial', 'upper_lid', 'eye_tilt', 'chin_width',
)
EXPRESSION_NAMES = (
    'smile', 'jaw_open', 'brow_raise', 'frown', 'blink', 'squint', 'pucker', 'stretch',
    'corners_down', 'smile_left', 'jaw_side', 'cheek_puff', 'sneer', 'lower_lip_down',
    'eyes_wide', 'brow_left', 'nose_wrinkle', 'lips_press', 'smile_right', 'brow_right',
    'gaze_side', 'gaze_up',
)


class Surface:
  """What the fields are built from: texture coordinates, mouth-fold position, base geometry."""

  def __init__(self, uv, mouth, points, normals):
    self.u = np.asarray(uv[:, 0])
    self.v = np.asarray(uv[:, 1])
    self.a = np.abs(self.u)
    self.side = np.sign(self.u)
    self.mouth = np.asarray(mouth)
    self.points = np.asarray(points)
    self.normals = np.asarray(normals)
    self.face = f.front(self.u, 1.25)

  def along_normal(self, w):
    return w[:, None] * self.normals

  def axis(self, w, x=0.0, y=0.0, z=0.0):
    return w[:, None] * np.array([x, y, z])

  def lateral(self, w):
    """Outward sideways (+x on the right half, -x on the left)."""
    return (w * self.side)[:, None] * np.array([1.0, 0.0, 0.0])

  def g(self, cu, cv, su, sv, mirrored=True):
    return f.gauss(self.a if mirrored else self.u, self.v, cu, cv, su, sv)

  def below(self, v0, v1):
    return f.smoothstep(v0, v1, self.v)

  def jaw(self):
    """Weight of the lower jaw: 1 below the lip line in front, fading up the cheeks and on the neck."""
    fold = np.where(self.mouth >= 0, np.clip(self.mouth, 0.0, 1.0), 0.0)
    below = np.where(self.mouth >= 0, fold, (self.v < f.MOUTH_V).astype(np.float32))
    lips_side = f.smoothstep(f.MOUTH_U + 0.15, f.MOUTH_U - 0.05, self.a)
    cheek = f.smoothstep(-0.4, -0.9, self.v) * f.smoothstep(1.5, 0.9, self.a)
    w = np.maximum(below * lips_side, cheek * f.smoothstep(f.MOUTH_V + 0.02, f.MOUTH_V - 0.2, self.v))
    return w * f.smoothstep(-1.8, -1.2, self.v)


def _identity_named(s: Surface):
  lower = s.below(-0.25, -0.95) * s.face
  x0 = s.points[:, 0]
  eye_c = np.stack([s.side * f.EYE_U, np.full_like(s.u, f.EYE_V)], -1)
  eye_w = s.g(f.EYE_U, f.EYE_V, 0.16, 0.12)
  eye_scale = np.concatenate([(np.stack([s.u, s.v], -1) - eye_c) * eye_w[:, None], 0 * s.u[:, None]], -1)
  ear_w = s.g(f.EAR_U, f.EAR_V, 0.25, 0.38)
  ear_c = np.stack([s.side * f.EAR_U, np.full_like(s.u, f.EAR_V)], -1)
  ear_scale = np.concatenate([0 * s.u[:, None], (s.v - f.EAR_V)[:, None] * ear_w[:, None],
                               0 * s.u[:, None]], -1)
  del ear_c
  hair = f.smoothstep(0.55, 0.9, s.v) + f.smoothstep(1.7, 2.3, s.a) * s.below(-0.6, 0.0)
  hair = np.clip(hair, 0, 1)
  fields = {
      'face_width': s.axis(x0 * 0.09 * s.below(-1.3, -0.6), x=1.0),
      'face_length': s.axis(-0.07 * np.clip((-0.4 - s.v) / 0.6, 0.0, 1.0) * f.smoothstep(2.2, 1.2, s.a), y=1.0),
      'jaw_width': s.lateral(0.05 * s.g(0.75, -0.85, 0.4, 0.28) * s.below(-1.6, -1.2)),
      'chin_forward': s.axis(0.045 * s.g(0.0, -1.0, 0.2, 0.15), z=1.0),
      'chin_down': s.axis(-0.035 * s.g(0.0, -1.05, 0.17, 0.14), y=1.0),
      'cheekbones': s.along_normal(0.03 * s.g(0.5, -0.15, 0.16, 0.1)),
      'cheek_fat': s.along_normal(0.035 * s.g(0.42, -0.52, 0.18, 0.18)),
      'nose_length': s.axis(-0.035 * s.g(0.0, -0.42, 0.17, 0.1), y=1.0),
      'nose_width': s.lateral(0.025 * s.g(0.11, -0.42, 0.08, 0.08) * f.smoothstep(0.0, 0.05, s.a)),
      'nose_bridge': s.along_normal(0.035 * s.g(0.0, -0.14, 0.07, 0.16)),
      'nose_tip': s.along_normal(0.03 * s.g(0.0, -0.35, 0.07, 0.06)),
      'nose_tip_up': s.axis(0.025 * s.g(0.0, -0.38, 0.08, 0.07), y=1.0),
      'nose_hump': s.along_normal(0.018 * s.g(0.0, -0.12, 0.05, 0.06)),
      'eye_spacing': s.lateral(0.022 * s.g(f.EYE_U, 0.03, 0.17, 0.14)),
      'eye_size': np.concatenate([0.13 * eye_scale[:, :2], 0 * s.u[:, None]], -1) * s.face[:, None],
      'eye_depth': s.along_normal(-0.025 * s.g(f.EYE_U, 0.02, 0.15, 0.11)),
      'brow_ridge': s.along_normal(0.028 * s.g(0.26, 0.19, 0.26, 0.07)),
      'eyes_height': s.axis(0.025 * s.g(0.3, 0.05, 0.3, 0.18), y=1.0),
      'upper_lip': s.along_normal(0.022 * s.g(0.0, -0.67, 0.2, 0.05)),
      'lower_lip': s.along_normal(0.022 * s.g(0.0, -0.77, 0.19, 0.05)),
      'mouth_width': s.lateral(0.025 * s.g(f.MOUTH_U, f.MOUTH_V, 0.12, 0.12)),
      'mouth_height': s.axis(0.025 * s.g(0.0, f.MOUTH_V, 0.32, 0.13), y=1.0),
      'forehead': s.along_normal(0.035 * s.below(0.15, 0.7) * s.face * (1 - f.smoothstep(0.9, 1.3, s.v))),
      'head_length': s.axis(-0.07 * f.smoothstep(1.2, 2.6, s.a), z=1.0),
      'ear_size': 0.12 * ear_scale,
      'ear_out': s.lateral(0.03 * s.g(f.EAR_U + 0.1, f.EAR_V, 0.2, 0.3)),
      'hair_volume': s.along_normal(0.035 * hair),
      'lips_forward': s.along_normal(0.025 * s.g(0.0, -0.72, 0.28, 0.14)),
      'asymmetry': s.axis(0.012 * s.side * s.g(f.EYE_U, 0.0, 0.2, 0.15), y=1.0),
      'jaw_angle': s.along_normal(0.035 * s.g(1.2, -0.85, 0.3, 0.2)),
      'temples': s.along_normal(0.025 * s.g(0.85, 0.3, 0.3, 0.2)),
      'face_round': s.along_normal(0.025 * s.face * s.below(-1.1, -0.3) * s.below(0.4, -0.1)),
      'nostril_flare': s.along_normal(0.02 * s.g(0.11, -0.43, 0.05, 0.05)),
      'neck': s.along_normal(0.045 * s.below(-1.1, -1.5)),
      'nasolabial': s.along_normal(0.018 * s.g(0.33, -0.52, 0.07, 0.14)),
      'upper_lid': s.along_normal(0.012 * s.g(f.EYE_U, 0.075, 0.12, 0.03)),
      'eye_tilt': s.axis(0.018 * s.g(f.EYE_U, 0.0, 0.16, 0.1) * (s.a - f.EYE_U) / 0.15, y=1.0),
      'chin_width': s.lateral(0.03 * s.g(0.15, -1.0, 0.18, 0.15)),
  }
  del lower
  return [fields[name] for name in IDENTITY_NAMES]


def _random_fields(s: Surface, count, seed, region, amplitude, num_bumps):
  """`count` random smooth local deformations of decreasing size, mostly symmetric.

  Each is a random mix of 2-3 of `num_bumps` shared bumps, so together they span a space of low
  dimension (the renderer exploits this, see `head_model.compress`).
  """
  rng = np.random.default_rng(seed)
  bumps = []
  for _ in range(num_bumps):
    mirrored = rng.random() < 0.75
    cu = rng.uniform(*region[0])
    cu = abs(cu) if mirrored else cu
    w = s.g(cu, rng.uniform(*region[1]), *rng.uniform(0.05, 0.2, size=2), mirrored=mirrored)
    if rng.random() < 0.7:
      bumps.append(s.along_normal(w))
    else:
      d = rng.normal(size=3)
      d /= np.linalg.norm(d)
      side = s.side if mirrored else 1.0
      bumps.append(w[:, None] * np.stack([d[0] * side + 0 * s.u, d[1] + 0 * s.u, d[2] + 0 * s.u], -1))
  out = []
  for k in range(count):
    picks = rng.choice(num_bumps, size=rng.integers(2, 4), replace=False)
    total = sum(rng.normal() * bumps[j] for j in picks)
    out.append(total * (amplitude / (1.0 + 0.08 * k)) * s.face[:, None])
  return out


# How sex (+ male), age (+ older) and build (+ heavier) move the named identity fields: a coefficient
# of 1 in one of them is about one standard deviation of each named field it moves.
MORPHOLOGY = {
    'sex': {'jaw_width': 0.6, 'chin_width': 0.5, 'chin_down': 0.3, 'brow_ridge': 0.9,
            'eye_depth': 0.5, 'nose_width': 0.5, 'nose_length': 0.4, 'nose_bridge': 0.4,
            'face_length': 0.4, 'upper_lip': -0.3, 'lower_lip': -0.4, 'lips_forward': -0.3,
            'cheek_fat': -0.4, 'eye_size': -0.4, 'neck': 0.8, 'forehead': -0.4, 'jaw_angle': 0.5,
            'face_round': -0.4, 'temples': -0.2},
    'age': {'nasolabial': 1.0, 'cheek_fat': -0.3, 'cheekbones': 0.3, 'upper_lid': 0.8,
            'eye_depth': 0.5, 'upper_lip': -0.4, 'lower_lip': -0.3, 'nose_length': 0.4,
            'ear_size': 0.4, 'jaw_angle': -0.3, 'temples': -0.4},
    'build': {'cheek_fat': 1.0, 'face_round': 0.9, 'face_width': 0.6, 'jaw_angle': 0.5,
              'neck': 0.8, 'chin_down': 0.3, 'cheekbones': -0.5, 'eye_size': -0.2},
}


def morphology_fields(s: Surface):
  """{name: [V, 3]}: the shape change of one unit of each of sex, age and build."""
  named = dict(zip(IDENTITY_NAMES, _identity_named(s)))
  return {morph: sum(w * named[field] for field, w in weights.items())
          for morph, weights in MORPHOLOGY.items()}


def identity_basis(s: Surface):
  """[80, V, 3] identity shape basis."""
  named = _identity_named(s)
  rest = _random_fields(s, 80 - len(named), 7, ((-0.7, 0.7), (-1.1, 0.6)), 0.012, 16)
  return np.stack(named + rest)


def _expression_named(s: Surface):
  jaw = s.jaw()
  pivot = np.array([0.0, -0.25, -0.35])
  r = s.points - pivot
  rot_x = np.stack([0 * r[:, 0], -r[:, 2], r[:, 1]], -1)   # d/d(angle) of a rotation about +x
  rot_y = np.stack([r[:, 2], 0 * r[:, 0], -r[:, 0]], -1)   # about +y
  corner = s.g(f.MOUTH_U, f.MOUTH_V, 0.1, 0.1)
  cheeks = s.g(0.42, -0.32, 0.16, 0.15)
  lids_lower = s.g(f.EYE_U, -0.07, 0.13, 0.04)
  lids_upper = s.g(f.EYE_U, 0.07, 0.13, 0.035)
  brows = s.g(0.3, 0.24, 0.3, 0.12)
  lips = s.g(0.0, f.MOUTH_V, 0.26, 0.09)
  left = f.smoothstep(-0.05, 0.05, s.u)
  right = 1.0 - left
  smile = (s.axis(0.055 * corner, y=1.0) + s.lateral(0.03 * corner) + s.axis(-0.012 * corner, z=1.0)
           + s.axis(0.018 * cheeks, y=1.0) + s.along_normal(0.012 * cheeks) + s.axis(0.008 * lids_lower, y=1.0))
  brow_up = s.axis(0.028 * brows, y=1.0) + s.axis(0.008 * lids_upper, y=1.0)
  fields = {
      'smile': smile,
      'jaw_open': 0.12 * jaw[:, None] * rot_x,
      'brow_raise': brow_up,
      'frown': s.axis(-0.018 * s.g(0.2, 0.21, 0.16, 0.08), y=1.0) + s.lateral(-0.012 * s.g(0.2, 0.21, 0.16, 0.08)),
      'blink': s.axis(-0.01 * lids_upper, y=1.0),
      'squint': s.axis(0.012 * lids_lower, y=1.0) + s.axis(0.01 * cheeks, y=1.0),
      'pucker': s.along_normal(0.035 * lips) + s.lateral(-0.03 * corner),
      'stretch': s.lateral(0.03 * corner) + s.axis(-0.008 * corner, y=1.0),
      'corners_down': s.axis(-0.03 * corner, y=1.0),
      'smile_left': smile * left[:, None],
      'jaw_side': 0.05 * jaw[:, None] * rot_y,
      'cheek_puff': s.along_normal(0.04 * s.g(0.36, -0.62, 0.14, 0.14)),
      'sneer': s.axis(0.02 * s.g(0.12, -0.55, 0.1, 0.1), y=1.0),
      'lower_lip_down': s.axis(-0.02 * s.g(0.0, -0.78, 0.2, 0.05), y=1.0),
      'eyes_wide': s.axis(0.01 * lids_upper, y=1.0),
      'brow_left': brow_up * left[:, None],
      'nose_wrinkle': s.axis(0.012 * s.g(0.07, -0.25, 0.08, 0.1), y=1.0),
      'lips_press': s.along_normal(-0.02 * lips),
      'smile_right': smile * right[:, None],
      'brow_right': brow_up * right[:, None],
      'gaze_side': np.zeros_like(s.points),
      'gaze_up': np.zeros_like(s.points),
  }
  return [fields[name] for name in EXPRESSION_NAMES]


def expression_basis(s: Surface):
  """[64, V, 3] expression basis."""
  named = _expression_named(s)
  rest = _random_fields(s, 64 - len(named), 11, ((-0.6, 0.6), (-0.95, 0.3)), 0.007, 12)
  return np.stack(named + rest)
