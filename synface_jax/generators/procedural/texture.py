"""The 80 texture coefficients of an identity, and what each one means.

Coefficients are standard normal under the identity prior (sex is bimodal, see `priors.identity`).
The first ones are named attributes (skin tone, hair colour, hairline, brows, eyes, lips, facial
hair, skin marks, glasses, hair styles (fringe, hair beside the face), and the sex, age and build that shift several of them together); the rest are low-frequency
albedo patterns (patchy tints over regions of the face). `decode` turns the coefficients of a batch
into the parameters the shader consumes, each a [B, 1] column that broadcasts over pixels.
"""
import jax
import jax.numpy as jnp
import numpy as np

NAMES = (
    'skin_tone', 'skin_red', 'skin_yellow', 'hair_dark', 'hair_warm', 'hair_grey',
    'hairline', 'temples', 'hair_length', 'sideburns', 'brow_dark', 'brow_thick',
    'brow_arch', 'brow_height', 'iris_hue', 'iris_light', 'lip_red', 'lip_dark',
    'beard', 'moustache', 'stubble', 'eye_shadow', 'blush', 'eye_open', 'eye_width',
    'eye_tilt', 'lip_height', 'brow_tilt', 'freckles', 'mole_u', 'mole_v', 'mole', 'glasses',
    'frame', 'fringe', 'fringe_tilt', 'hair_side',
    # Morphology: sex (bimodal, + male), age (+ older) and build (+ heavier). They move the shape
    # too (`shape_basis.morphology_fields`) and the attributes that go with them here.
    'sex', 'age', 'build',
)
MORPHOLOGY = ('sex', 'age', 'build')
NUM_PATTERNS = 80 - len(NAMES)
# Regions (u, v, su, sv) the albedo patterns tint; mirrored regions share a tint.
PATTERN_REGIONS = np.array([
    [0.0, 0.45, 0.45, 0.3], [0.42, -0.35, 0.2, 0.2], [0.0, -0.25, 0.09, 0.2],
    [0.0, -0.95, 0.3, 0.2], [0.3, -0.1, 0.18, 0.08], [0.75, -0.4, 0.35, 0.45],
    [0.0, -1.35, 0.9, 0.3], [0.0, 0.0, 1.3, 1.2]], np.float32)

_SKIN = np.array([[0.98, 0.82, 0.74], [0.94, 0.75, 0.63], [0.86, 0.67, 0.51], [0.76, 0.55, 0.40],
                  [0.62, 0.43, 0.29], [0.50, 0.33, 0.22], [0.37, 0.24, 0.15], [0.27, 0.17, 0.11]],
                 np.float32)
_HAIR = np.array([[0.78, 0.64, 0.42], [0.52, 0.38, 0.24], [0.32, 0.21, 0.13], [0.16, 0.10, 0.065],
                  [0.055, 0.045, 0.04]], np.float32)
_IRIS = np.array([[0.16, 0.09, 0.05], [0.32, 0.19, 0.09], [0.45, 0.30, 0.12], [0.40, 0.38, 0.18],
                  [0.30, 0.42, 0.28], [0.38, 0.45, 0.50], [0.28, 0.42, 0.62]], np.float32)


def _mixing_matrix():
  """[NUM_PATTERNS, regions, 3]: how each pattern coefficient tints each region (mostly brightness)."""
  rng = np.random.default_rng(20210811)
  shape = (NUM_PATTERNS, len(PATTERN_REGIONS))
  m = rng.normal(size=shape + (1,)) + 0.35 * rng.normal(size=shape + (3,))
  return (m * (0.018 / np.sqrt(1.0 + 0.15 * np.arange(NUM_PATTERNS)))[:, None, None]).astype(np.float32)


_MIX = _mixing_matrix()


def _palette(stops, position):
  """Piecewise-linear colour [B, 3] at positions [B] in [0, 1] along palette stops [N, 3]."""
  x = jnp.clip(position, 0.0, 1.0) * (len(stops) - 1)
  i = jnp.clip(jnp.floor(x), 0, len(stops) - 2).astype(jnp.int32)
  f = (x - i)[:, None]
  s = jnp.asarray(stops)
  return s[i] * (1 - f) + s[i + 1] * f


def decode(coeffs):
  """Shader parameters from texture coefficients [B, 80]: a dict of [B, 1] or [B, 3] arrays."""
  t = {name: coeffs[:, i] for i, name in enumerate(NAMES)}
  sig = jax.nn.sigmoid
  male = sig(3.0 * t['sex'])      # ~1 for men, ~0 for women; mixed identities in between.
  female = 1.0 - male
  age = t['age']
  tone = sig(1.3 * t['skin_tone'] - 0.45)
  skin = _palette(_SKIN, tone)
  skin = skin * (1 + 0.07 * jnp.tanh(t['skin_red'])[:, None] * jnp.array([1.0, -0.6, -0.6]))
  skin = skin * (1 + 0.05 * jnp.tanh(t['skin_yellow'])[:, None] * jnp.array([0.2, 0.3, -1.0]))
  hair_pos = sig(1.4 * t['hair_dark'] + 1.3 + 1.5 * tone)
  hair = _palette(_HAIR, hair_pos)
  hair = hair * (1 + 0.25 * jnp.tanh(t['hair_warm'])[:, None] * jnp.array([0.6, -0.1, -0.6]))
  grey = sig(2.0 * (t['hair_grey'] - 1.6 + 0.9 * age))[:, None]
  hair = hair * (1 - grey) + grey * jnp.array([0.62, 0.6, 0.58])
  iris = _palette(_IRIS, sig(1.8 * t['iris_hue'] - 0.6) * (1 - 0.75 * tone))
  iris = iris * (1 + 0.3 * jnp.tanh(t['iris_light']))[:, None]
  lip_red = 0.06 * jnp.tanh(t['lip_red']) + 0.08 * female * sig(2.0 * t['lip_red'] + 1.0)
  lip = skin * jnp.array([0.86, 0.64, 0.66]) * (1 + lip_red[:, None] * jnp.array([0.5, -1, -1]))
  lip = lip * (1 - 0.12 * sig(t['lip_dark']))[:, None]
  hair_length = 0.9 * sig(2.2 * (t['hair_length'] - 0.8 + 1.9 * female))
  patterns = jnp.einsum('bk,krc->brc', coeffs[:, len(NAMES):], jnp.asarray(_MIX))
  col = lambda x: x[:, None]
  return {
      'skin': skin, 'hair': hair, 'iris': iris, 'lip': lip, 'patterns': patterns,
      'tone': col(tone),
      # Men's hairlines recede with age.
      'hairline': col(0.6 + 0.07 * jnp.tanh(0.8 * t['hairline'])
                      + 0.22 * sig(3 * (t['hairline'] - 1.8 + 0.7 * male * age))),
      'temples': col(0.48 + 0.08 * jnp.tanh(t['temples']) + 0.1 * male * sig(2.0 * age - 0.5)),
      'hair_length': col(hair_length),
      'sideburn': col(-0.05 - 0.15 * sig(1.5 * t['sideburns'])),
      # A fringe brings the hairline down towards the brows (more often for women), straight or
      # swept to one side; long hair may fall beside the face to the jaw.
      'fringe': col(sig(2.5 * (t['fringe'] - 1.0 + 0.6 * female))),
      'fringe_tilt': col(0.15 * jnp.tanh(t['fringe_tilt'])),
      'hair_side': col(hair_length * sig(2.0 * t['hair_side'] + 0.5)),
      'brow_dark': col(0.55 + 0.3 * sig(t['brow_dark'])),
      # Brows about 4 to 9 mm deep (at half cover) at their inner end, fuller on men.
      'brow_thick': col(0.034 + 0.008 * male + 0.012 * jnp.tanh(t['brow_thick'])),
      'brow_arch': col(0.025 + 0.012 * female + 0.015 * jnp.tanh(t['brow_arch'])),
      'brow_height': col(0.205 + 0.02 * female + 0.02 * jnp.tanh(t['brow_height'])),
      'brow_tilt': col(0.04 * jnp.tanh(t['brow_tilt'])),
      'beard': col(male * sig(3.0 * (t['beard'] - 0.7))),
      'moustache': col(male * sig(3.0 * (t['moustache'] - 0.9))),
      'stubble': col(male * 0.5 * sig(2.0 * (t['stubble'] - 0.1))),
      'eye_shadow': col(0.2 + 0.07 * jnp.tanh(t['eye_shadow']) + 0.12 * female * sig(2.0 * t['eye_shadow'])),
      'blush': col(0.05 + 0.03 * jnp.tanh(t['blush'])),
      'eye_open': col(1.0 + 0.18 * jnp.tanh(t['eye_open'])),
      'eye_width': col(0.135 + 0.014 * jnp.tanh(t['eye_width'])),
      'eye_tilt': col(0.022 * jnp.tanh(t['eye_tilt'])),
      'lip_height': col(1.0 + 0.15 * jnp.tanh(t['lip_height']) + 0.12 * female - 0.1 * jnp.tanh(age)),
      'wrinkles': col(sig(2.0 * (age - 0.6))),
      'freckles': col(0.6 * sig(2.5 * (t['freckles'] - 1.3)) * (1.2 - tone)),
      'mole': col(sig(3.0 * (t['mole'] - 0.9))),
      'mole_u': col(0.55 * jnp.tanh(0.8 * t['mole_u'])),
      'mole_v': col(-0.45 + 0.35 * jnp.tanh(0.8 * t['mole_v'])),
      # About one identity in eight wears glasses; frames from thin metal to thick dark plastic.
      'glasses': col(sig(5.0 * (t['glasses'] - 1.15))),
      'frame_width': col(0.008 + 0.012 * sig(-1.5 * t['frame'])),  # Dark plastic is thicker.
      'frame_size': col(1.0 + 0.1 * jnp.tanh(t['frame'] - t['mole_u'])),
      'frame_colour': (jnp.array([0.05, 0.045, 0.04]) + sig(2.0 * t['frame'] - 1.0)[:, None]
                       * jnp.array([0.5, 0.45, 0.38])),
  }
