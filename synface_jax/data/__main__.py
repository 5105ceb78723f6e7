"""Face data from the shell: inspect, dump, prepare, export.

    python -m synface_jax.data stats PATH
    python -m synface_jax.data dump PATH --out X.npz [--limit N]
    python -m synface_jax.data build PATH [--data-dir DIR]
    python -m synface_jax.data export --out DIR --identities 10000 --images 50 [--im SPEC]
        [--im-fn MODULE:CALLABLE] [--tfds]

PATH is an identity image folder, SynFace's released set, insightface RecordIO (a folder with
train.rec or the .rec), LFW (a folder with pairs.txt, or ROOT:PAIRS), a .bin pack (or a folder of
them) or a prepared TFDS dataset folder; --kind overrides the detection. Each command prints one
JSON line; a source that cannot be read prints {"kind", "path", "error"} and exits with status 1.
"""
import argparse
import json
import os
import sys
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from synface_jax import cli  # noqa: E402


def _stats(args) -> dict:
  from synface_jax.data import summary
  return summary.stats(args.path, args.kind)


def _dump(args) -> dict:
  from synface_jax.data import summary
  return summary.dump(args.path, args.out, args.limit, args.kind)


def _build(args) -> dict:
  from synface_jax.data import prepare
  builder, kind = prepare.prepare(args.path, args.kind, args.data_dir)
  return {'kind': kind, 'path': args.path, 'name': builder.info.full_name,
          'data_dir': os.fspath(builder.data_dir),
          'splits': {k: v.num_examples for k, v in builder.info.splits.items()}}


def _export(args) -> dict:
  import jax
  import ml_collections
  from synface_jax import extensions, generators, mixup, seeds
  from synface_jax.data import export
  try:
    mix = extensions.mixup('--im-fn', args.im_fn)
  except ValueError as e:
    cli.fail(str(e))
  config = ml_collections.ConfigDict({'name': args.generator, 'image_size': args.size,
                                     **cli.key_values(args.generator_option, '--generator-option')})
  generator = generators.get_generator(config)
  # The generator's params and the nuisance draws are those of a run with config.seed = --seed.
  params = generator.init(seeds.key(args.seed, 'generator'))
  phi = None if args.im == 'off' else mixup.make_sampler(args.im)
  result = export.export_folder(
      generator, params, args.out, num_identities=args.identities,
      images_per_identity=args.images, phi_sampler=phi, seed=seeds.seed(args.seed, 'export_mixup'),
      draw_seed=seeds.seed(args.seed, 'draws'), batch_size=args.batch, mix=mix)
  if args.tfds:
    builder = export.to_tfds(args.out, args.data_dir)
    result['tfds'] = {'name': builder.info.full_name, 'data_dir': os.fspath(builder.data_dir)}
  return result


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m synface_jax.data', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  kinds = ('auto', 'folder', 'synface', 'rec', 'lfw', 'bin', 'tfds')
  for name, help_text in (('stats', 'kind, identities, images or pairs, skipped files'),
                          ('dump', 'decoded images and labels (or issame) to an .npz'),
                          ('build', 'prepare PATH as a TFDS dataset (ArrayRecord)')):
    p = sub.add_parser(name, help=help_text)
    p.add_argument('path')
    p.add_argument('--kind', default='auto', choices=kinds)
    if name == 'dump':
      p.add_argument('--out', required=True, help='the .npz to write')
      p.add_argument('--limit', type=int, default=0, help='first N images (pairs); 0 = all')
    if name == 'build':
      p.add_argument('--data-dir', default='', help="TFDS data dir; default TFDS's")
  p = sub.add_parser('export', help='render Syn_N_S into SynFace naming (and TFDS)')
  p.add_argument('--out', required=True, help='folder to write identity folders into')
  p.add_argument('--identities', type=int, required=True, help='N')
  p.add_argument('--images', type=int, required=True, help='S, images per identity')
  p.add_argument('--generator', default='procedural')
  p.add_argument('--generator-option', action='append', default=[], metavar='KEY=VALUE',
                 help='generator field, e.g. checkpoint=/ckpt/discofacegan or preset=small')
  p.add_argument('--size', type=cli.size, default=(112, 112), help='HxW, e.g. 112x96')
  p.add_argument('--im', default='synface', help="phi sampler spec, or 'off'")
  p.add_argument('--im-fn', default='synface_jax.mixup:mix_identities', metavar='MODULE:CALLABLE',
                 help="the identity mixup, a types.Mixup on Factors (the train step's config.im.fn)")
  p.add_argument('--seed', type=int, default=0,
                 help="a training run's config.seed: the faces are the ones its step renders for "
                      "each (identity, draw); partners and phi come from stream 'export_mixup' "
                      "(synface_jax/seeds.py)")
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--tfds', action='store_true', help='also build it as a TFDS dataset')
  p.add_argument('--data-dir', default='', help="TFDS data dir; default TFDS's")
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  command = {'stats': _stats, 'dump': _dump, 'build': _build, 'export': _export}[args.command]
  with warnings.catch_warnings():
    warnings.simplefilter('always')
    warnings.showwarning = _show_warning
    from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
    try:
      with file_errors.reading(getattr(args, 'path', '') or ''):
        result = command(args)
    except file_errors.FILE_ERRORS as e:
      print(json.dumps({'kind': getattr(args, 'kind', None), 'path': getattr(args, 'path', None),
                        'error': ' '.join(str(e).split())}), flush=True)
      return 2
  print(json.dumps(result), flush=True)
  return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
  print(f'warning: {message}', file=sys.stderr)


if __name__ == '__main__':
  sys.exit(main())
