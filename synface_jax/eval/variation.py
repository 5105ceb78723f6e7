"""Intra-class variation of labelled sets under one fixed embedding model (SynFace's Fig. 3).

    python -m synface_jax.evaluate variation --checkpoint runs/demo \\
        --sets /data/casia_subset,synthetic:100x10 --out reports/variation

For every set, on L2-normalised embeddings x with class means mu_c and overall mean mu:

  spread      per identity, the mean angle (degrees) between its faces and its centre direction
              mu_c / |mu_c|; reported as mean, std and median over identities
  within      mean over faces of |x - mu_c|^2 (the trace of the within-class scatter / M)
  between     mean over faces of |mu_c - mu|^2 (the trace of the between-class scatter / M)
  ratio       within / between
  concentration  |mu|, the length of the mean unit embedding: 0 when the faces spread over the
              sphere, 1 when they all map to one point. For unit vectors
              within + between = 1 - |mu|^2, so a set the model sees as nearly one person has
              little of either: the demo's renders measure 0.13, 75 aligned photographs 0.81
              (docs/results/demo.md)

A synthetic set `synthetic:NxM` (N held-out identities x M faces) is rendered once per identity
mixup setting (default Syn1 = off, Syn2 = fixed:0.8, Syn3 = linspace:0.6,1.0,11): face j of
identity i mixes i's coefficients with those of a random other identity of the set, weight phi on
i, and keeps label i, as the train step's identity mixup does. Every setting draws the same
partners, pose, lighting and expression, so only phi differs. `projection.png` shows the first
identities of each set side by side in the plane of its first two principal components (same
scale in every panel).
"""
import json
import os
from typing import Callable, Dict, Sequence

import numpy as np

IM_SETTINGS = (('Syn1', 'off'), ('Syn2', 'fixed:0.8'), ('Syn3', 'linspace:0.6,1.0,11'))


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def variation_stats(embeddings, labels) -> dict:
  """Spread, within- and between-class variance and their ratio (module docstring)."""
  x = _unit(embeddings)
  labels = np.asarray(labels).reshape(-1)
  if labels.size != x.shape[0]:
    raise ValueError(f'{x.shape[0]} embeddings for {labels.size} labels')
  classes, inverse = np.unique(labels, return_inverse=True)
  if classes.size < 2:
    raise ValueError(f'need at least 2 identities, got {classes.size}')
  counts = np.bincount(inverse)
  centres = np.zeros((classes.size, x.shape[1]))
  np.add.at(centres, inverse, x)
  centres /= counts[:, None]
  directions = _unit(centres)
  angles = np.degrees(np.arccos(np.clip(np.sum(x * directions[inverse], axis=1), -1.0, 1.0)))
  spread = np.bincount(inverse, weights=angles) / counts
  within = float(np.mean(np.sum((x - centres[inverse]) ** 2, axis=1)))
  overall = x.mean(axis=0)
  between = float(np.sum(counts * np.sum((centres - overall) ** 2, axis=1)) / x.shape[0])
  return {'identities': int(classes.size), 'images': int(x.shape[0]),
          'spread_mean': float(spread.mean()), 'spread_std': float(spread.std()),
          'spread_median': float(np.median(spread)), 'within': within, 'between': between,
          'ratio': within / between if between > 0 else float('inf'),
          'concentration': float(np.linalg.norm(overall))}


def pca_2d(x) -> np.ndarray:
  """[M, 2]: x centred and projected on its first two principal directions."""
  x = np.asarray(x, np.float64)
  centred = x - x.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  return centred @ vt[:2].T


def render_mixed(renderer, num_identities: int, per_identity: int, phi_spec: str,
                 batch_size: int = 64):
  """(images uint8 [N M, H, W, 3], labels [N M]): N held-out identities x M faces, each face's
  identity mixed with a random other identity of the set at weight phi ~ phi_spec on its own
  ('off': phi = 1). Partners, phi draws and nuisance are fixed by renderer.seed."""
  import jax  # pylint: disable=g-import-not-at-top
  from synface_jax import mixup  # pylint: disable=g-import-not-at-top
  from synface_jax.generators import sampling  # pylint: disable=g-import-not-at-top
  labels = np.repeat(np.arange(num_identities), per_identity)
  root = jax.random.fold_in(jax.random.key(renderer.seed), 11)
  k_partner, k_phi = jax.random.split(root)
  partners = np.asarray(mixup.sample_partners(k_partner, labels, num_identities))
  if phi_spec == 'off':
    phi = np.ones(labels.size, np.float32)
  else:
    phi = np.asarray(mixup.make_sampler(phi_spec)(k_phi, (labels.size,)), np.float32)
  first = renderer.first_identity
  k_face = jax.random.fold_in(jax.random.key(renderer.seed), 12)
  draws = jax.vmap(lambda i: jax.random.fold_in(k_face, i))(np.arange(labels.size))
  images, _, _ = sampling.faces_in_batches(
      renderer.generator, renderer.params, k_face, first + labels, draws,
      partners=(first + partners)[:, None], phi=phi, batch_size=batch_size)
  return images, labels


def projection_png(path, panels: Dict[str, tuple], title='', panel=(300, 300)):
  """Side-by-side scatter plots {name: (points [M, 2], labels [M])}, one colour per identity,
  every panel on the same scale (centred on its own mean)."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  from synface_jax.eval.plots import PALETTE  # pylint: disable=g-import-not-at-top
  reach = max([float(np.max(np.abs(p))) for p, _ in panels.values() if len(p)] + [1e-6])
  image = Image.new('RGB', (panel[0] * len(panels), panel[1] + 40), 'white')
  draw = ImageDraw.Draw(image)
  draw.text((8, 4), title, fill='black')
  for k, (name, (points, labels)) in enumerate(panels.items()):
    left, top, size = k * panel[0] + 10, 30, min(panel) - 20
    draw.rectangle([left, top, left + size, top + size], outline='black')
    draw.text((left + 4, top + size + 2), name, fill='black')
    _, colour_of = np.unique(labels, return_inverse=True)
    for (px, py), c in zip(np.asarray(points), colour_of):
      cx = left + size / 2 + px / reach * (size / 2 - 6)
      cy = top + size / 2 - py / reach * (size / 2 - 6)
      colour = PALETTE[int(c) % len(PALETTE)]
      draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
  if path is not None:
    image.save(path)
  return image


def markdown(results: dict) -> str:
  lines = [f"# Intra-class variation under {results['checkpoint']} (step {results['step']})", '',
           'Angles between L2-normalised embeddings (flip-summed) and their identity centre; '
           'within / between: traces of the within- and between-class scatter per face; '
           'concentration: length of the mean embedding (0: spread over the sphere, 1: one '
           'point).', '',
           '| set | identity mixup | identities | images | spread, degrees (mean ± std, median) '
           '| within | between | within / between | concentration |',
           '|---|---|---|---|---|---|---|---|---|']
  for name, s in results['sets'].items():
    lines.append(f"| {name} | {s.get('im', '-')} | {s['identities']} | {s['images']} | "
                 f"{s['spread_mean']:.2f} ± {s['spread_std']:.2f}, {s['spread_median']:.2f} | "
                 f"{s['within']:.4f} | {s['between']:.4f} | {s['ratio']:.4f} | "
                 f"{s['concentration']:.3f} |")
  lines += ['', f"Projection of the first {results['shown_identities']} identities of each set "
            '(PCA): [projection.png](projection.png)']
  return '\n'.join(lines) + '\n'


def run(embedder, sources: Sequence[str], out_dir: str, *, renderer=None,
        im_settings=IM_SETTINGS, shown_identities: int = 8, checkpoint: str = '',
        log: Callable[[str], None] = print) -> dict:
  """Statistics of every labelled source (synthetic ones once per IM setting); writes
  variation.json, variation.md and projection.png to out_dir."""
  from synface_jax.data import images as image_io  # pylint: disable=g-import-not-at-top
  from synface_jax.eval import sets  # pylint: disable=g-import-not-at-top
  from synface_jax.eval.report import _embed_both  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  size = tuple(embedder.spec.input_size)
  results = {'checkpoint': checkpoint, 'step': int(embedder.step),
             'shown_identities': shown_identities, 'sets': {}}
  panels = {}
  for source in sources:
    if source.split(':')[0] == 'synthetic':
      if renderer is None:
        raise ValueError(f'{source}: synthetic sets need a generator')
      grid = sets._parse_grid(source)  # pylint: disable=protected-access
      loads = [(f'{sets.set_name(source)} {name}', spec,
                lambda spec=spec: render_mixed(renderer, *grid, spec))
               for name, spec in im_settings]
    else:
      loads = [(sets.set_name(source), None, lambda source=source: sets.load_labelled(source))]
    for name, spec, load in loads:
      images, labels = load()
      _, flipped = _embed_both(embedder, image_io.fit_to_size(images, size))
      stats = variation_stats(flipped, labels)
      stats['source'] = source
      if spec is not None:
        stats['im'] = spec
      results['sets'][name] = stats
      shown = np.isin(labels, np.unique(labels)[:shown_identities])
      panels[name] = (pca_2d(_unit(flipped[shown])), labels[shown])
      log(f"{name}: {stats['identities']} identities, {stats['images']} images: spread "
          f"{stats['spread_mean']:.2f} deg, within / between {stats['ratio']:.4f}, "
          f"concentration {stats['concentration']:.3f}")
  projection_png(os.path.join(out_dir, 'projection.png'), panels,
                 title='first two principal components, one colour per identity')
  with open(os.path.join(out_dir, 'variation.json'), 'w') as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out_dir, 'variation.md'), 'w') as f:
    f.write(markdown(results))
  return results


def parse_im(spec: str):
  """'NAME=SPEC' or 'SPEC' (named by itself) -> (name, spec); SPEC checked ('off' allowed)."""
  from synface_jax import mixup  # pylint: disable=g-import-not-at-top
  name, sep, value = spec.partition('=')
  if not sep:
    name, value = spec, spec
  if value != 'off':
    mixup.make_sampler(value)
  return name, value

