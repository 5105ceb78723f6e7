"""Face identification: exact 1:N search in bounded memory, closed-set CMC and open-set DIR@FPIR.

Similarity is the dot product of L2-normalised embeddings (rows are normalised here).

* Search (`search`): for each probe chunk, one jitted program scans the gallery chunk by chunk
  (matrix product, then `lax.top_k` of the chunk merged into the running top k), so the memory
  in use is one gallery copy plus a [probe_chunk, gallery_chunk] score block, whatever the sizes:
  100K probes x 100K gallery runs as well as 100 x 100. With several devices each probe chunk is
  split over them (the gallery is copied to each), so they search in parallel. Equal scores go to
  the lower gallery index,
  as a stable sort would. With a reference score per probe the same pass counts the gallery
  entries that score strictly above it (the rank of a probe's mate, for the CMC).
* Closed set (`closed_set`): the gallery holds one image per identity (chosen with `seed`), every
  other image is a probe. A probe's rank is 1 + the number of gallery entries scoring strictly
  above its mate; CMC(r) is the fraction of probes of rank <= r.
* Open set (`open_set`): a seeded share of the identities is held out; the gallery holds one image
  of each remaining (enrolled) identity, mated probes are their other images and every image of a
  held-out identity is a non-mated probe (a distractor). A probe raises an alarm when its best
  gallery score exceeds the threshold; FPIR is the fraction of non-mated probes that raise one.
  At each FPIR target the threshold is the lowest with FPIR <= target, and DIR is the fraction
  of mated probes whose mate is the best match and scores above it (rank-1 DIR).
"""
import functools
from typing import Dict, Sequence

import numpy as np

CMC_MAX_RANK = 50
DEFAULT_FPIR_TARGETS = (1e-2, 1e-1)


def _normalise(x) -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.ndim != 2:
    raise ValueError(f'embeddings must be [N, D], got shape {x.shape}')
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=None)
def _chunk_program(k: int, with_ref: bool):
  """The jitted scan of the gallery chunks for one probe chunk."""
  import jax
  import jax.numpy as jnp

  def run(queries, ref, mate, gallery, valid):
    # queries [P, D]; gallery [C, G, D]; valid [C, G]; ref [P]; mate [P] (-1: none).
    chunk = gallery.shape[1]

    def body(carry, inputs):
      best_s, best_i, count = carry
      g, v, offset = inputs
      s = jnp.where(v[None, :], queries @ g.T, -jnp.inf)
      if with_ref:
        column = offset + jnp.arange(chunk)
        above = (s > ref[:, None]) & (column[None, :] != mate[:, None])
        count = count + jnp.sum(above, axis=1, dtype=jnp.int32)
      top_s, top_i = jax.lax.top_k(s, k)
      merged_s = jnp.concatenate([best_s, top_s], axis=1)
      merged_i = jnp.concatenate([best_i, top_i + offset], axis=1)
      keep_s, pick = jax.lax.top_k(merged_s, k)
      return (keep_s, jnp.take_along_axis(merged_i, pick, axis=1), count), None

    p = queries.shape[0]
    init = (jnp.full((p, k), -jnp.inf, queries.dtype), jnp.full((p, k), -1, jnp.int32),
            jnp.zeros((p,), jnp.int32))
    offsets = jnp.arange(gallery.shape[0], dtype=jnp.int32) * chunk
    (scores, index, count), _ = jax.lax.scan(body, init, (gallery, valid, offsets))
    return scores, index, count

  return jax.jit(run)


def search(probes, gallery, k: int = 5, *, mate=None, probe_chunk: int = 1024,
           gallery_chunk: int = 8192):
  """Exact top-k gallery matches of every probe by cosine similarity, in bounded memory.

  Args:
    probes: [P, D] embeddings.
    gallery: [G, D] embeddings.
    k: matches kept per probe (at most G).
    mate: optional [P] gallery index of each probe's mate (-1 for none): then also returns, per
      probe, how many OTHER gallery entries score strictly above its mate.
    probe_chunk: probes per jitted call (the last chunk is padded: one compile); rounded up to a
      multiple of the device count, each device searching its share.
    gallery_chunk: gallery rows per scan step.

  Returns:
    (scores float32 [P, k], indices int32 [P, k]) best first, plus (mate_scores [P], above [P])
    when `mate` is given.
  """
  import jax
  q, g = _normalise(probes), _normalise(gallery)
  if q.shape[1] != g.shape[1]:
    raise ValueError(f'probes have {q.shape[1]} dims, the gallery {g.shape[1]}')
  n_probe, n_gallery = q.shape[0], g.shape[0]
  if n_gallery == 0:
    raise ValueError('empty gallery')
  if not 1 <= k <= n_gallery:
    raise ValueError(f'k must lie in [1, {n_gallery}] (the gallery size), got {k}')
  gallery_chunk = max(min(gallery_chunk, n_gallery), k)
  devices = jax.devices()
  probe_chunk = max(1, min(probe_chunk, n_probe))
  probe_chunk = -(-probe_chunk // len(devices)) * len(devices)
  mesh = jax.sharding.Mesh(np.array(devices), ('probes',))
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('probes'))
  copied = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  n_chunks = -(-n_gallery // gallery_chunk)
  padded = np.zeros((n_chunks * gallery_chunk, g.shape[1]), np.float32)
  padded[:n_gallery] = g
  valid = np.arange(n_chunks * gallery_chunk) < n_gallery
  g_dev = jax.device_put(padded.reshape(n_chunks, gallery_chunk, -1), copied)
  valid_dev = jax.device_put(valid.reshape(n_chunks, gallery_chunk), copied)
  with_ref = mate is not None
  if with_ref:
    mate = np.asarray(mate, np.int64).reshape(-1)
    if mate.shape != (n_probe,):
      raise ValueError(f'mate must have shape ({n_probe},), got {mate.shape}')
    if np.any(mate >= n_gallery) or np.any(mate < -1):
      raise ValueError(f'mate indices must lie in [-1, {n_gallery})')
    mate_scores = np.where(mate >= 0, np.sum(q * g[np.maximum(mate, 0)], axis=1), -np.inf)
  else:
    mate = np.full(n_probe, -1)
    mate_scores = np.zeros(n_probe, np.float32)
  program = _chunk_program(int(k), with_ref)
  scores, index, above = [], [], []
  for start in range(0, n_probe, probe_chunk):
    stop = min(start + probe_chunk, n_probe)
    pad = probe_chunk - (stop - start)
    chunk_q = np.concatenate([q[start:stop], np.zeros((pad, q.shape[1]), np.float32)])
    chunk_ref = np.concatenate([mate_scores[start:stop], np.zeros(pad)]).astype(np.float32)
    chunk_mate = np.concatenate([mate[start:stop], np.full(pad, -1)]).astype(np.int32)
    s, i, c = program(*jax.device_put((chunk_q, chunk_ref, chunk_mate), split), g_dev, valid_dev)
    scores.append(np.asarray(s)[:stop - start])
    index.append(np.asarray(i)[:stop - start])
    above.append(np.asarray(c)[:stop - start])
  scores = np.concatenate(scores) if scores else np.zeros((0, k), np.float32)
  index = np.concatenate(index) if index else np.zeros((0, k), np.int32)
  if not with_ref:
    return scores, index
  above = np.concatenate(above) if above else np.zeros(0, np.int32)
  return scores, index, mate_scores.astype(np.float32), above


def split_gallery(labels, seed: int = 0):
  """(gallery indices, probe indices): one seeded image per identity in the gallery, the rest probes.

  Both are sorted; identities appear in the gallery in the order of their labels.
  """
  labels = np.asarray(labels).reshape(-1)
  rng = np.random.default_rng(seed)
  order = rng.permutation(labels.size)
  # The first image of each identity in the shuffled order goes to the gallery.
  _, first = np.unique(labels[order], return_index=True)
  gallery = np.sort(order[first])
  is_gallery = np.zeros(labels.size, bool)
  is_gallery[gallery] = True
  return gallery, np.nonzero(~is_gallery)[0]


def cmc_curve(ranks, max_rank: int) -> np.ndarray:
  """CMC(r) for r = 1 .. max_rank: the fraction of probes whose rank is at most r."""
  ranks = np.asarray(ranks).reshape(-1)
  if ranks.size == 0:
    raise ValueError('no probes')
  return np.array([np.mean(ranks <= r) for r in range(1, max_rank + 1)])


def mate_ranks(probes, probe_labels, gallery, gallery_labels, **search_kwargs):
  """(ranks [P] of each probe's mate (1 = best match), top-1 scores [P], mate scores [P]).

  Every probe label must appear exactly once among the gallery labels.
  """
  probe_labels, gallery_labels = np.asarray(probe_labels), np.asarray(gallery_labels)
  where = {label: i for i, label in enumerate(gallery_labels.tolist())}
  if len(where) != gallery_labels.size:
    raise ValueError('the gallery must hold one entry per identity')
  missing = [l for l in probe_labels.tolist() if l not in where]
  if missing:
    raise ValueError(f'probe identity {missing[0]!r} has no gallery entry')
  mate = np.array([where[l] for l in probe_labels.tolist()], np.int64)
  top, _, mate_scores, above = search(probes, gallery, 1, mate=mate, **search_kwargs)
  return above.astype(np.int64) + 1, top[:, 0], mate_scores


def closed_set(embeddings, labels, seed: int = 0, max_rank: int = CMC_MAX_RANK,
               **search_kwargs) -> Dict[str, object]:
  """Closed-set identification (see the module docstring).

  Returns:
    {'rank1', 'rank5', 'cmc' (list, ranks 1 .. min(max_rank, gallery)), 'gallery', 'probes',
    'identities'}.
  """
  e = _normalise(embeddings)
  labels = np.asarray(labels).reshape(-1)
  if labels.size != e.shape[0]:
    raise ValueError(f'{e.shape[0]} embeddings for {labels.size} labels')
  gallery, probes = split_gallery(labels, seed)
  if probes.size == 0:
    raise ValueError('closed-set identification needs identities with at least 2 images')
  ranks, _, _ = mate_ranks(e[probes], labels[probes], e[gallery], labels[gallery], **search_kwargs)
  cmc = cmc_curve(ranks, min(max_rank, gallery.size))
  at = lambda r: float(np.mean(ranks <= r))
  return {'rank1': at(1), 'rank5': at(5), 'cmc': cmc.tolist(), 'gallery': int(gallery.size),
          'probes': int(probes.size), 'identities': int(gallery.size)}


def dir_at_fpir(mated_ranks, mated_scores, nonmated_top, fpir_targets=DEFAULT_FPIR_TARGETS):
  """Rank-1 DIR at each FPIR target (see the module docstring).

  Args:
    mated_ranks: [M] rank of each mated probe's mate.
    mated_scores: [M] its mate's score.
    nonmated_top: [N] best gallery score of each non-mated probe.
    fpir_targets: FPIR targets in (0, 1].

  Returns:
    {target: {'dir', 'fpir', 'threshold', 'fpir_resolved'}}: an alarm is a score > threshold.
  """
  mated_ranks = np.asarray(mated_ranks).reshape(-1)
  mated_scores = np.asarray(mated_scores, np.float64).reshape(-1)
  nonmated_top = np.sort(np.asarray(nonmated_top, np.float64).reshape(-1))[::-1]
  if nonmated_top.size == 0 or mated_scores.size == 0:
    raise ValueError('DIR@FPIR needs mated and non-mated probes')
  n = nonmated_top.size
  out = {}
  for target in fpir_targets:
    target = float(target)
    if not 0.0 < target <= 1.0:
      raise ValueError(f'FPIR targets must lie in (0, 1], got {target}')
    allowed = int(np.floor(target * n + 1e-9))
    # Alarms are scores > threshold: reject the (allowed + 1)-th highest non-mated score and all
    # equal to it; fewer alarms when it ties higher ones.
    threshold = -np.inf if allowed >= n else nonmated_top[allowed]
    fpir = float(np.mean(nonmated_top > threshold))
    hit = (mated_ranks == 1) & (mated_scores > threshold)
    out[target] = {'dir': float(np.mean(hit)), 'fpir': fpir, 'threshold': float(threshold),
                   'fpir_resolved': bool(n * target >= 1.0)}
  return out


def open_set_split(labels, seed: int = 0, distractor_fraction: float = 0.2):
  """(gallery, mated probes, non-mated probes) indices of the open-set protocol, and the number of
  held-out identities: a seeded `distractor_fraction` of the identities is held out."""
  labels = np.asarray(labels).reshape(-1)
  if not 0.0 < distractor_fraction < 1.0:
    raise ValueError(f'distractor_fraction must lie in (0, 1), got {distractor_fraction}')
  identities = np.unique(labels)
  n_held = int(round(distractor_fraction * identities.size))
  if n_held < 1 or n_held >= identities.size:
    raise ValueError(f'{identities.size} identities cannot be split into enrolled ones and a '
                     f'held-out share of {distractor_fraction:g}')
  rng = np.random.default_rng([seed, 1])
  held = np.isin(labels, rng.choice(identities, n_held, replace=False))
  enrolled = np.nonzero(~held)[0]
  gallery, mated = (enrolled[i] for i in split_gallery(labels[enrolled], seed))
  return gallery, mated, np.nonzero(held)[0], n_held


def open_set(embeddings, labels, seed: int = 0, distractor_fraction: float = 0.2,
             fpir_targets: Sequence[float] = DEFAULT_FPIR_TARGETS, **search_kwargs
             ) -> Dict[str, object]:
  """Open-set identification with held-out identities as distractors (see the module docstring).

  Returns:
    {'dir_at_fpir': {key: {...}}, 'enrolled', 'distractor_identities', 'mated_probes',
    'nonmated_probes'}; keys as `metrics.far_key`.
  """
  from synface_jax.eval.metrics import far_key
  e = _normalise(embeddings)
  labels = np.asarray(labels).reshape(-1)
  if labels.size != e.shape[0]:
    raise ValueError(f'{e.shape[0]} embeddings for {labels.size} labels')
  gallery, mated, nonmated, n_held = open_set_split(labels, seed, distractor_fraction)
  if mated.size == 0:
    raise ValueError('open-set identification needs enrolled identities with at least 2 images')
  ranks, _, mate_scores = mate_ranks(e[mated], labels[mated], e[gallery], labels[gallery],
                                     **search_kwargs)
  top, _ = search(e[nonmated], e[gallery], 1, **search_kwargs)
  at = dir_at_fpir(ranks, mate_scores, top[:, 0], fpir_targets)
  return {'dir_at_fpir': {far_key(f): v for f, v in at.items()}, 'enrolled': int(gallery.size),
          'distractor_identities': int(n_held), 'mated_probes': int(mated.size),
          'nonmated_probes': int(nonmated.size)}
