"""Converts the official DiscoFaceGAN checkpoint to an orbax checkpoint, without running TF code.

Usage:
  python -m synface_jax.generators.discofacegan.convert --pkl network-snapshot-020126.pkl \
      --vae-dir vae/weights --out DIR [--mean-w-id w_avg_id.txt | --mean-w-id-samples 50000]

The generator is Gs, the third network of the (G, D, Gs) pickle, read by the plain-data pickle reader
(snapshot.py). Its components `mapping` and `synthesis` are walked and every variable is mapped
by name, with shape checks, to the Flax parameter tree; a missing or unexpected variable is an
error naming it, and `lod` must be 0. The factor VAE decoders are read from the TensorFlow
checkpoints `<vae dir>/{id,exp,gamma,rot}/stage1_epoch_395.ckpt`. mean_w_id comes from the
official text file when given, else it is computed over random identities (mean_w.py).
`--without-id-vae` builds a checkpoint with no identity decoder (it cannot draw identities: for
checking an import only; it then needs --mean-w-id). The layout of DIR is in checkpoint.py.
"""
import argparse
import pickle
import sys

import jax
import numpy as np

from synface_jax import cli
from synface_jax.generators.discofacegan import checkpoint, mean_w, network, snapshot
from synface_jax.generators.discofacegan import vae_checkpoint
from synface_jax.generators.discofacegan.arch import Arch

VAE_FACTORS = ('id', 'exp', 'gamma', 'rot')
COMPONENTS = ('mapping', 'synthesis')


def _arch_of(gs: snapshot.NetworkRecord) -> Arch:
  """The architecture from Gs's builder kwargs, checked against its components' kwargs."""
  arch = Arch.from_static_kwargs(gs.static_kwargs)
  for key, component in gs.components.items():
    for field, value in Arch.from_static_kwargs(component.static_kwargs).to_dict().items():
      if field in component.static_kwargs and value != getattr(arch, field):
        raise ValueError(f'component {key!r} was built with {field}={value!r}, '
                         f'Gs with {field}={getattr(arch, field)!r}')
  return arch


def _to_flax(tf_name: str, value: np.ndarray) -> np.ndarray:
  """A checkpoint value in the Flax layout: noise [1, 1, H, W] -> [H, W], const -> [4, 4, C]."""
  if tf_name.startswith('noise'):
    return value[0, 0]
  if tf_name.endswith('Const/const'):
    return value[0].transpose(1, 2, 0)
  return value


def _tf_shape(tf_name: str, flax_shape) -> tuple:
  if tf_name.startswith('noise'):
    return (1, 1) + tuple(flax_shape)
  if tf_name.endswith('Const/const'):
    return (1, flax_shape[2], flax_shape[0], flax_shape[1])
  return tuple(flax_shape)


def expected_variables(arch: Arch) -> dict:
  """{network key: {variable name: official shape}} of Gs ('' = Gs itself) for `arch`.

  Includes the variables the forward pass does not use (lod, dlatent_avg, the lower-resolution
  ToRGB layers of progressive growing), so a snapshot must hold exactly these.
  """
  shapes = network.param_shapes(arch, ())
  expected = {'': {'lod': (), 'dlatent_avg': (arch.dlatent_size,)}}
  for key in COMPONENTS:
    flat = jax.tree_util.tree_flatten_with_path(shapes[key])[0]
    expected[key] = {}
    for path, leaf in flat:
      name = '/'.join(p.key for p in path)
      expected[key][name] = _tf_shape(name, leaf.shape)
  expected['synthesis']['lod'] = ()
  for lod in range(1, arch.log2_resolution - 1):
    channels = arch.block_channels(arch.log2_resolution - lod)
    expected['synthesis'][f'ToRGB_lod{lod}/weight'] = (1, 1, channels, arch.num_channels)
    expected['synthesis'][f'ToRGB_lod{lod}/bias'] = (arch.num_channels,)
  return expected


def _unused(name: str) -> bool:
  """Variables of a synthesis snapshot that the lod-0 forward pass never reads."""
  return name == 'lod' or (name.startswith('ToRGB_lod') and not name.startswith('ToRGB_lod0/'))


def _check_variables(network_record, expected: dict):
  found = network_record.variables
  where = network_record.name
  for name, shape in expected.items():
    if name not in found:
      raise ValueError(f'missing variable {where}/{name} (shape {list(shape)})')
    if tuple(found[name].shape) != tuple(shape):
      raise ValueError(f'variable {where}/{name} has shape {list(found[name].shape)}, '
                       f'expected {list(shape)}')
  unexpected = [n for n in found if n not in expected]
  if unexpected:
    raise ValueError(f'unexpected variable {where}/{unexpected[0]} '
                     f'({len(unexpected)} unexpected: {unexpected[:5]})')
  if 'lod' in expected and float(found['lod']) != 0.0:
    raise ValueError(f'variable {where}/lod is {float(found["lod"])}: only lod 0 (the '
                     'full-resolution network) is supported')


def generator_params(gs: snapshot.NetworkRecord):
  """({'mapping': ..., 'synthesis': ...} float32 Flax params, Arch) of a pickled Gs."""
  arch = _arch_of(gs)
  for key in COMPONENTS:
    if key not in gs.components:
      raise ValueError(f'{gs.name} has no component {key!r} (components: {list(gs.components)})')
  extra = [k for k in gs.components if k not in COMPONENTS]
  if extra:
    raise ValueError(f'unexpected component {extra[0]!r} of {gs.name}')
  expected = expected_variables(arch)
  _check_variables(gs, expected[''])
  params = {}
  for key in COMPONENTS:
    component = gs.components[key]
    _check_variables(component, expected[key])
    tree = {}
    for name in expected[key]:
      if _unused(name):
        continue
      *modules, leaf = name.split('/')
      node = tree
      for m in modules:
        node = node.setdefault(m, {})
      node[leaf] = np.asarray(_to_flax(name, component.variables[name]), np.float32)
    params[key] = tree
  return params, arch


def convert(pkl, vae_dir, out, mean_w_id_file=None, mean_w_id_samples=mean_w.NUM_SAMPLES,
            seed=0, without_id_vae=False):
  """Reads the snapshot and VAE checkpoints, writes the orbax checkpoint to `out`; returns Arch."""
  gs = snapshot.load_gs(pkl)
  params, arch = generator_params(gs)
  factors = tuple(f for f in VAE_FACTORS if not (without_id_vae and f == 'id'))
  params['vae'] = vae_checkpoint.read_decoders(vae_dir, factors)
  if mean_w_id_file is not None:
    params['mean_w_id'] = mean_w.load_text(mean_w_id_file, arch)
  elif 'id' in params['vae']:
    params['mean_w_id'] = mean_w.compute_mean_w_id(params, arch, jax.random.key(seed),
                                                   mean_w_id_samples)
  else:
    raise ValueError('without the identity VAE, mean_w_id cannot be computed: give --mean-w-id')
  checkpoint.save(out, params, arch)
  return arch


def main(argv=None):
  parser = cli.parser('synface_jax.generators.discofacegan.convert', __doc__.splitlines()[0])
  parser.add_argument('--pkl', required=True, help='network-snapshot-*.pkl (G, D, Gs)')
  parser.add_argument('--vae-dir', required=True, help='vae/weights with id/ exp/ gamma/ rot/')
  parser.add_argument('--out', required=True, help='new output directory')
  parser.add_argument('--mean-w-id', help='official average identity w, [1, L, D] numbers')
  parser.add_argument('--mean-w-id-samples', type=int, default=mean_w.NUM_SAMPLES,
                      help='identities to average when --mean-w-id is not given')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--without-id-vae', action='store_true',
                      help='no identity decoder (checking an import only; needs --mean-w-id)')
  args = parser.parse_args(argv)
  from synface_jax import file_errors  # pylint: disable=g-import-not-at-top
  try:
    with file_errors.reading(args.pkl):  # Errors of other files name them already.
      arch = convert(args.pkl, args.vae_dir, args.out, args.mean_w_id, args.mean_w_id_samples,
                     args.seed, args.without_id_vae)
  except file_errors.FILE_ERRORS as e:
    cli.fail(str(e))
  print(f'wrote DiscoFaceGAN {arch.resolution}px ({arch.num_layers} style layers) from '
        f'{args.pkl} to {args.out}')


if __name__ == '__main__':
  main()
