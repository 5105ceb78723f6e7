"""The one path from pool identities and nuisance draws to rendered, labelled faces.

    ids [B], draw keys [B]
      -> generator.identity, generator.sample      Factors of each face (its own nuisance draw)
      -> identity mixup with P partners            a `types.Mixup` (config.im.fn), when partners given
      -> generator.render                          images [B, H, W, 3] in [-1, 1]
      => (images, SoftLabel, Factors)

`faces` is that path. The train step (`synthetic_batch`), data export, `generate --npz`,
synthetic verification pairs and the benchmark all call it; they differ only in how they choose
the identities, the draws and the mixing (partners, phi).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax import mixup as mixup_lib
from synface_jax.generators import augment
from synface_jax.types import SoftLabel

_AUGMENT_STREAM = 0xA06  # fold_in of a synthetic batch's key for its augmentation draws.
_MIXUP_STREAM = 0x313   # fold_in of a synthetic batch's key for the mixup's own draws.


def fixed_draws(draw_seed: int, ids, draws) -> jax.Array:
  """PRNG keys [B] of Syn_N_S's fixed nuisance draws: draw j of identity i is keyed by
  fold_in(fold_in(key(draw_seed), i), j), whoever renders it (train step or export)."""
  root = jax.random.key(draw_seed)
  return jax.vmap(lambda i, j: jax.random.fold_in(jax.random.fold_in(root, i), j))(ids, draws)


def partner_ids(key, ids, num_identities: int, count: int = 1) -> jax.Array:
  """int32 [B, count] partner identities of each id, each uniform over the other identities.

  The first column is `mixup.sample_partners(key, ids, N)`; column p > 0 uses fold_in(key, p).
  """
  keys = [key] + [jax.random.fold_in(key, p) for p in range(1, count)]
  return jnp.stack([mixup_lib.sample_partners(k, ids, num_identities) for k in keys], axis=-1)


def faces(generator, params, key, ids, draws, *, partners=None, phi=None,
          mix=mixup_lib.mix_identities):
  """Renders the faces of pool identities `ids` with nuisance draws `draws`, identity-mixed with
  `partners` when given.

  Args:
    generator: a `types.Generator`; params: its parameters.
    key: PRNG key of the mixup's own draws (the built-in mixup draws none).
    ids: int32 [B] pool identities.
    draws: PRNG keys [B], the nuisance draw of each face (`fixed_draws` for Syn_N_S's).
    partners: None (no identity mixup) or int32 [B, P] partner identities of each face; partner p
      of face b shows the nuisance draw fold_in(draws[b], p + 1).
    phi: float32 [B], the mixup's weight (the share of ids), with partners.
    mix: the identity mixup, a `types.Mixup` on Factors.

  Returns:
    (images float32 [B, H, W, 3] in [-1, 1], SoftLabel [B, K], Factors [B] rendered); K = 1
    without partners, 1 + P with SynFace's mixup.
  """
  def sample(ids, draws):
    identity = jax.vmap(generator.identity, (None, 0))(params, ids)
    return jax.vmap(generator.sample)(draws, identity)

  factors = sample(ids, draws)
  label = SoftLabel.one_hot(ids)
  if partners is not None:
    partners = jnp.asarray(partners, jnp.int32)
    count = partners.shape[1]
    partner_draws = jax.vmap(lambda k: jax.vmap(lambda p: jax.random.fold_in(k, p + 1))(
        jnp.arange(count)))(draws)
    others = jax.vmap(sample, in_axes=1, out_axes=1)(partners, partner_draws)
    others_label = SoftLabel(partners, jnp.full(partners.shape, 1.0 / count, jnp.float32))
    factors, label = mix(key, factors, label, others, others_label, phi)
  images, _ = generator.render(params, factors)
  return images, label, factors


def synthetic_batch(generator, gen_params, key, batch_size: int, num_identities: int,
                    images_per_identity: int, phi_sampler=None, draw_seed: int = 0,
                    augment_options: augment.Augment | None = None, *,
                    mix=mixup_lib.mix_identities, num_partners: int = 1):
  """The train step's synthetic batch: rendered faces of random pool identities, identity-mixed
  when phi_sampler is given.

  With images_per_identity = S > 0 identity i has exactly S fixed nuisance draws (SynFace's
  Syn_N_S): the j-th is keyed by (draw_seed, i, j) (`fixed_draws`). With S = 0 every face gets a
  fresh draw. The renders then go through `augment_options` (camera and detector effects, any
  generator), keyed afresh at every step so a fixed draw is seen under different degradations.
  Returns (images [B, H, W, 3], SoftLabel with K = 1, or K = 1 + P after identity mixup).
  """
  k_id, k_img, k_partner, k_phi = jax.random.split(key, 4)
  ids = jax.random.randint(k_id, (batch_size,), 0, num_identities)
  if images_per_identity > 0:
    draws = fixed_draws(draw_seed, ids,
                        jax.random.randint(k_img, (batch_size,), 0, images_per_identity))
  else:
    draws = jax.random.split(k_img, batch_size)
  partners = phi = None
  if phi_sampler is not None:
    partners = partner_ids(k_partner, ids, num_identities, num_partners)
    phi = phi_sampler(k_phi, (batch_size,))
  images, label, _ = faces(generator, gen_params, jax.random.fold_in(key, _MIXUP_STREAM), ids,
                           draws, partners=partners, phi=phi, mix=mix)
  if augment_options is not None:
    images = augment.augment(jax.random.fold_in(key, _AUGMENT_STREAM), images, augment_options)
  return jax.lax.stop_gradient(images), label


def to_uint8(images) -> jax.Array:
  """[-1, 1] float images -> uint8 RGB, rounded to the nearest level (traceable)."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


@functools.lru_cache(maxsize=None)
def _jitted_faces(generator, mix):
  return jax.jit(lambda params, key, ids, draws, partners, phi: faces(
      generator, params, key, ids, draws, partners=partners, phi=phi, mix=mix))


def faces_in_batches(generator, params, key, ids, draws, *, partners=None, phi=None,
                     batch_size: int = 64, mix=mixup_lib.mix_identities, progress: str = ''):
  """`faces` over any number of faces, `batch_size` at a time (one compiled shape: the last batch
  is padded). Returns (uint8 images [N, H, W, 3], SoftLabel, Factors) as numpy arrays.

  progress: when given, the name on progress lines (synface_jax.progress) counting the faces.
  """
  from synface_jax import progress as progress_lib  # pylint: disable=g-import-not-at-top
  fn = _jitted_faces(generator, mix)
  n = len(ids)
  bar = progress_lib.Progress(progress, n, unit='faces') if progress else None
  out = []
  for start in range(0, n, batch_size):
    take = np.minimum(np.arange(start, start + batch_size), n - 1)
    pick = lambda a: None if a is None else jnp.asarray(np.asarray(a)[take])
    images, label, factors = fn(params, key, pick(ids), draws[take], pick(partners), pick(phi))
    keep = min(batch_size, n - start)
    out.append((np.asarray(to_uint8(images))[:keep],
                jax.tree.map(lambda a: np.asarray(a)[:keep], (label, factors))))
    if bar:
      bar.update(keep)
  if bar:
    bar.close()
  label, factors = jax.tree.map(lambda *a: np.concatenate(a), *[o[1] for o in out])
  return np.concatenate([o[0] for o in out]), label, factors
