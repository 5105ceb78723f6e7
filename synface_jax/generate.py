"""Looks at the face generator: PNG grids of identities, identity mixup and factor sweeps.

    python -m synface_jax.generate --config=configs/demo.py --out DIR
    python -m synface_jax.generate --out DIR --npz faces.npz --identities 100 --per-identity 10
    python -m synface_jax.generate --generator discofacegan --option checkpoint=CKPT --out DIR

Without --config the procedural generator's defaults are used. Writes into DIR:
  identities.png   8 identities (rows) x 8 draws of expression, pose, lighting and background;
  mixup.png        identity mixup strips: phi = 0, 0.1, ..., 1 from identity B to identity A;
  pose.png         yaw, pitch and roll sweeps of one face;
  lighting.png     the key light going round the face, and its strength;
  expression.png   smile, mouth opening, brows, eyes.
--npz FILE writes `images` uint8 [N * M, H, W, 3] RGB, `labels` int64 [N * M] and the factors
(`identity`, `expression`, `pose`, `lighting`, `noise`) of M faces of each of N identities; with
--mixup SPEC (e.g. 'synface', 'fixed:0.8') identities are mixed with random partners and
`mix_ids` / `mix_weights` hold the soft labels; the mixing is the train step's: the config's
im.fn (a `types.Mixup` of your own, module:callable) with im.partners partners each.
"""
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from synface_jax import cli, mixup, seeds
from synface_jax.generators import get_generator
from synface_jax.types import Factors
from synface_jax.generators import sampling
from synface_jax.generators.sampling import to_uint8


def load_config(spec, overrides=()):
  """The ConfigDict of `path[:arg]` (a python file with get_config) with FIELD=VALUE overrides
  (`config.load`, as main reads --config), or None without a spec."""
  from synface_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load(spec, overrides) if spec else None


def with_generator(config, name, options):
  """The config (or the base one) with generator.name and generator.<name>.KEY=VALUE set."""
  from synface_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config if config is not None and 'generator' in config else config_lib.base_config()
  config.generator.name = name or config.generator.name
  block = config.generator.get(config.generator.name) if options else {}
  if block is None:
    raise ValueError(f'--option: {config.generator.name!r} has no options block; a generator '
                     'of your own (module:callable) takes the shared generator fields')
  block.update(cli.key_values(options, '--option', allowed=block.keys()))
  return config


def identity_mixup(config):
  """(mix, partners per face) of the config's im block (config.im.fn, config.im.partners), or the
  built-in mixup with one partner."""
  from synface_jax import extensions  # pylint: disable=g-import-not-at-top
  if config is None or 'im' not in config:
    return mixup.mix_identities, 1
  return extensions.mixup('im.fn', config.im.fn), int(config.im.get('partners', 1))


def build(config):
  """(generator, pool size) from a config with a `generator` field, or the defaults."""
  if config is None or 'generator' not in config:
    from ml_collections import ConfigDict  # pylint: disable=g-import-not-at-top
    generator = get_generator(ConfigDict({'name': 'procedural'}))
  else:
    generator = get_generator(config.generator)
  pool = generator.num_identities or 10000
  if config is not None and 'synthetic' in config and 'num_identities' in config.synthetic:
    pool = int(config.synthetic.num_identities)
  return generator, pool


def _grid(images, rows, cols):
  """uint8 [rows * cols, H, W, 3] -> one image of rows x cols tiles."""
  h, w = images.shape[1:3]
  return images.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)


def _save(path, images, rows, cols):
  Image.fromarray(_grid(images, rows, cols)).save(path)


def _stack(factors):
  return jax.tree.map(lambda *a: jnp.stack(a), *factors)


def _neutral(factors: Factors) -> Factors:
  """A frontal, neutral, evenly lit version of a face (for sweeps)."""
  return factors._replace(expression=jnp.zeros_like(factors.expression),
                          pose=jnp.zeros_like(factors.pose),
                          lighting=jnp.zeros_like(factors.lighting).at[2].set(0.25).at[11].set(0.25)
                          .at[20].set(0.25) + jnp.array([0.12] + [0.0] * 8 + [0.12] + [0.0] * 8 + [0.12] + [0.0] * 8))


def sweeps(generator, params, key):
  """Factor sweeps of one identity: dict of name -> (factors batch, rows, cols)."""
  pose, light, expr = _sweep_factors(generator, params, key)
  return {'pose': (pose, 3, 9), 'lighting': (light, 2, 9), 'expression': (expr, 7, 9)}


# The factor builders below are compiled (one program each): op by op, each of their many small
# array operations would be compiled on its own.
@functools.partial(jax.jit, static_argnums=0)
def _sweep_factors(generator, params, key):
  """(pose, lighting, expression) sweeps of one identity, as stacked factors."""
  from synface_jax.generators.procedural import lighting as sh  # pylint: disable=g-import-not-at-top
  base = _neutral(generator.sample(key, generator.identity(params, 0)))
  angles = np.linspace(-1, 1, 9)
  pose = [base._replace(pose=jnp.array([0.0, 0.8 * a, 0.0])) for a in angles]
  pose += [base._replace(pose=jnp.array([0.35 * a, 0.0, 0.0])) for a in angles]
  pose += [base._replace(pose=jnp.array([0.0, 0.0, 0.3 * a])) for a in angles]
  light = []
  for a in np.linspace(-np.pi, np.pi, 9):
    d = jnp.array([np.sin(a), np.cos(a) * 0.8, 0.6])
    light.append(base._replace(lighting=sh.directional(d / jnp.linalg.norm(d), 0.5)))
  for s in np.linspace(-0.3, 0.6, 9):
    light.append(base._replace(lighting=sh.directional(jnp.array([0.4, 0.4, 0.82]), 0.4)
                               .at[jnp.array([0, 9, 18])].add(s)))
  expr = []
  for index in (0, 1, 2, 3, 4, 5, 6):
    for a in np.linspace(-1.0, 2.0, 9):
      expr.append(base._replace(expression=jnp.zeros(64).at[index].set(a)))
  return _stack(pose), _stack(light), _stack(expr)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def identity_grid(generator, params, key, count=8, draws=8):
  coeffs = jax.vmap(generator.identity, in_axes=(None, 0))(params, jnp.repeat(jnp.arange(count), draws))
  return jax.vmap(generator.sample)(jax.random.split(key, count * draws), coeffs)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def mixup_strips(generator, params, key, pool, pairs=4, steps=11):
  k_ids, k_draw = jax.random.split(key)
  a = jax.random.randint(k_ids, (pairs,), 0, pool)
  b = mixup.sample_partners(jax.random.fold_in(k_ids, 1), a, pool)
  phi = jnp.linspace(0.0, 1.0, steps)
  id_a, id_b = jnp.repeat(a, steps), jnp.repeat(b, steps)
  ca = jax.vmap(generator.identity, in_axes=(None, 0))(params, id_a)
  cb = jax.vmap(generator.identity, in_axes=(None, 0))(params, id_b)
  coeffs, _ = mixup.identity_mixup(ca, cb, id_a, id_b, jnp.tile(phi, pairs))
  draws = jax.vmap(generator.sample)(jnp.repeat(jax.random.split(k_draw, pairs), steps, axis=0), coeffs)
  return draws._replace(pose=draws.pose * 0.3)


@functools.lru_cache(maxsize=None)
def _jitted_render(generator):
  """The generator's render, compiled once per generator (each jax.jit wrapper compiles anew)."""
  return jax.jit(generator.render)


def render_all(generator, params, factors, batch_size=64, progress=''):
  """uint8 images of a batch of factors, rendered in chunks of one shape (one compilation).

  progress: when given, the name on progress lines (synface_jax.progress) counting the faces.
  """
  from synface_jax import progress as progress_lib  # pylint: disable=g-import-not-at-top
  render = _jitted_render(generator)
  n = factors.pose.shape[0]
  bar = progress_lib.Progress(progress, n, unit='faces') if progress else None
  out = []
  for start in range(0, n, batch_size):
    take = np.minimum(np.arange(start, start + batch_size), n - 1)
    chunk = jax.tree.map(lambda a: a[take], factors)
    out.append(to_uint8(render(params, chunk)[0])[:min(batch_size, n - start)])
    if bar:
      bar.update(len(out[-1]))
  if bar:
    bar.close()
  return np.concatenate(out)


def write_npz(path, generator, params, key, identities, per_identity, pool, spec=None, batch_size=64,
              mix=mixup.mix_identities, num_partners=1):
  """Saves faces of `identities` x `per_identity` (optionally mixed by `mix`, a `types.Mixup` on
  Factors, with num_partners partners each) as arrays; see module doc."""
  labels = np.repeat(np.arange(identities), per_identity)
  ids = jnp.asarray(labels, jnp.int32)
  k_draw, k_partner, k_phi = jax.random.split(key, 3)
  partners = phi = None
  if spec:
    partners = sampling.partner_ids(k_partner, ids, max(pool, identities), num_partners)
    phi = mixup.make_sampler(spec)(k_phi, ids.shape)
  images, label, factors = sampling.faces_in_batches(
      generator, params, key, ids, jax.random.split(k_draw, len(labels)), partners=partners,
      phi=phi, batch_size=batch_size, mix=mix, progress=f'generate {path}')
  extra = {'mix_ids': label.ids, 'mix_weights': label.weights} if spec else {}
  arrays = {name: np.asarray(value) for name, value in factors._asdict().items()}
  np.savez(path, images=images, labels=labels.astype(np.int64), **arrays, **extra)


def main(argv=None):
  parser = cli.parser('synface_jax.generate', __doc__.split('\n')[0])
  parser.add_argument('--config', default=None,
                      help='config file (path[:arg]) with a generator field; --config.FIELD=VALUE '
                           'overrides a field, as for main')
  parser.add_argument('--out', default=None, help='folder for the PNG grids')
  parser.add_argument('--npz', default=None, help='also write faces as arrays to this .npz file')
  parser.add_argument('--identities', type=int, default=8)
  parser.add_argument('--per-identity', type=int, default=8)
  parser.add_argument('--mixup', default=None, help="phi spec for --npz, e.g. 'synface' or 'fixed:0.8'")
  parser.add_argument('--seed', type=int, default=0,
                      help="a training run's config.seed: the generator's params are that run's; "
                           "the faces shown come from stream 'pictures' (synface_jax/seeds.py)")
  parser.add_argument('--generator', default=None,
                      help="backend, overriding the config's (procedural, discofacegan, or "
                           "module:callable of your own)")
  parser.add_argument('--option', action='append', default=[], metavar='KEY=VALUE',
                      help="the backend's own option, e.g. checkpoint=DIR or preset=small")
  from synface_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  overrides, argv = config_lib.split_overrides(sys.argv[1:] if argv is None else argv)
  args = parser.parse_args(argv)
  if not args.out and not args.npz:
    parser.error('give --out and/or --npz')
  if overrides and not args.config:
    parser.error(f'--config.{overrides[0]} needs --config FILE')
  try:  # A bad config file, field, option or generator: one line, exit 2.
    config = load_config(args.config, overrides)
    if args.generator or args.option:
      config = with_generator(config, args.generator, args.option)
    mix, num_partners = identity_mixup(config)
  except ValueError as e:
    cli.fail(str(e))
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    generator, pool = build(config)  # Reads the generator's files (BFM .mat, checkpoint).
  except file_errors.FILE_ERRORS as e:
    cli.fail(str(e))
  # The generator's params are those of a training run with config.seed = --seed.
  params = generator.init(seeds.key(args.seed, 'generator'))
  key = seeds.key(args.seed, 'pictures')
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    k_grid, k_mix, k_sweep = jax.random.split(key, 3)
    _save(os.path.join(args.out, 'identities.png'),
          render_all(generator, params, identity_grid(generator, params, k_grid)), 8, 8)
    _save(os.path.join(args.out, 'mixup.png'),
          render_all(generator, params, mixup_strips(generator, params, k_mix, pool)), 4, 11)
    for name, (factors, rows, cols) in sweeps(generator, params, k_sweep).items():
      _save(os.path.join(args.out, f'{name}.png'), render_all(generator, params, factors), rows, cols)
    print(f'wrote identities.png, mixup.png, pose.png, lighting.png, expression.png to {args.out}')
  if args.npz:
    write_npz(args.npz, generator, params, jax.random.fold_in(key, 7), args.identities,
              args.per_identity, pool, args.mixup, mix=mix, num_partners=num_partners)
    print(f'wrote {args.identities * args.per_identity} faces to {args.npz}')


if __name__ == '__main__':
  main()
