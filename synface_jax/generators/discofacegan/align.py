"""A fixed similarity crop of DiscoFaceGAN's frame onto a 5-point face template (ArcFace's).

How the crop was chosen. DiscoFaceGAN's faces are aligned by construction: its training images
were aligned for, and its imitation losses render with, one 3DMM camera (on the z axis at
distance 10 looking at the origin, focal 1015 * 1.22 px, principal point 128 in the 256 px
frame) and its latent factors have no translation, so a face with zero pose sits where that
camera projects the mean face. The crop's source points are therefore the five landmarks of the
3DMM mean face (eye centres, nose tip, mouth corners; BFM units, y up, z towards the camera; the
values below are approximate) at zero pose, projected with that camera: about (88.9, 91.6),
(166.9, 91.6), (128.4, 134.1), (96.1, 176.3), (159.5, 176.3) px. The crop is the least-squares
uniform scale + translation from them to the template (no rotation: both point sets are upright
and left-right symmetric to within 0.2 px). For ArcFace's 112x112 template that is scale 0.470
(fit residual under 0.8 px): the crop spans about 238 px of the 256 frame and starts 19 px
above it, where the top row is repeated. Pose and identity move a face's real landmarks away
from these fixed points, as a real photo's do after alignment; `source_landmarks` replaces the
estimate (for example with landmarks measured on generated faces).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

# The 5-point template of every generator (insightface's ArcFace one, or SynFace's 112x96 crop).
from synface_jax.generators.procedural.align import ARCFACE_TEMPLATE, template  # noqa: F401

# Mean-face 3D landmarks of the 3DMM (left eye, right eye, nose tip, left and right mouth corner).
MEAN_FACE_LANDMARKS_3D = np.array(
    [[-0.3115, 0.2904, 0.1338], [0.3098, 0.2897, 0.1318], [0.0033, -0.0462, 0.5524],
     [-0.2522, -0.3813, 0.2241], [0.2485, -0.3813, 0.2224]], np.float64)
CAMERA_DISTANCE = 10.0
FOCAL_256 = 1015.0 * 1.22
FRAME_256 = 256

def source_landmarks(resolution: int = FRAME_256) -> np.ndarray:
  """[5, 2] (x, y) pixels of the mean face at zero pose in a generator frame of `resolution` px."""
  p = MEAN_FACE_LANDMARKS_3D
  depth = CAMERA_DISTANCE - p[:, 2]
  center = FRAME_256 / 2.0
  xy = np.stack([center + FOCAL_256 * p[:, 0] / depth, center - FOCAL_256 * p[:, 1] / depth], 1)
  # Pixel centres at integers: rescale about the frame's continuous centre.
  return (xy + 0.5) * (resolution / FRAME_256) - 0.5


def fit_scale_translation(src, dst):
  """Least-squares uniform scale s and translation t [2] with dst ~ s * src + t."""
  src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
  ds, dd = src - src.mean(0), dst - dst.mean(0)
  scale = float(np.sum(ds * dd) / np.sum(ds * ds))
  return scale, dst.mean(0) - scale * src.mean(0)


class Crop:
  """Brings [B, R, R, C] frames to [B, H, W, C] with a fixed scale + translation (antialiased)."""

  def __init__(self, resolution: int, image_size, dst_points, src_points=None):
    self.image_size = tuple(int(v) for v in image_size)
    src = source_landmarks(resolution) if src_points is None else np.asarray(src_points)
    if src.shape != (5, 2):
      raise ValueError(f'source_landmarks must be [5, 2] (x, y) pixels, got shape {src.shape}')
    self.scale, self.translation = fit_scale_translation(src, dst_points)
    # Rows/columns of the frame the crop reads, plus the linear filter's reach, set the padding.
    height, width = self.image_size
    reach = 1.0 / self.scale + 1.0
    lo = (-self.translation) / self.scale - reach
    hi = (np.array([width - 1, height - 1]) - self.translation) / self.scale + reach
    self.pad = max(0, math.ceil(max(-lo.min(), hi.max() - (resolution - 1))))

  def __call__(self, images):
    b, _, _, c = images.shape
    height, width = self.image_size
    p = self.pad
    if p:
      images = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode='edge')
    s = self.scale
    # Output pixel o = s * (input pixel - pad) + t; jax.image places pixel centres at i + 0.5.
    tx, ty = self.translation - s * p + 0.5 - 0.5 * s
    return jax.image.scale_and_translate(
        images.astype(jnp.float32), (b, height, width, c), (1, 2),
        jnp.array([s, s], jnp.float32), jnp.array([ty, tx], jnp.float32), 'linear',
        antialias=True)
