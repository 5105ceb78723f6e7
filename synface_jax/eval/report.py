"""`python -m synface_jax.evaluate run`: every verification and identification figure of one model.

    python -m synface_jax.evaluate run --checkpoint runs/demo \\
        --sets lfw.bin,/data/lfw:pairs.txt,synthetic:600 --identification synthetic:100x10 \\
        --out reports/demo

For every pair set and both protocols: the 10-fold accuracy (and VAL@FAR=1e-3 for insightface's)
exactly as `synface_jax.eval.protocols` computes them, then AUC, EER and TAR@FAR on all pairs at once
(`eval.metrics`), the ROC and the genuine/impostor similarity histograms. For every labelled set:
closed-set rank-1/rank-5 and CMC, open-set DIR@FPIR (`eval.identification`). Written to --out:

  results.json            every figure (and the ROC at FAR 1e-6 .. 1, the histograms, the CMC)
  report.md               one table: set x protocol x metric
  roc_PROTOCOL.png        one curve per pair set, log FAR axis
  hist_SET_PROTOCOL.png   genuine / impostor cosine similarity histograms
  attributes_SET_PROTOCOL.png  rendered pair sets: accuracy and TAR@FAR by pose, lighting and
                          expression bins (`eval.attributes`), also a table in report.md
  cmc.png                 one curve per identification set

The model comes from the checkpoint's model.json (`load_embedder`). Protocol scores: insightface
uses cosine similarity of flip-summed embeddings (the same order as its squared L2 distance of
normalised ones), synface the cosine of plain embeddings. Identification uses flip-summed ones.
"""
import json
import os
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from synface_jax.data import images as image_io
from synface_jax.eval import attributes, identification, metrics, plots, sets
from synface_jax.eval import protocols as protocols_lib

ROC_GRID = tuple(10.0 ** e for e in np.arange(-6, 0.25, 0.25))


def _embed_both(embedder, images):
  """(plain embeddings, flip-summed embeddings), raw (not normalised), of uint8 images."""
  plain = embedder(images)
  flipped = embedder(np.ascontiguousarray(images[:, :, ::-1]))
  return plain, plain + flipped


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pair_scores(plain, flipped, protocol: str) -> np.ndarray:
  """Per-pair similarity a protocol ranks pairs by, from interleaved embeddings [2N, D]."""
  if protocol == 'insightface':
    e = _unit(flipped)
    return np.sum(e[0::2] * e[1::2], axis=1)
  return protocols_lib.synface_cosine(plain[0::2].astype(np.float64), plain[1::2].astype(np.float64))


def verification_figures(plain, flipped, issame, protocols=('insightface', 'synface'),
                         far_targets: Sequence[float] = metrics.DEFAULT_FAR_TARGETS) -> dict:
  """{protocol: figures} of interleaved pair embeddings (see the module docstring)."""
  out = {}
  for protocol in protocols:
    emb = flipped if protocol == 'insightface' else plain
    r = protocols_lib.verify(emb[0::2], emb[1::2], issame, protocol)
    figures = {'accuracy': float(r['accuracy']), 'std': float(r['std'])}
    if 'val' in r:
      figures.update(val=float(r['val']), val_std=float(r['val_std']), far=float(r['far']))
    scores = pair_scores(plain, flipped, protocol)
    figures.update(metrics.verification_metrics(scores, issame, far_targets))
    genuine, impostor = scores[issame], scores[~issame]
    grid = metrics.tar_at_far(genuine, impostor, ROC_GRID)
    figures['roc'] = {'far': [v['far'] for v in grid.values()],
                      'tar': [v['tar'] for v in grid.values()]}
    figures['histogram'] = metrics.histograms(genuine, impostor, bins=50, value_range=(-1.0, 1.0))
    out[protocol] = figures
  return out


def identification_figures(embeddings, labels, seed: int = 0,
                           fpir_targets=identification.DEFAULT_FPIR_TARGETS,
                           distractor_fraction: float = 0.2) -> dict:
  return {
      'images': int(len(labels)), 'identities': int(np.unique(labels).size),
      'closed_set': identification.closed_set(embeddings, labels, seed),
      'open_set': identification.open_set(embeddings, labels, seed, distractor_fraction,
                                          fpir_targets),
  }


def _unique_name(name, taken):
  out, k = name, 2
  while out in taken:
    out, k = f'{name}_{k}', k + 1
  return out


def _fmt(v) -> str:
  return f'{v:.4f}'


def markdown(results: dict) -> str:
  """report.md: one table, set x protocol x metric."""
  lines = [f"# Evaluation of {results['checkpoint']} (step {results['step']})", '',
           f"Model: {results['model']['arch']}, width {results['model']['width']}, "
           f"{results['model']['input_size'][0]}x{results['model']['input_size'][1]} input, "
           f"{results['model']['num_features']}-d embeddings. Seed {results['seed']}.", '',
           '| set | protocol | metric | value |', '|---|---|---|---|']
  for name, entry in results['verification'].items():
    for protocol, f in entry['protocols'].items():
      rows = [('accuracy (10 folds)', f"{_fmt(f['accuracy'])} ± {_fmt(f['std'])}")]
      if 'val' in f:
        rows.append((f"VAL@FAR={f['far_target']:g} (10 folds)",
                     f"{_fmt(f['val'])} ± {_fmt(f['val_std'])}"))
      rows += [('AUC', _fmt(f['auc'])), ('EER', _fmt(f['eer']))]
      for key, at in f['tar_at_far'].items():
        note = '' if at['far_resolved'] else ' (too few impostor pairs: FAR 0)'
        rows.append((f'TAR@FAR={key}', _fmt(at['tar']) + note))
      lines += [f'| {name} | {protocol} | {m} | {v} |' for m, v in rows]
  for name, entry in results['identification'].items():
    c, o = entry['closed_set'], entry['open_set']
    lines.append(f"| {name} | closed set ({c['gallery']} gallery, {c['probes']} probes) | rank-1 | "
                 f"{_fmt(c['rank1'])} |")
    lines.append(f"| {name} | closed set | rank-5 | {_fmt(c['rank5'])} |")
    for key, at in o['dir_at_fpir'].items():
      note = '' if at['fpir_resolved'] else ' (too few distractors: FPIR 0)'
      lines.append(f"| {name} | open set ({o['enrolled']} enrolled, {o['nonmated_probes']} "
                   f"distractor probes) | DIR@FPIR={key} | {_fmt(at['dir'])}{note} |")
  with_attributes = {n: e for n, e in results['verification'].items() if 'attributes' in e}
  if with_attributes:
    targets = results['far_targets']
    lines += ['', '## By rendered attribute', '',
              'Pairs binned by what the renderer drew (quantile bins; for a pair the harder face '
              'counts). Accuracy: each pair decided by its fold\'s protocol threshold. TAR@FAR: at '
              'the threshold where the whole set reaches that FAR, with the bin\'s own FAR in '
              'brackets.', ''] + attributes.markdown_header(targets)
    for name, entry in with_attributes.items():
      for protocol, by_attribute in entry['attributes'].items():
        lines += attributes.markdown_rows(name, protocol, by_attribute, targets)
  lines += ['', 'Figures: ' + ', '.join(f'[{p}]({p})' for p in results['figures']), '',
            'Accuracy and VAL are the 10-fold protocols of `synface_jax.eval.protocols`; AUC, EER and '
            'TAR@FAR use all pairs at once (insightface: cosine of flip-summed embeddings; synface: '
            'cosine). Identification: cosine of flip-summed embeddings, one gallery image per '
            'identity; DIR is rank-1.']
  return '\n'.join(lines) + '\n'


def run(embedder, pair_sources: Sequence[str], out_dir: str, *,
        identification_sources: Sequence[str] = (), renderer: Optional[sets.Renderer] = None,
        protocols=('insightface', 'synface'),
        far_targets: Sequence[float] = metrics.DEFAULT_FAR_TARGETS,
        fpir_targets: Sequence[float] = identification.DEFAULT_FPIR_TARGETS,
        distractor_fraction: float = 0.2, seed: int = 0, checkpoint: str = '',
        log: Callable[[str], None] = print) -> dict:
  """Evaluates `embedder` (an Embedder built with normalize=False) on every set; writes the report."""
  os.makedirs(out_dir, exist_ok=True)
  size = tuple(embedder.spec.input_size)
  results = {'checkpoint': checkpoint, 'step': int(embedder.step),
             'model': {'arch': embedder.spec.arch, 'width': embedder.spec.width,
                       'num_features': embedder.spec.num_features,
                       'input_size': list(size)},
             'seed': seed, 'far_targets': [float(f) for f in far_targets],
             'fpir_targets': [float(f) for f in fpir_targets], 'verification': {},
             'identification': {}, 'figures': []}
  if renderer is not None:
    results['generator'] = {'name': renderer.name, 'first_identity': renderer.first_identity}
  total = len(pair_sources) + len(identification_sources)
  done = 0
  for source in pair_sources:
    t0 = time.perf_counter()
    images, issame, factors = sets.load_pairs_with_factors(source, renderer, progress=True)
    plain, flipped = _embed_both(embedder, image_io.fit_to_size(images, size))
    figures = verification_figures(plain, flipped, issame, protocols, far_targets)
    if 'insightface' in figures:
      figures['insightface']['far_target'] = 1e-3  # insightface_protocol's VAL@FAR target.
    name = _unique_name(sets.set_name(source), results['verification'])
    by_attribute = None
    if factors is not None:
      by_attribute = attributes.attribute_figures(plain, flipped, issame, factors, protocols,
                                                  far_targets)
      keys = ['accuracy', f'tar@far={metrics.far_key(max(far_targets))}']
      for protocol, panels in by_attribute.items():
        path = f'attributes_{name}_{protocol}.png'
        plots.attributes_png(os.path.join(out_dir, path), panels, keys,
                             title=f'{name}, {protocol}: by rendered attribute')
        results['figures'].append(path)
    for protocol in protocols:
      scores = pair_scores(plain, flipped, protocol)
      path = f'hist_{name}_{protocol}.png'
      plots.histogram_png(os.path.join(out_dir, path), scores[issame], scores[~issame],
                          title=f'{name}, {protocol}: cosine similarity', bins=50, label='cosine')
      results['figures'].append(path)
    results['verification'][name] = {'source': source, 'pairs': int(issame.size),
                                     'protocols': figures}
    if by_attribute is not None:
      results['verification'][name]['attributes'] = by_attribute
    done += 1
    summary = '; '.join(
        f"{p} acc {f['accuracy']:.4f} AUC {f['auc']:.4f} EER {f['eer']:.4f}"
        for p, f in figures.items())
    log(f'[{done}/{total}] {name}: {issame.size} pairs, {time.perf_counter() - t0:.1f}s: {summary}')
  for source in identification_sources:
    t0 = time.perf_counter()
    images, labels = sets.load_labelled(source, renderer)
    _, flipped = _embed_both(embedder, image_io.fit_to_size(images, size))
    figures = identification_figures(flipped, labels, seed, fpir_targets, distractor_fraction)
    figures['source'] = source
    name = _unique_name(sets.set_name(source), results['identification'])
    results['identification'][name] = figures
    done += 1
    dirs = ', '.join(f"DIR@FPIR={k} {v['dir']:.4f}"
                     for k, v in figures['open_set']['dir_at_fpir'].items())
    log(f"[{done}/{total}] {name}: {len(labels)} images of {figures['identities']} identities, "
        f"{time.perf_counter() - t0:.1f}s: rank-1 {figures['closed_set']['rank1']:.4f}, "
        f"rank-5 {figures['closed_set']['rank5']:.4f}, {dirs}")
  _write_figures(results, out_dir, protocols)
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out_dir, 'report.md'), 'w') as f:
    f.write(markdown(results))
  return results


def _write_figures(results: dict, out_dir: str, protocols) -> None:
  figures = results['figures']
  verification = results['verification']
  for protocol in protocols:
    if not verification:
      break
    curves = {}
    for name, entry in verification.items():
      f = entry['protocols'][protocol]
      curves[f"{name} (AUC = {f['auc']:.3f})"] = (f['roc']['far'], f['roc']['tar'])
    path = f'roc_{protocol}.png'
    plots.roc_png(os.path.join(out_dir, path), curves, title=f'ROC, {protocol} protocol')
    figures.append(path)
  if results['identification']:
    curves = {f"{name} (rank-1 = {e['closed_set']['rank1']:.3f})": e['closed_set']['cmc']
              for name, e in results['identification'].items()}
    plots.cmc_png(os.path.join(out_dir, 'cmc.png'), curves, title='CMC, closed set')
    figures.append('cmc.png')


def generator_config(checkpoint: str, config_spec: str = '', input_size=None, overrides=()):
  """(config with a `generator` block, where it came from) for the synthetic sets of a run.

  In order: `config_spec` (a config file, path[:arg]); a `config.json` stored in the run's workdir
  (beside checkpoints/ or in the checkpoint folder); the base config, whose procedural generator
  renders at the model's input size.
  """
  import ml_collections
  from synface_jax import config as config_lib, generate
  if config_spec:
    config = generate.load_config(config_spec, overrides)
    if config is None or 'generator' not in config:
      raise ValueError(f'{config_spec}: the config has no generator field')
    return config, config_spec
  from synface_jax.checkpointing import workdir_path
  path = workdir_path(checkpoint)
  for folder in (path, path.parent):
    stored = folder / 'config.json'
    if stored.is_file():
      try:
        config = ml_collections.ConfigDict(json.loads(stored.read_text()))
      except (OSError, ValueError) as e:
        raise ValueError(f'{stored}: not a readable config ({e})') from None
      if 'generator' in config:
        return config, os.fspath(stored)
  config = config_lib.base_config()
  if input_size is not None:
    config.model.input_size = tuple(input_size)
  return config, 'the base config'
