"""The evaluation command line.

  python -m synface_jax.evaluate pairs --embeddings E.npz --protocol insightface
  python -m synface_jax.evaluate bin --bin lfw.bin --out lfw.npz
  python -m synface_jax.evaluate run --checkpoint DIR --sets lfw.bin,synthetic:600 --out REPORT
  python -m synface_jax.evaluate variation --checkpoint DIR --sets casia,synthetic:100x10 --out V
  python -m synface_jax.evaluate generator --config configs/demo.py --out REPORT

What the commands run lives elsewhere: the protocols in `synface_jax.eval.protocols`, the pair
file readers in `synface_jax.data.pair_files`, `run` and `variation` in `synface_jax.eval.report`
and `synface_jax.eval.variation`, `generator` in `synface_jax.generator_report`.

At import this module reads only numpy and the numpy-only protocols and sets; the rest is imported
when a command runs.
"""
import argparse
import json
import os
import pickle
import sys
from typing import Any, Dict, List, Sequence

import numpy as np

from synface_jax.eval.protocols import PROTOCOLS, verify
from synface_jax.eval.sets import checked_issame


class UserError(Exception):
  """An error caused by the command-line input; reported in one line without a traceback."""


def _load_npz_keys(path: str, keys: Sequence[str]) -> Dict[str, np.ndarray]:
  """Loads ``keys`` from an ``.npz``, naming the file and key on failure."""
  try:
    with np.load(path, allow_pickle=False) as data:
      if not hasattr(data, 'files'):
        raise UserError(f'{path}: not an .npz archive')
      missing = [k for k in keys if k not in data.files]
      if missing:
        raise UserError(f'{path}: missing key {missing[0]!r} (has {sorted(data.files)})')
      return {k: data[k] for k in keys}
  except (OSError, ValueError, EOFError) as e:
    raise UserError(f'{path}: cannot read .npz ({e})') from e


def _summary(result: Dict[str, Any], protocol: str) -> Dict[str, Any]:
  """The JSON-ready subset of a protocol result."""
  out = {
      'accuracy': result['accuracy'],
      'std': result['std'],
      'thresholds': [float(t) for t in result['thresholds']],
  }
  if protocol == 'insightface':
    out.update(val=result['val'], val_std=result['val_std'], far=result['far'])
  return out


def _load_issame(path: str) -> np.ndarray:
  """issame [N] from an .npz (key `issame`, e.g. what ``bin`` writes) or a .npy."""
  if path.endswith('.npz'):
    return _load_npz_keys(path, ('issame',))['issame']
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise UserError(f'{path}: cannot read issame ({e})') from e


def load_pair_embeddings(path: str, issame_path: str = '') -> Dict[str, np.ndarray]:
  """embeddings1, embeddings2 and issame from any of the layouts ``pairs`` reads.

  * .npz with ``embeddings1`` [N, D], ``embeddings2`` [N, D], ``issame`` [N];
  * .npz with ``embeddings`` [2N, D] interleaved (rows 2k and 2k + 1 are pair k) and ``issame``
    (what ``python -m synface_jax.embed --out X.npz`` writes for a pair set);
  * .npy [2N, D] interleaved (what ``embed --out X.npy`` writes), with ``issame_path``.
  ``issame_path`` (an .npz with ``issame`` or a .npy) overrides the issame stored beside them.
  """
  if path.endswith('.npy'):
    try:
      interleaved = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise UserError(f'{path}: cannot read .npy ({e})') from e
    data = {}
  else:
    try:
      with np.load(path, allow_pickle=False) as archive:
        files = archive.files if hasattr(archive, 'files') else ()
    except (OSError, ValueError, EOFError) as e:
      raise UserError(f'{path}: cannot read .npz ({e})') from e
    if 'embeddings' not in files:
      keys = ('embeddings1', 'embeddings2') + (() if issame_path else ('issame',))
      data = _load_npz_keys(path, keys)
      if issame_path:
        data['issame'] = _load_issame(issame_path)
      return data
    data = _load_npz_keys(path, ('embeddings',) + (('issame',) if 'issame' in files else ()))
    interleaved = data.pop('embeddings')
  if issame_path:
    data['issame'] = _load_issame(issame_path)
  if 'issame' not in data:
    raise UserError(f'{path}: interleaved embeddings without issame: give --issame FILE (the pair '
                    'pack .npz) or embed an .npz that holds issame')
  try:
    issame = checked_issame(data['issame'], issame_path or path)
  except ValueError as e:
    raise UserError(str(e)) from None
  if interleaved.ndim != 2 or interleaved.shape[0] != 2 * issame.size:
    raise UserError(f'{path}: {interleaved.shape} embeddings for {issame.size} pairs; expected '
                    f'[{2 * issame.size}, D], rows 2k and 2k + 1 forming pair k')
  return {'embeddings1': interleaved[0::2], 'embeddings2': interleaved[1::2], 'issame': issame}


def _cmd_pairs(args) -> None:
  """``pairs``: runs a protocol on stored embeddings and prints one JSON line."""
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.embeddings):  # --issame's errors name it.
      data = load_pair_embeddings(args.embeddings, args.issame)
  except UserError:
    raise
  except file_errors.FILE_ERRORS as e:
    raise UserError(str(e)) from e
  try:
    result = verify(data['embeddings1'], data['embeddings2'], data['issame'], args.protocol)
  except ValueError as e:
    raise UserError(f'{args.embeddings}: {e}') from e
  print(json.dumps(_summary(result, args.protocol)))


def _cmd_bin(args) -> None:
  """``bin``: decodes a ``.bin`` pack to an ``.npz`` with ``images`` and ``issame``."""
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  from synface_jax.data import pair_files  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.bin):
      images, issame = pair_files.load_bin(args.bin, progress=True)
  except file_errors.FILE_ERRORS as e:
    raise UserError(str(e)) from e
  try:
    np.savez(args.out, images=images, issame=issame)
  except OSError as e:
    raise UserError(f'{args.out}: cannot write ({e})') from e
  print(json.dumps({'out': args.out, 'pairs': int(issame.size), 'image_shape':
                    list(images.shape[1:])}))


def _report_augment(config, spec: str):
  """--augment: '' (clean renders), 'config' (the config's synthetic.augment as it is) or OP[,OP]
  (only those ops, each always on, at the config's strengths)."""
  from synface_jax.generators import augment  # pylint: disable=g-import-not-at-top
  import dataclasses  # pylint: disable=g-import-not-at-top
  block = config.synthetic.augment if 'synthetic' in config else {}
  options = augment.Augment.from_config(block)
  if not spec:
    return None
  if spec == 'config':
    return options
  ops = [op.strip() for op in spec.split(',') if op.strip()]
  known = augment.Augment.OPS
  for op in ops:
    if op not in known:
      raise ValueError(f'--augment {op!r}: not an augmentation op; one of {", ".join(known)}')
  return dataclasses.replace(options, **{op: float(op in ops) for op in known})


def _cmd_generator(args) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from synface_jax import generate, generator_report  # pylint: disable=g-import-not-at-top
  from synface_jax.generators import get_generator  # pylint: disable=g-import-not-at-top
  try:
    config = generate.with_generator(generate.load_config(args.config, args.config_overrides),
                                     args.generator, args.option)
    generator = get_generator(config.generator)
    options = _report_augment(config, args.augment)
    judge = generator_report.DlibJudge()
    report = generator_report.run(
        generator, generator.init(jax.random.key(args.seed)), args.out, judge,
        identities=args.identities, per_identity=args.per_identity, seed=args.seed,
        name=config.generator.name, augment_options=options)
  except (OSError, ValueError, RuntimeError) as e:
    raise UserError(str(e)) from None
  print(generator_report.summary_line(report))
  print(f'report: {os.path.join(args.out, "report.md")}')


def _floats(text: str) -> List[float]:
  try:
    return [float(v) for v in text.split(',') if v]
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected comma-separated numbers, got {text!r}') from None


def _sources(text: str) -> List[str]:
  return [v for v in text.split(',') if v]


def _cmd_run(args) -> None:
  """``run``: every verification and identification figure of one checkpoint (eval/report.py)."""
  from synface_jax.embedder import load_embedder  # pylint: disable=g-import-not-at-top
  from synface_jax.eval import report, sets  # pylint: disable=g-import-not-at-top
  if not args.sets and not args.identification:
    raise UserError('run: give --sets and/or --identification')
  unknown = [p for p in args.protocols if p not in PROTOCOLS]
  if unknown or not args.protocols:
    raise UserError(f'run: --protocols {",".join(args.protocols)}: expected some of {PROTOCOLS}')
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.checkpoint):
      embedder = load_embedder(args.checkpoint, step=args.step, batch_size=args.batch,
                               normalize=False, arch=args.arch, width=args.width)
    renderer = None
    if any(s.split(':')[0] == 'synthetic' for s in args.sets + args.identification):
      config, origin = report.generator_config(args.checkpoint, args.config,
                                               embedder.spec.input_size, args.config_overrides)
      renderer = sets.renderer_from_config(config, args.seed)
      print(f'synthetic sets: rendered by the {renderer.name!r} generator of {origin}, held-out '
            f'identities from {renderer.first_identity}', flush=True)
    print(f'evaluating {embedder!r} from {args.checkpoint}', flush=True)
    report.run(embedder, args.sets, args.out, identification_sources=args.identification,
               renderer=renderer, protocols=tuple(args.protocols), far_targets=args.far,
               fpir_targets=args.fpir, distractor_fraction=args.distractors, seed=args.seed,
               checkpoint=args.checkpoint, log=lambda line: print(line, flush=True))
  except (OSError, ValueError, pickle.UnpicklingError) as e:  # Set files: named by sets.py.
    raise UserError(str(e)) from None
  print(f'report: {os.path.join(args.out, "report.md")}')


def _cmd_variation(args) -> None:
  """``variation``: intra-class variation of labelled sets under one model (eval/variation.py)."""
  from synface_jax.embedder import load_embedder  # pylint: disable=g-import-not-at-top
  from synface_jax.eval import report, sets, variation  # pylint: disable=g-import-not-at-top
  try:
    settings = [variation.parse_im(s) for s in args.im] if args.im else variation.IM_SETTINGS
    embedder = load_embedder(args.checkpoint, step=args.step, batch_size=args.batch,
                             normalize=False, arch=args.arch, width=args.width)
    renderer = None
    if any(s.split(':')[0] == 'synthetic' for s in args.sets):
      config, origin = report.generator_config(args.checkpoint, args.config,
                                               embedder.spec.input_size, args.config_overrides)
      renderer = sets.renderer_from_config(config, args.seed)
      print(f'synthetic sets: rendered by the {renderer.name!r} generator of {origin}', flush=True)
    variation.run(embedder, args.sets, args.out, renderer=renderer, im_settings=settings,
                  shown_identities=args.show, checkpoint=args.checkpoint,
                  log=lambda line: print(line, flush=True))
  except (OSError, ValueError, pickle.UnpicklingError) as e:
    raise UserError(str(e)) from None
  print(f'report: {os.path.join(args.out, "variation.md")}')


def _embedder_arguments(parser) -> None:
  """The flags that pick and run a checkpoint's embedder (--step, --batch, --arch, --width)."""
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--batch', type=int, default=64, help='images per forward pass')
  parser.add_argument('--arch', default=None, help='only for checkpoints without model.json')
  parser.add_argument('--width', type=float, default=None, help='only for checkpoints without model.json')


def build_parser() -> argparse.ArgumentParser:
  """The ``python -m synface_jax.evaluate`` argument parser."""
  parser = argparse.ArgumentParser(prog='python -m synface_jax.evaluate',
                                   description='Face verification protocols and pair packs.')
  sub = parser.add_subparsers(dest='command', required=True)
  pairs = sub.add_parser('pairs', help='verification accuracy from stored pair embeddings')
  pairs.add_argument('--embeddings', required=True,
                     help='.npz with embeddings1 [N, D], embeddings2 [N, D], issame [N]; or what '
                     'embed writes for a pair set: .npz with embeddings [2N, D] and issame, or '
                     '.npy [2N, D] with --issame')
  pairs.add_argument('--issame', default='',
                     help='issame [N]: an .npz holding it (e.g. from `bin`) or a .npy')
  pairs.add_argument('--protocol', required=True, choices=PROTOCOLS)
  pairs.set_defaults(func=_cmd_pairs)
  pack = sub.add_parser('bin', help='decode an insightface .bin pack to .npz')
  pack.add_argument('--bin', required=True, help='the .bin verification pack')
  pack.add_argument('--out', required=True, help='output .npz (images, issame)')
  pack.set_defaults(func=_cmd_bin)
  report = sub.add_parser(
      'generator', help="how a real-face recogniser sees a generator's faces (the generator report)")
  report.add_argument('--config', default='', help='config file (path[:arg]) with a generator field')
  report.add_argument('--generator', default='', help="backend, overriding the config's")
  report.add_argument('--option', action='append', default=[], metavar='KEY=VALUE',
                      help="the backend's own option, e.g. checkpoint=DIR")
  report.add_argument('--identities', type=int, default=100, help='held-out identities')
  report.add_argument('--per-identity', type=int, default=8, help='nuisance draws of each')
  report.add_argument('--seed', type=int, default=0)
  report.add_argument('--judge', default='dlib', choices=('dlib',))
  report.add_argument('--augment', default='',
                      help="degrade the draws as training does: 'config' (the config's "
                           "synthetic.augment) or OP[,OP] (only those, always on)")
  report.add_argument('--out', required=True, help='folder for report.json, report.md and PNGs')
  report.set_defaults(func=_cmd_generator)
  run = sub.add_parser('run', help="a checkpoint on pair and labelled sets: results.json, "
                       'report.md, ROC / histogram / CMC PNGs')
  run.add_argument('--checkpoint', required=True, help='training workdir or checkpoint folder')
  run.add_argument('--sets', type=_sources, default=[],
                   help='pair sets, comma-separated: X.bin, ROOT:pairs.txt, X.npz (images, '
                   'issame), synthetic[:N]')
  run.add_argument('--identification', type=_sources, default=[],
                   help='labelled sets, comma-separated: identity folder, RecordIO folder, '
                   'X.npz (images, labels), synthetic:NxM')
  run.add_argument('--out', required=True, help='folder for results.json, report.md and PNGs')
  run.add_argument('--protocols', type=_sources, default=list(PROTOCOLS))
  run.add_argument('--far', type=_floats, default=[1e-4, 1e-3, 1e-2], help='TAR@FAR targets')
  run.add_argument('--fpir', type=_floats, default=[1e-2, 1e-1], help='DIR@FPIR targets')
  run.add_argument('--distractors', type=float, default=0.2,
                   help='open set: share of identities held out as distractors')
  run.add_argument('--seed', type=int, default=0,
                   help='gallery choice, distractor identities, synthetic faces')
  run.add_argument('--config', default='',
                   help="config file (path[:arg]) whose generator renders the synthetic sets "
                   "(default: the run's stored config.json, else the procedural default)")
  _embedder_arguments(run)
  run.set_defaults(func=_cmd_run)
  var = sub.add_parser('variation', help='intra-class variation of labelled sets (spread, '
                       'within / between-class variance, PCA projection)')
  var.add_argument('--checkpoint', required=True, help='training workdir or checkpoint folder')
  var.add_argument('--sets', type=_sources, required=True,
                   help='labelled sets, comma-separated: identity folder, RecordIO folder, '
                   'X.npz (images, labels), synthetic:NxM (rendered once per --im)')
  var.add_argument('--im', action='append', default=[], metavar='[NAME=]SPEC',
                   help='identity mixup setting of the synthetic sets, repeatable (off, '
                   'fixed:0.8, linspace:0.6,1.0,11, ...); default Syn1=off, Syn2=fixed:0.8, '
                   'Syn3=linspace:0.6,1.0,11')
  var.add_argument('--show', type=int, default=8, help='identities per set in projection.png')
  var.add_argument('--out', required=True, help='folder for variation.json, variation.md, PNG')
  var.add_argument('--seed', type=int, default=0, help='synthetic faces, partners and phi')
  var.add_argument('--config', default='', help='config file whose generator renders the '
                   "synthetic sets (default: the run's config.json, else the procedural default)")
  _embedder_arguments(var)
  var.set_defaults(func=_cmd_variation)
  return parser


def main(argv=None) -> int:
  """Command-line entry point; returns the exit status. --config.FIELD=VALUE arguments override
  the fields of --config's file, as for main."""
  from synface_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  overrides, argv = config_lib.split_overrides(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
  args.config_overrides = overrides
  if overrides and not getattr(args, 'config', ''):
    print(f'error: --config.{overrides[0]} needs --config FILE', file=sys.stderr)
    return 2
  try:
    args.func(args)
  except UserError as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
