"""Margin softmax losses (ArcFace, CosFace, combined) with soft targets.

The combined margin of insightface maps a target cosine c = cos(theta) to

    phi(c) = cos(m1 * theta + m2) - m3,

(ArcFace: m2 > 0; CosFace: m3 > 0). With a `SoftLabel`, let A[i, j] be the total weight of class j
in row i. Every target receives the margin scaled by its own weight:

    z = scale * (c + A * (phi(c) - c)),    loss_i = -sum_j A[i, j] * log_softmax(z_i)_j.

With a one-hot label this is plain ArcFace / CosFace; with SynFace's labels (psi * w_a on y_a,
psi * w_b on y_b, 1 - psi on y_r) it equals SynFace's combined head output and loss. Gradients are
the exact derivatives of this function (insightface's ArcFace back-propagates straight through
the margin instead).
"""
import functools
import math

import jax
import jax.numpy as jnp

from synface_jax.types import SoftLabel

ARCFACE = dict(m1=1.0, m2=0.5, m3=0.0)
COSFACE = dict(m1=1.0, m2=0.0, m3=0.4)


def _compute_dtype(x):
  """The dtype of x promoted to at least float32."""
  return jnp.promote_types(jnp.result_type(x), jnp.float32)


def _safe_sqrt(x):
  """sqrt(max(x, 0)) whose gradient is 0 (not inf or NaN) where x <= 0."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), 0)


def _l2_normalize(x, eps=1e-12):
  """Rows of x divided by max(norm, eps), like torch.nn.functional.normalize."""
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def cosine(embeddings, weight, *, precision=None) -> jax.Array:
  """Cosine similarity head: [B, D] x [C, D] -> [B, C], clipped to [-1, 1].

  Both operands are L2-normalised along D and multiplied in (at least) float32. The class centres
  are not normalised as a [C, D] copy: the product with the raw centres is scaled by their inverse
  norms per column, so neither the forward pass nor the gradient holds a second head in memory
  (the gradient's normalisation term is elementwise in the head and fuses into the update).
  """
  dtype = jnp.promote_types(_compute_dtype(embeddings), _compute_dtype(weight))
  e = _l2_normalize(jnp.asarray(embeddings, dtype))
  return jnp.clip(_scaled_product(e, jnp.asarray(weight, dtype), precision), -1, 1)


def _inverse_norms(w):
  return jax.lax.rsqrt(jnp.maximum(jnp.sum(w * w, axis=-1), 1e-24))  # 1 / max(norm, 1e-12)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _scaled_product(e, w, precision):
  """e @ (w / |w|)^T, with e [..., D] and w [C, D], as (e @ w^T) / |w| per column."""
  return jnp.einsum('...d,cd->...c', e, w, precision=precision) * _inverse_norms(w)


def _scaled_product_fwd(e, w, precision):
  r = _inverse_norms(w)
  return jnp.einsum('...d,cd->...c', e, w, precision=precision) * r, (e, w, r)


def _scaled_product_bwd(precision, residuals, g):
  """With u = w r: de = (g r) w; dw_c = r_c (g^T e)_c - r_c^3 w_c (w_c . (g^T e)_c) -- the
  second term, where the norm is not clamped, is the projection off w_c; both are one pass over
  the head after the single [C, D] product, which is the only head-sized temporary."""
  e, w, r = residuals
  gr = g * r
  de = jnp.einsum('...c,cd->...d', gr, w, precision=precision)
  gte = jnp.einsum('...c,...d->cd', gr, e, precision=precision)      # [C, D]
  unclamped = jnp.sum(w * w, axis=-1) > 1e-24
  along = jnp.where(unclamped, r * r * jnp.sum(w * gte, axis=-1), 0)  # [C]
  return de, gte - w * along[:, None]


_scaled_product.defvjp(_scaled_product_fwd, _scaled_product_bwd)


def _fallback_threshold(m1: float, m2: float) -> float:
  """Cosine below which m1 * theta + m2 > pi (theta in [0, pi]); +-inf when always / never."""
  theta_limit = (math.pi - m2) / m1
  if theta_limit >= math.pi:
    return -math.inf
  if theta_limit <= 0:
    return math.inf
  return math.cos(theta_limit)


def margin_target(c, *, m1=1.0, m2=0.5, m3=0.0, fallback=True):
  """phi(c) = cos(m1 * arccos(c) + m2) - m3, elementwise, with finite gradients on [-1, 1].

  For m1 == 1 it is computed as c * cos(m2) - sqrt(1 - c^2) * sin(m2). With fallback=True (SynFace's
  ArcMarginProduct) entries where m1 * theta + m2 > pi use c - m2 * sin(m2) - m3 instead (for
  m1 == 1: where c <= cos(pi - m2)); for m1 != 1 the same threshold on the angle and the same
  linear penalty are used. fallback=False is insightface's CombinedMarginLoss (no fallback).
  At |c| = 1 the square root's gradient is taken as 0.
  """
  if m1 <= 0:
    raise ValueError(f'm1 must be positive, got {m1}')
  sin_theta = _safe_sqrt(1 - c * c)
  if m1 == 1.0:
    phi = c * math.cos(m2) - sin_theta * math.sin(m2)
  else:
    theta = jnp.arctan2(sin_theta, c)
    phi = jnp.cos(m1 * theta + m2)
  phi = phi - m3
  if fallback:
    threshold = _fallback_threshold(m1, m2)
    phi = jnp.where(c > threshold, phi, c - m2 * math.sin(math.pi - m2) - m3)
  return phi


def margin_softmax_loss(cos, label: SoftLabel, *, scale, m1=1.0, m2=0.5, m3=0.0, fallback=True):
  """Soft-target combined-margin softmax cross-entropy.

  Args:
    cos: [B, C] cosines between embeddings and class centres (any float dtype; computed in at
      least float32). The class axis may be sharded: only elementwise ops and sums over it are used.
    label: SoftLabel with ids [B, K] (-1 = empty slot) and weights [B, K].
    scale: the logit scale s (e.g. 64 in insightface, 30 in SynFace).
    m1: multiplicative angular margin (a Python number, like m2 and m3).
    m2: additive angular margin (ArcFace).
    m3: additive cosine margin (CosFace).
    fallback: use c - m2 * sin(m2) - m3 where m1 * theta + m2 > pi (SynFace's ArcMarginProduct);
      False reproduces insightface's CombinedMarginLoss.

  Returns:
    (loss, logits): loss [B] = -sum_k weights[:, k] * log_softmax(logits)[ids[:, k]] over valid
    slots (0 for a row without valid slots); logits [B, C] = scale * (c + A * (phi(c) - c)), A being
    the dense target weights of the label.
  """
  dtype = _compute_dtype(cos)
  c = jnp.asarray(cos, dtype)
  targets = label.dense(c.shape[-1], dtype)
  phi = margin_target(c, m1=m1, m2=m2, m3=m3, fallback=fallback)
  logits = jnp.asarray(scale, dtype) * (c + targets * (phi - c))
  log_prob = jax.nn.log_softmax(logits, axis=-1)
  loss = -jnp.sum(targets * log_prob, axis=-1)
  return loss, logits
