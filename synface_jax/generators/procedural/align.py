"""Five-point face alignment: templates and the in-graph least-squares similarity transform."""
import jax.numpy as jnp
import numpy as np

# insightface's ArcFace template for 112x112 crops: eye centres, nose tip, mouth corners (x, y).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
     [70.7299, 92.2041]], np.float32)


def template(name: str, image_size) -> np.ndarray:
  """The 5-point template in pixels of an image of size (H, W).

  'arcface' is defined at 112x112 and 'synface' at 112x96 (the ArcFace template shifted left by
  8 pixels); other sizes scale each axis by the size ratio.
  """
  height, width = image_size
  if name == 'arcface':
    points, base = ARCFACE_TEMPLATE, (112.0, 112.0)
  elif name == 'synface':
    points, base = ARCFACE_TEMPLATE - np.array([8.0, 0.0], np.float32), (112.0, 96.0)
  else:
    raise ValueError(f"template={name!r} is not known; choose 'arcface' or 'synface'")
  scale = np.array([width / base[1], height / base[0]], np.float32)
  return (points * scale).astype(np.float32)


def similarity(src, dst):
  """Least-squares similarity (rotation, uniform scale, translation) taking src [N, 2] onto dst [N, 2].

  This is Umeyama's solution restricted to proper rotations, which in 2-D has a closed form.

  Returns:
    (matrix [2, 2], offset [2]) with dst ~ src @ matrix.T + offset.
  """
  src_mean = jnp.mean(src, axis=0)
  dst_mean = jnp.mean(dst, axis=0)
  s = src - src_mean
  d = dst - dst_mean
  norm = jnp.sum(s * s)
  a = jnp.sum(s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]) / norm
  b = jnp.sum(s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]) / norm
  matrix = jnp.array([[a, -b], [b, a]])
  offset = dst_mean - src_mean @ matrix.T
  return matrix, offset


def apply(matrix, offset, points):
  """Applies a transform from `similarity` to points [..., 2]."""
  return points @ matrix.T + offset
