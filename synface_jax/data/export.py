"""Offline export of a synthetic set Syn_N_S, in SynFace's released layout and as TFDS ArrayRecord.

Image j of identity i is rendered by the train step's path (`generators.sampling.faces`) from the
same nuisance draw it uses for Syn_N_S (`sampling.fixed_draws`), rounded to uint8 (`to_uint8`),
with identity mixup when a phi sampler is given: partner and phi are drawn per image from key
fold_in(key(seed), i * S + j) and phi is rounded to the 3 decimals the file name keeps, before
rendering (as SynFace does). The mixup is the train step's (config.im.fn, `mix`), applied to each
image on its own with a key of that image, so a mixup that draws from its key writes the same file
whatever the batch size. Files are
`{i+1:05}/{j+1:03}_{i+1:05}x{phi:.3f}_({partner+1:05})x{1-phi:.3f}.jpg`; without mixup the partner
is the identity itself with weight 0. `to_tfds` then builds the folder as a `synface_mixup` TFDS
dataset, whose examples carry the soft labels.
"""
from concurrent import futures
import os

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax import mixup, seeds
from synface_jax.data import images, synface_names
from synface_jax.generators import sampling

_MIXUP_STREAM = 2  # fold_in of an image's key (partner, phi) for the mixup's own draws.


def _label_fn(num_identities: int, images_per_identity: int, phi_sampler, seed: int):
  """(flat image numbers [B]) -> (ids, partners, phi): what names a file, without rendering it."""

  def labels(numbers):
    ids = numbers // images_per_identity
    if phi_sampler is None:
      return ids, ids, jnp.ones(ids.shape, jnp.float32)
    keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.key(seed), n))(numbers)
    k_partner, k_phi = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
    partners = jax.vmap(lambda k, i: mixup.sample_partners(k, i, num_identities))(k_partner, ids)
    phi = jax.vmap(lambda k: phi_sampler(k, ()))(k_phi).astype(jnp.float32)
    return ids, partners, jnp.round(phi * 1000.0) / 1000.0
  return labels


def per_image(mix, keys):
  """The `types.Mixup` `mix` applied to each face of a batch alone (as a batch of one), face b
  with keys[b]; the key the batch's call gets is not used."""

  def mixed(key, a, label_a, b, label_b, phi):
    del key
    one = lambda k, *face: jax.tree.map(
        lambda x: x[0], mix(k, *jax.tree.map(lambda x: x[None], face)))
    return jax.vmap(one)(keys, a, label_a, b, label_b, phi)
  return mixed


def _render_fn(generator, images_per_identity: int, mixed: bool, draw_seed: int, seed: int, mix):
  """A jitted (params, flat image numbers [B], partners [B], phi [B]) -> uint8 images."""

  def render(params, numbers, partners, phi):
    ids = numbers // images_per_identity
    draws = sampling.fixed_draws(draw_seed, ids, numbers % images_per_identity)
    keys = jax.vmap(lambda n: jax.random.fold_in(
        jax.random.fold_in(jax.random.key(seed), n), _MIXUP_STREAM))(numbers)
    images, _, _ = sampling.faces(generator, params, None, ids, draws,
                                  partners=partners[:, None] if mixed else None, phi=phi,
                                  mix=per_image(mix, keys))
    return sampling.to_uint8(images)
  return jax.jit(render)


def export_folder(generator, gen_params, out_dir: str, *, num_identities: int,
                  images_per_identity: int, phi_sampler=None, seed: int = 0,
                  draw_seed: int = seeds.seed(0, 'draws'),
                  batch_size: int = 64, quality: int = 95,
                  mix=mixup.mix_identities) -> dict:
  """Renders Syn_N_S into `out_dir` in SynFace's naming; returns counts.

  seed: partners and phi; draw_seed: the nuisance draws. A run's own, seeds.seed(config.seed,
  'draws'), reproduces the faces its train step renders (the default: config.seed 0's).
  mix: the identity mixup with a phi sampler, a `types.Mixup` on Factors (config.im.fn's,
    `extensions.mixup`); a face of (identity, draw, partner, phi) is what the train step renders.
  Resumes: a file already there and complete is kept, and batches whose files are all there are
  not rendered. Each file is written under a temporary name and then renamed, so a job killed
  mid-file leaves no partial image behind (only a `.part` file, replaced on the next run).
  """
  if num_identities < 2 or images_per_identity < 1:
    raise ValueError(f'need at least 2 identities and 1 image each, got {num_identities} x '
                     f'{images_per_identity}')
  from synface_jax import progress
  labels = jax.jit(_label_fn(num_identities, images_per_identity, phi_sampler, seed))
  render = _render_fn(generator, images_per_identity, phi_sampler is not None, draw_seed, seed,
                      mix)
  total = num_identities * images_per_identity
  for i in range(num_identities):
    os.makedirs(os.path.join(out_dir, synface_names.folder_name(i)), exist_ok=True)
  # Every file's name first (no rendering), so that files already written are skipped.
  all_ids, all_partners, all_phi = jax.device_get(labels(jnp.arange(total)))
  batches = []
  kept = 0
  for start in range(0, total, batch_size):
    numbers = np.arange(start, start + batch_size) % total  # The last batch wraps; cut below.
    paths = []
    for n in range(start, min(start + batch_size, total)):
      i, j = int(all_ids[n]), n % images_per_identity
      name = synface_names.file_name(i, j, float(all_phi[n]), int(all_partners[n]))
      paths.append(os.path.join(out_dir, synface_names.folder_name(i), name))
    missing = [k for k, path in enumerate(paths) if not is_complete(path)]
    kept += len(paths) - len(missing)
    if missing:
      batches.append((numbers, paths, missing))
  bar = progress.Progress(f'export {out_dir}', total, unit='images', done=kept)
  with futures.ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
    for numbers, paths, missing in batches:
      pixels = jax.device_get(render(gen_params, jnp.asarray(numbers), all_partners[numbers],
                                     all_phi[numbers]))
      jobs = [pool.submit(_write, paths[k], pixels[k], quality) for k in missing]
      for job in jobs:
        job.result()
      bar.update(len(missing))
  bar.close()
  return {'path': out_dir, 'identities': num_identities, 'images': total,
          'identity_mixup': phi_sampler is not None, 'written': total - kept, 'kept': kept}


def is_complete(path: str) -> bool:
  """Whether a JPEG is there in full (ends with the end-of-image marker)."""
  try:
    with open(path, 'rb') as f:
      f.seek(0, os.SEEK_END)
      if f.tell() < 4:
        return False
      f.seek(-2, os.SEEK_END)
      return f.read(2) == b'\xff\xd9'
  except OSError:
    return False


def _write(path: str, pixels: np.ndarray, quality: int) -> None:
  folder, name = os.path.split(path)
  part = os.path.join(folder, f'.{name}.part')
  with open(part, 'wb') as f:
    f.write(images.encode_jpeg(pixels, quality))
  os.replace(part, path)


def to_tfds(out_dir: str, data_dir: str = ''):
  """Builds the exported folder as a `synface_mixup` TFDS dataset (ArrayRecord); its builder."""
  from synface_jax.data import prepare
  builder, _ = prepare.prepare(out_dir, 'synface', data_dir)
  return builder
