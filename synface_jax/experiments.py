"""The paper's ablations as named grids of training runs, one command each.

    python -m synface_jax.experiments list
    python -m synface_jax.experiments run im --scale tiny --out results/im [--seeds 3]
    python -m synface_jax.experiments run mixed --scale small --out results/mixed --real /data/casia

A grid is a list of cells (configs); every cell is trained once per seed through the normal
training entry point (`python -m synface_jax.main`, so each run has its usual checkpoints,
model.json, config.json and results.json) in its own workdir `OUT/cells/CELL/seedS`, then scored by
`synface_jax.eval.report.run` on test sets shared by the whole grid (rendered once into
`OUT/testsets/`, from held-out identities beyond every cell's training pool) into
`OUT/cells/CELL/seedS/eval/`. Rerunning the command resumes: a cell with an evaluation is skipped,
a cell killed while training resumes from its latest checkpoint (main does that), and a cell
trained but not evaluated is only evaluated. Finally `OUT/results.md` gets one row per cell with
mean +- std over seeds, the per-seed values, the plots (`OUT/*.png`), the commit and the command.

Grids (`list` prints their cells at each scale):
  im          identity mixup off / fixed:0.8 / linspace:0.6,1.0,11 (SynFace Fig. 3: Syn1, Syn2, Syn3)
  identities  N identities at a fixed total N x S (Table 2's width axis)
  depth       S images per identity at a fixed N (its depth axis)
  mixed       Mix_N_S, domain mixup off / on (needs --real)
  domain_gap  train on real / synthetic x test on real pairs (--test-pairs) / synthetic pairs
"""
import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

HELD_OUT_START = 1_000_000  # Test identities of every grid start here, beyond any training pool.
IM_SETTINGS = (('Syn1', 'off'), ('Syn2', 'fixed:0.8'), ('Syn3', 'linspace:0.6,1.0,11'))


@dataclasses.dataclass(frozen=True)
class Scale:
  """What a grid's cells share at one scale."""
  overrides: Dict[str, object]  # config fields of every cell
  num_epochs: float
  syn: Tuple[int, int]          # (N, S) of the synthetic cells that do not vary them
  identities: Tuple[Tuple[int, int], ...]  # (N, S) at a fixed N x S
  depth: Tuple[int, ...]        # S at syn[0] identities
  mixed: Tuple[Tuple[int, int], ...]  # real (N, S) added to the synthetic set
  real: Tuple[int, int]         # (N, S) of the real training set in domain_gap (0 = all)
  test_pairs: int               # synthetic test pairs (a multiple of 20)
  test_identities: Tuple[int, int]  # the labelled synthetic test set (N x M), for rank-1


SCALES = {
    # About 3 minutes a cell on 2 CPU cores: 32 x 32 faces, IResNet-18 at width 1/8.
    'tiny': Scale(
        overrides={'model.arch': 'r18', 'model.width': 0.125, 'model.input_size': (32, 32),
                   'generator.procedural.resolution': 0.3, 'optim.batch_size': 64,
                   'optim.learning_rate': 0.8},
        num_epochs=6, syn=(200, 20), identities=((50, 80), (100, 40), (200, 20), (400, 10)),
        depth=(5, 10, 20, 40), mixed=((50, 10), (100, 10)), real=(100, 20), test_pairs=1200,
        test_identities=(50, 4)),
    # Hours on one accelerator: 64 x 64 faces, IResNet-18 at width 1/2.
    'small': Scale(
        overrides={'model.arch': 'r18', 'model.width': 0.5, 'model.input_size': (64, 64),
                   'generator.procedural.resolution': 0.5, 'optim.batch_size': 128,
                   'optim.learning_rate': 0.4},
        num_epochs=10, syn=(2000, 50), identities=((500, 200), (1000, 100), (2000, 50),
                                                   (5000, 20)),
        depth=(10, 20, 50, 100), mixed=((500, 10), (1000, 10), (2000, 10)), real=(2000, 20),
        test_pairs=6000, test_identities=(500, 10)),
    # SynFace's recipe (IResNet-50 on 112 x 96 faces, 40 epochs at batch 512): days on a pod.
    'paper': Scale(
        overrides={'model.arch': 'r50', 'model.input_size': (112, 96)},
        num_epochs=40, syn=(10000, 50), identities=((1000, 500), (2000, 250), (5000, 100),
                                                    (10000, 50)),
        depth=(10, 20, 50, 100), mixed=((1000, 10), (2000, 10), (2000, 20)), real=(0, 0),
        test_pairs=6000, test_identities=(1000, 10)),
}


@dataclasses.dataclass(frozen=True)
class Cell:
  """One configuration of a grid: `python -m synface_jax.main --config=CONFIG --config.K=V ...`."""
  name: str
  config: str                      # configs/FILE.py:ARG
  overrides: Dict[str, object]
  x: str = ''                      # its value on the grid's axis (for plots)
  series: str = ''                 # its curve on the grid's plots
  needs_real: bool = False
  tests: Tuple[str, ...] = ()      # test sets beyond the shared synthetic ones ('real': --test-pairs)


@dataclasses.dataclass(frozen=True)
class Grid:
  name: str
  description: str
  axis: str
  cells: Callable[[Scale], List[Cell]]
  needs_real: bool = False


def _count(n: int) -> str:
  return f'{n // 1000}K' if n >= 1000 and n % 1000 == 0 else str(n)


def _syn(n, s, im='off') -> str:
  return f'configs/synthetic.py:Syn_{_count(n)}_{_count(s)},im={im}'


def _im_cells(scale: Scale) -> List[Cell]:
  n, s = scale.syn
  return [Cell(name, _syn(n, s, spec), {}, x=f'{name} ({spec})', series='identity mixup')
          for name, spec in IM_SETTINGS]


def _identity_cells(scale: Scale) -> List[Cell]:
  return [Cell(f'Syn_{_count(n)}_{_count(s)}', _syn(n, s), {}, x=str(n),
               series=f'N x S = {n * s}') for n, s in scale.identities]


def _depth_cells(scale: Scale) -> List[Cell]:
  n = scale.syn[0]
  return [Cell(f'Syn_{_count(n)}_{_count(s)}', _syn(n, s), {}, x=str(s), series=f'N = {n}')
          for s in scale.depth]


def _mixed_cells(scale: Scale) -> List[Cell]:
  n, s = scale.syn
  cells = []
  for dm in ('off', 'synface'):
    for rn, rs in scale.mixed:
      name = f'Mix_{_count(rn)}_{_count(rs)}_dm_{dm}'
      arg = f'configs/mixed.py:Syn_{_count(n)}_{_count(s)},Mix_{_count(rn)}_{_count(rs)},' \
            f'im=off,dm={dm}'
      cells.append(Cell(name, arg, {}, x=f'{rn}x{rs}', series=f'domain mixup {dm}',
                        needs_real=True))
  return cells


def _domain_cells(scale: Scale) -> List[Cell]:
  n, s = scale.syn
  rn, rs = scale.real
  return [Cell('train_real', f'configs/real.py:Real_{_count(rn)}_{_count(rs)}', {}, x='real',
               series='trained on', needs_real=True, tests=('real',)),
          Cell('train_synthetic', _syn(n, s), {}, x='synthetic', series='trained on',
               tests=('real',))]


GRIDS = {g.name: g for g in (
    Grid('im', 'identity mixup settings (SynFace Fig. 3: Syn1 / Syn2 / Syn3)', 'setting',
         _im_cells),
    Grid('identities', 'number of identities N at a fixed total N x S', 'identities N',
         _identity_cells),
    Grid('depth', 'images per identity S at a fixed N', 'images per identity S', _depth_cells),
    Grid('mixed', 'Mix_N_S: real identities added to the synthetic set, domain mixup off / on',
         'real N x S', _mixed_cells, needs_real=True),
    Grid('domain_gap', 'train on real or synthetic faces, test on real and synthetic pairs',
         'trained on', _domain_cells),
)}


def cell_overrides(cell: Cell, scale: Scale, seed: int, test_pairs: Sequence[str] = ()) -> dict:
  """Every --config.FIELD=VALUE of a cell's training run."""
  e = scale.num_epochs
  out = dict(scale.overrides)
  out.update({'seed': seed, 'optim.num_epochs': e, 'num_train_steps': 0,
              'optim.warmup_epochs': round(0.05 * e, 6),
              'optim.decay_epochs': (round(0.7 * e, 6), round(0.9 * e, 6)),
              'eval.pairs': (), 'log_batch_images': 0, 'log_every_steps': 50,
              'checkpoint_every_steps': 100, 'keep_checkpoints': 1})
  out.update(cell.overrides)
  return out


def _literal(value) -> str:
  return value if isinstance(value, str) else repr(value)


def train_command(cell: Cell, workdir: str, overrides: dict, real: str = '') -> List[str]:
  """The main command line of one run of a cell."""
  cmd = [sys.executable, '-m', 'synface_jax.main', f'--config={cell.config}',
         f'--workdir={workdir}']
  cmd += [f'--config.{k}={_literal(v)}' for k, v in overrides.items()]
  if cell.needs_real:
    cmd.append(f'--config.real.path={real}')
  return cmd


# ----------------------------------------------------------------------------------------------
# Running a grid.
# ----------------------------------------------------------------------------------------------


class CellRunner:
  """Trains a cell with main in a subprocess and evaluates it in this process."""

  def __init__(self, log: Callable[[str], None] = print):
    self.log = log

  def train(self, cell: Cell, workdir: str, command: List[str]) -> None:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'train.log'), 'a') as f:
      f.write(f'$ {shlex.join(command)}\n')
      f.flush()
      rc = subprocess.call(command, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
      raise RuntimeError(f'{workdir}: training failed (exit status {rc}); see '
                         f'{os.path.join(workdir, "train.log")}')

  def evaluate(self, cell: Cell, workdir: str, pair_sources: Sequence[str],
               labelled_sources: Sequence[str]) -> None:
    from synface_jax.embedder import load_embedder  # pylint: disable=g-import-not-at-top
    from synface_jax.eval import report  # pylint: disable=g-import-not-at-top
    embedder = load_embedder(workdir, normalize=False)
    report.run(embedder, pair_sources, os.path.join(workdir, 'eval'),
               identification_sources=labelled_sources, checkpoint=workdir,
               log=lambda line: self.log(f'  {line}'))


def render_test_sets(out: str, scale: Scale,
                     log: Callable[[str], None] = print) -> Tuple[List[str], List[str]]:
  """The grid's shared test sets as .npz files under OUT/testsets (rendered once)."""
  from synface_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from synface_jax.eval import sets  # pylint: disable=g-import-not-at-top
  folder = os.path.join(out, 'testsets')
  pairs_path = os.path.join(folder, f'synthetic_{scale.test_pairs}.npz')
  n, m = scale.test_identities
  ident_path = os.path.join(folder, f'synthetic_{n}x{m}.npz')
  if not (os.path.isfile(pairs_path) and os.path.isfile(ident_path)):
    os.makedirs(folder, exist_ok=True)
    config = config_lib.base_config()
    for key, value in scale.overrides.items():
      *path, leaf = key.split('.')
      parent = config
      for part in path:
        parent = parent[part]
      parent[leaf] = value
    renderer = sets.renderer_from_config(config, seed=0)
    renderer.first_identity = HELD_OUT_START
    t0 = time.perf_counter()
    images, issame, factors = sets.load_pairs_with_factors(f'synthetic:{scale.test_pairs}',
                                                           renderer)
    np.savez(pairs_path + '.tmp.npz', images=images, issame=issame,
             **{f'factor_{k}': v for k, v in factors.items()})
    os.replace(pairs_path + '.tmp.npz', pairs_path)
    images, labels = sets.load_labelled(f'synthetic:{n}x{m}', renderer)
    np.savez(ident_path + '.tmp.npz', images=images, labels=labels)
    os.replace(ident_path + '.tmp.npz', ident_path)
    log(f'test sets rendered in {time.perf_counter() - t0:.0f}s: {pairs_path}, {ident_path}')
  return [pairs_path], [ident_path]


def cell_workdir(out: str, cell: Cell, seed: int) -> str:
  return os.path.join(out, 'cells', cell.name, f'seed{seed}')


def run_grid(grid: Grid, scale_name: str, out: str, seeds: int = 3, real: str = '',
             test_pairs: Sequence[str] = (), runner=None, log: Callable[[str], None] = print,
             test_sets: Optional[Tuple[List[str], List[str]]] = None, command: str = '') -> dict:
  """Trains and evaluates every cell x seed not done yet, then writes OUT/results.md.

  runner: an object with train(cell, workdir, command) and evaluate(cell, workdir, pair_sources,
  labelled_sources) (default CellRunner). test_sets: (pair sources, labelled sources) to use
  instead of rendering the grid's synthetic ones. Returns the aggregate (see `aggregate`).
  """
  scale = SCALES[scale_name]
  runner = runner or CellRunner(log)
  cells = grid.cells(scale)
  runnable = []
  for cell in cells:
    if cell.needs_real and not real:
      log(f'{grid.name}/{cell.name}: skipped, it trains on real faces: give --real PATH '
          '(an identity folder, a RecordIO set or a prepared dataset)')
      continue
    runnable.append(cell)
  if not runnable:
    raise ValueError(f'grid {grid.name}: no cell can run without --real PATH')
  os.makedirs(out, exist_ok=True)
  if test_sets is None:
    test_sets = render_test_sets(out, scale, log)
  pair_sources, labelled_sources = list(test_sets[0]), list(test_sets[1])
  total = len(runnable) * seeds
  done = 0
  for seed in range(seeds):  # Seed-major: a stopped grid has every cell at fewer seeds.
    for cell in runnable:
      done += 1
      pairs = pair_sources + (list(test_pairs) if 'real' in cell.tests else [])
      if seed == 0 and 'real' in cell.tests and not test_pairs:
        log(f'{grid.name}/{cell.name}: no real test pairs; give --test-pairs lfw.bin[,...] for '
            'the real column')
      workdir = cell_workdir(out, cell, seed)
      tag = f'[{done}/{total}] {grid.name}/{cell.name} seed {seed}'
      if os.path.isfile(os.path.join(workdir, 'eval', 'results.json')):
        log(f'{tag}: done, skipped')
        continue
      overrides = cell_overrides(cell, scale, seed)
      train_cmd = train_command(cell, workdir, overrides, real)
      _check_cell_record(workdir, cell, train_cmd)
      t0 = time.perf_counter()
      if os.path.isfile(os.path.join(workdir, 'results.json')):
        log(f'{tag}: trained, evaluating')
      else:
        resumed = os.path.isdir(os.path.join(workdir, 'checkpoints'))
        log(f'{tag}: training{" (resuming)" if resumed else ""} in {workdir}')
        with open(os.path.join(workdir, 'commit.txt'), 'a') as f:
          f.write(_commit() + '\n')
        runner.train(cell, workdir, train_cmd)
      runner.evaluate(cell, workdir, pairs, labelled_sources)
      log(f'{tag}: finished in {time.perf_counter() - t0:.0f}s')
  summary = aggregate(out, grid, runnable, seeds)
  write_results(out, grid, scale_name, summary, seeds, command=command, real=real,
                test_pairs=test_pairs)
  return summary


def _check_cell_record(workdir: str, cell: Cell, command: List[str]) -> None:
  """Writes WORKDIR/cell.json, or refuses a workdir that an other command made."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'cell.json')
  record = {'cell': cell.name, 'config': cell.config, 'args': command[3:]}
  if os.path.isfile(path):
    with open(path) as f:
      old = json.load(f)
    if old != record:
      raise ValueError(f'{workdir}: made by another configuration ({path}); use another --out '
                       'or delete the cell')
    return
  with open(path, 'w') as f:
    json.dump(record, f, indent=2)


# ----------------------------------------------------------------------------------------------
# Aggregation.
# ----------------------------------------------------------------------------------------------


def cell_metrics(results: dict) -> Dict[str, float]:
  """Flat {metric name: value} of one evaluation's results.json."""
  out = {}
  for name, entry in results.get('verification', {}).items():
    for protocol, f in entry['protocols'].items():
      out[f'{name}/{protocol}/accuracy'] = f['accuracy']
      out[f'{name}/{protocol}/auc'] = f['auc']
      for far, at in f['tar_at_far'].items():
        if at.get('far_resolved', True):
          out[f'{name}/{protocol}/tar@far={far}'] = at['tar']
    for protocol, by_attribute in entry.get('attributes', {}).items():
      for attribute, bins in by_attribute.items():
        for b in bins:
          if b['accuracy'] is not None:
            out[f"{name}/{protocol}/{ATTRIBUTE_TAG}/{attribute}/{b['lo']:.3g}-{b['hi']:.3g}"] = \
                b['accuracy']
  for name, entry in results.get('identification', {}).items():
    out[f'{name}/rank1'] = entry['closed_set']['rank1']
  return out


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for one value)."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def aggregate(out: str, grid: Grid, cells: Sequence[Cell], seeds: int) -> dict:
  """{'cells': [{name, x, series, seeds: [...], metrics: {name: {mean, std, values}}}]}."""
  rows = []
  for cell in cells:
    per_seed = {}
    for seed in range(seeds):
      path = os.path.join(cell_workdir(out, cell, seed), 'eval', 'results.json')
      if os.path.isfile(path):
        with open(path) as f:
          per_seed[seed] = cell_metrics(json.load(f))
    names = list(dict.fromkeys(k for m in per_seed.values() for k in m))  # Bins in order.
    metrics = {}
    for k in names:
      values = [per_seed[s][k] for s in sorted(per_seed) if k in per_seed[s]]
      mean, std = mean_std(values)
      metrics[k] = {'mean': mean, 'std': std, 'values': values}
    commits = []
    for seed in range(seeds):
      path = os.path.join(cell_workdir(out, cell, seed), 'commit.txt')
      if os.path.isfile(path):
        with open(path) as f:
          commits += [line.strip() for line in f if line.strip() not in commits and line.strip()]
    rows.append({'name': cell.name, 'x': cell.x, 'series': cell.series, 'config': cell.config,
                 'seeds': sorted(per_seed), 'metrics': metrics, 'commits': commits})
  return {'grid': grid.name, 'cells': rows}


def _commit() -> str:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=root, capture_output=True,
                          text=True, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=root,
                           capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return head + (' (with uncommitted changes)' if dirty else '')


HEADLINE = ('accuracy', 'auc', 'tar@far=0.01', 'rank1')
ATTRIBUTE_TAG = 'accuracy by'  # Metric names of the per-bin accuracies: SET/PROTOCOL/TAG/ATTR/BIN.


def _headline_metrics(summary: dict) -> List[str]:
  names = sorted({k for c in summary['cells'] for k in c['metrics'] if ATTRIBUTE_TAG not in k})
  return [k for suffix in HEADLINE for k in names if k.endswith(suffix)]


def _attribute_lines(summary: dict) -> List[str]:
  """Per rendered attribute: one row per cell, its bins' accuracy (mean ± std over seeds)."""
  groups = {}  # (set/protocol, attribute) -> [bin label]
  for c in summary['cells']:
    for k in c['metrics']:
      if f'/{ATTRIBUTE_TAG}/' in k:
        head, _, rest = k.partition(f'/{ATTRIBUTE_TAG}/')
        attribute, _, label = rest.rpartition('/')
        bins = groups.setdefault((head, attribute), [])
        if label not in bins:
          bins.append(label)
  if not groups:
    return []
  lines = ['', '## Accuracy by rendered attribute', '',
           'Test pairs binned by what the renderer drew (quantile bins of the shared test set; '
           'the harder face of a pair counts); accuracy of each bin in %, each pair decided by '
           "its fold's threshold, mean ± std over seeds.", '']
  for (head, attribute), bins in groups.items():
    lines += [f'{head.replace("/", ", ")} protocol, {attribute}:', '',
              '| cell | ' + ' | '.join(bins) + ' |', '|---|' + '---|' * len(bins)]
    for c in summary['cells']:
      values = []
      for label in bins:
        v = c['metrics'].get(f'{head}/{ATTRIBUTE_TAG}/{attribute}/{label}')
        values.append(f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}" if v else '-')
      lines.append(f"| {c['name']} | " + ' | '.join(values) + ' |')
    lines.append('')
  return lines


def write_results(out: str, grid: Grid, scale_name: str, summary: dict, seeds: int,
                  command: str = '', real: str = '', test_pairs: Sequence[str] = ()) -> str:
  """OUT/results.md, OUT/results.json and one plot per headline metric; returns results.md."""
  scale = SCALES[scale_name]
  metrics = _headline_metrics(summary)
  plots = []
  for metric in metrics:
    if any(metric in c['metrics'] for c in summary['cells']):
      path = metric.replace('/', '_').replace('@', '_at_').replace('=', '') + '.png'
      _plot_metric(os.path.join(out, path), summary, metric, grid)
      plots.append((metric, path))
  lines = [f'# Grid `{grid.name}` at scale `{scale_name}`', '',
           f'{grid.description}.', '',
           f'Command: `{command or "python -m synface_jax.experiments run " + grid.name}`', '',
           f'Commit: {_commit()} (this table); the cells were trained at '
           f"{', '.join(sorted({x for c in summary['cells'] for x in c.get('commits', [])})) or 'unknown'}"
           " (each cell's `commit.txt`).", '',
           f'Seeds: {seeds} (0 .. {seeds - 1}); each value is mean ± sample std over the seeds '
           'that finished (count in the last column).', '',
           f"Every cell: {', '.join(f'{k}={_literal(v)}' for k, v in scale.overrides.items())}, "
           f'{scale.num_epochs:g} epochs. Test sets shared by every cell and seed: '
           f'{scale.test_pairs} rendered pairs and {scale.test_identities[0]} x '
           f'{scale.test_identities[1]} rendered faces of held-out identities (ids from '
           f'{HELD_OUT_START}), then {", ".join(test_pairs) or "no real pairs"}.', '']
  header = [m.replace('/', ' ') for m in metrics]
  lines += ['| cell | config | ' + ' | '.join(header) + ' | seeds |',
            '|---|---|' + '---|' * len(metrics) + '---|']
  for c in summary['cells']:
    values = []
    for m in metrics:
      v = c['metrics'].get(m)
      values.append(f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}" if v else '-')
    lines.append(f"| {c['name']} | `{c['config']}` | " + ' | '.join(values) +
                 f" | {len(c['seeds'])} |")
  lines += ['', 'Values in %. Per seed:', '']
  for c in summary['cells']:
    for m in metrics:
      v = c['metrics'].get(m)
      if v:
        lines.append(f"- {c['name']} {m}: " + ', '.join(f'{100 * x:.2f}' for x in v['values']))
  lines += _attribute_lines(summary)
  lines += ['', 'Plots: ' + ', '.join(f'[{m}]({p})' for m, p in plots), '',
            'Each cell was trained by `python -m synface_jax.main` in `cells/CELL/seedS` '
            '(its command is in `train.log` and `cell.json`) and scored by '
            '`synface_jax.eval.report` into `cells/CELL/seedS/eval/report.md`.']
  path = os.path.join(out, 'results.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(out, 'results.json'), 'w') as f:
    json.dump(dict(summary, scale=scale_name, seeds=seeds, command=command, commit=_commit()),
              f, indent=2)
  return path


def _plot_metric(path: str, summary: dict, metric: str, grid: Grid) -> None:
  """Mean ± std of `metric` per cell (one point per cell along the grid's axis, per series)."""
  from synface_jax.eval import plots  # pylint: disable=g-import-not-at-top
  points = {}
  for c in summary['cells']:
    v = c['metrics'].get(metric)
    if v:
      points.setdefault(c['series'], []).append((c['x'], 100 * v['mean'], 100 * v['std']))
  plots.errorbar_png(path, points, title=f'{grid.name}: {metric}, mean and std over seeds',
                     x_label=grid.axis, y_label=metric.split('/')[-1] + ' (%)')


# ----------------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------------


def list_text(scale_name: Optional[str] = None) -> str:
  """The grids and their cells at every scale; with a scale, each cell's config too."""
  lines = []
  for grid in GRIDS.values():
    lines.append(f'{grid.name}: {grid.description}' +
                 (' [needs --real]' if grid.needs_real else ''))
    for name in ([scale_name] if scale_name else SCALES):
      cells = grid.cells(SCALES[name])
      needs = lambda c: ' (needs --real)' if c.needs_real and not grid.needs_real else ''
      if scale_name:
        lines += [f'  {c.name}{needs(c)}: {c.config}' for c in cells]
      else:
        lines.append(f'  {name}: ' + ', '.join(c.name + needs(c) for c in cells))
  return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m synface_jax.experiments',
                                   description='Named grids of training runs (the ablations).')
  sub = parser.add_subparsers(dest='command', required=True)
  listing = sub.add_parser('list', help='the grids and their cells')
  listing.add_argument('--scale', choices=sorted(SCALES), default=None)
  run = sub.add_parser('run', help='train and evaluate every cell of a grid, then results.md')
  run.add_argument('grid', help=f'one of {", ".join(GRIDS)}')
  run.add_argument('--scale', choices=sorted(SCALES), default='tiny')
  run.add_argument('--out', required=True, help='results folder (rerun the same command to resume)')
  run.add_argument('--seeds', type=int, default=3, help='runs of every cell (seeds 0 .. K - 1)')
  run.add_argument('--real', default='', help='real identity data (mixed, domain_gap)')
  run.add_argument('--test-pairs', default='',
                   help='real pair sets for the real test column, comma-separated (lfw.bin, ...)')
  return parser


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = build_parser().parse_args(argv)
  if args.command == 'list':
    print(list_text(args.scale))
    return 0
  if args.grid not in GRIDS:
    print(f'error: grid {args.grid!r}: not a grid; one of {", ".join(GRIDS)}', file=sys.stderr)
    return 1
  if args.seeds < 1:
    print(f'error: --seeds {args.seeds}: need at least 1', file=sys.stderr)
    return 1
  grid = GRIDS[args.grid]
  if grid.needs_real and not args.real:
    print(f'grid {grid.name}: skipped, every cell trains on real faces: give --real PATH '
          '(an identity folder, a RecordIO set or a prepared dataset)')
    return 0
  command = 'python -m synface_jax.experiments ' + shlex.join(argv)
  log = lambda line: print(line, flush=True)
  try:
    run_grid(grid, args.scale, args.out, args.seeds, args.real,
             [p for p in args.test_pairs.split(',') if p], log=log, command=command)
  except (ValueError, RuntimeError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'results: {os.path.join(args.out, "results.md")}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
