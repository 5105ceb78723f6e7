"""The default face generator: a procedural morphable head (or a Basel Face Model) rendered in JAX."""
import jax
import jax.numpy as jnp
import numpy as np

from synface_jax.generators import register
from synface_jax.types import Factors
from synface_jax.generators.procedural import (align, background, camera, head_model, packing, priors,
                                                raster, render, shader, texture)
from synface_jax.generators.procedural.mesh import normalize

_SHAPE_DIM = 80


@register('procedural')
class ProceduralGenerator:
  """Renders aligned faces from factors with a morphable head built in code.

  Args:
    image_size: (height, width) of the aligned faces; defaults to 112 x 112 for the 'arcface'
      template and 112 x 96 for 'synface'.
    num_identities: size of the training identity pool (ids 0 .. num_identities - 1); ids beyond it
      are valid too and give further identities (used for held-out verification pairs).
    seed: seed of the identity pool.
    template: 'arcface' or 'synface' five-point alignment template; by default 'synface' for
      112 x 96-shaped images and 'arcface' otherwise.
    resolution: mesh density of the procedural head (0.8 gives quads of about 2 pixels on a
      112-pixel face, as fine as the rasteriser's 2 x 2 pixel windows allow; scale it with the
      image size, e.g. 0.3 for 32 x 32).
    bfm_path: a `BFM_model_front.mat` file; when given, faces come from that Basel Face Model
      (shape, expression and texture bases, no hair or eyes beyond its texture) instead.
  """

  def __init__(self, image_size=None, num_identities: int = 10000, seed: int = 0,
               template=None, resolution: float = 0.8, bfm_path=None):
    if image_size is None:
      image_size = (112, 96) if template == 'synface' else (112, 112)
    if template is None:
      template = 'synface' if image_size[1] * 112 == image_size[0] * 96 else 'arcface'
    self.image_size = (int(image_size[0]), int(image_size[1]))
    self.num_identities = int(num_identities)
    self.seed = int(seed)
    self.template = align.template(template, self.image_size)
    self.resolution = float(resolution)
    self.bfm_path = bfm_path
    if bfm_path is not None:
      from synface_jax.generators.procedural import bfm  # pylint: disable=g-import-not-at-top
      self._model = bfm.load_bfm(bfm_path)
    else:
      self._model = head_model.build(self.resolution)

  def init(self, key=None):
    """The model's arrays (mean shape and bases) as a pytree of float32 arrays; key is unused."""
    del key
    m = self._model
    return {name: jnp.asarray(getattr(m, name)) for name in m.PARAMS}

  def identity(self, params, identity_id):
    """Identity coefficients [160] of pool identity `identity_id` (deterministic in the id)."""
    del params
    key = jax.random.fold_in(priors.pool_key(self.seed), identity_id)
    return priors.identity(jax.random.normal(key, (160,), jnp.float32))

  def sample(self, key, identity):
    """Factors of one face of `identity` [160] with fresh expression, pose, lighting and noise."""
    return priors.sample_nuisance(key, identity)

  def render(self, params, factors: Factors):
    """Aligned faces [B, H, W, 3] in [-1, 1] and their 5 landmarks [B, 5, 2] (pixel x, y)."""
    if self.bfm_path is not None:
      return self._model.render(params, factors, self.image_size, self.template)
    return _render_head(self._model, params, factors, self.image_size, self.template)


def _lookup(table, index, frac):
  """Linear interpolation of a small 1-D table between entries index and index + 1."""
  t = jnp.asarray(table)
  return t[index] * (1 - frac) + t[index + 1] * frac


def _render_head(model, params, factors, image_size, template):
  height, width = image_size
  points = _deform(params, factors)
  proj = render.pose_and_align(points, factors.pose, model.landmark_ids, template,
                               model.landmark_weights)
  # Normals in the model frame (from the product's output, not the rotated points).
  normals = model.mesh.polygon_normals(points, normalise=False)
  # The whole mesh (neck included) lies within 3.5 units of the origin, 10 units from the camera.
  polygon_ids, hit, weights, normals, _ = render.rasterize(
      model.mesh, proj, height, width, normals, depth_range=(6.0, 14.0),
      polygon_codec=packing.unit_codec(), polygon_exact=normalize, see_through=0.15)
  u, v, m = _texture_coords(model, polygon_ids, weights)
  albedo = _albedo(model, factors, polygon_ids, u, v, m)
  normals = _camera_normals(normals, hit, factors.pose, height, width)
  colour = render.shade(albedo, normals, factors.lighting)
  px, py = raster.pixel_centres(height, width)
  bg = background.background(factors.noise, px, py, height, width)
  return render.composite(colour, hit, bg, height, width), proj.landmarks


def _deform(params, factors):
  """Vertices (3 planes [B, V]) of the faces' shape and expression, in one matrix product."""
  coeffs = jnp.concatenate([factors.identity, factors.expression], axis=1)
  coeffs = coeffs @ params['coeff_map']
  coeffs = jnp.concatenate([coeffs, jnp.ones_like(coeffs[:, :1])], axis=1)
  verts = (coeffs @ params['basis']).reshape(coeffs.shape[0], 3, -1)
  return verts[:, 0], verts[:, 1], verts[:, 2]


def _texture_coords(model, polygon_ids, weights):
  """Texture coordinates u, v and mouth-fold position m (planes [B, N]) of the pixels."""
  row, col = model.mesh.polygon_cells(polygon_ids)
  offsets = model.mesh.CORNER_OFFSETS
  row_frac = sum(w * float(o) for w, o in zip(weights, offsets[:, 0]) if o)
  col_frac = sum(w * float(o) for w, o in zip(weights, offsets[:, 1]) if o)
  return (_lookup(model.col_u, col, col_frac), _lookup(model.row_v, row, row_frac),
          _lookup(model.row_mouth, row, row_frac))


def _albedo(model, factors, polygon_ids, u, v, m):
  """Albedo planes of the pixels: layers materialised once, then mixed per colour channel."""
  paint = texture.decode(factors.identity[:, _SHAPE_DIM:])
  # The broad skin tints per polygon, read with one packed gather.
  tint = shader.skin_tint(model.skin_regions, paint)
  tint = packing.read_exact(packing.tint_codec(), tint, [polygon_ids])[0]

  def albedo_layers(operands):
    u, v, m, expression, paint = operands
    u, v, m = (x.astype(jnp.float32) for x in (u, v, m))
    openness, gaze_u, gaze_v = shader.eye_state(expression)
    layers = shader.layers(u, v, m, paint, openness, gaze_u, gaze_v)
    return jax.tree.map(lambda x: x.astype(jnp.float16), layers)

  # The layers are materialised, so the three colour channels read them instead of recomputing them.
  # Every layer's loop reads the texture coordinates, so they are passed in float16 (to 2e-4 near
  # the eyes, a hundredth of a pixel): half the memory traffic.
  half = lambda x: x.astype(jnp.float16)
  layers = raster.unfused(albedo_layers, (half(u), half(v), half(m), factors.expression, paint),
                          u[0, 0])
  layers = jax.tree.map(lambda x: x.astype(jnp.float32), layers)
  return shader.colour(layers, paint, tint)


def _camera_normals(normals, hit, pose, height, width):
  """Unit normals in the camera frame (3 planes [B, N]) from the pixels' model-frame normals,
  smoothed across neighbouring pixels (flat quads would look faceted), then rotated."""
  smooth = lambda ops: render.smooth(ops[0], ops[1], height, width)
  normals = raster.unfused(smooth, (normals, hit), normals[0][0, 0])
  rotation = jax.vmap(camera.rotation_matrix)(pose)
  return normalize(camera.rotate(normals, rotation))
