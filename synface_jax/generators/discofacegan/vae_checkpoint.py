"""Reads the factor-VAE decoders from DiscoFaceGAN's TensorFlow checkpoints.

The official layout is `<vae dir>/<factor>/stage1_epoch_395.ckpt.{index,data-00000-of-00001}`
for factor in id, exp, gamma, rot; each checkpoint holds the whole trained VAE, of which only
`<factor>/stage1/decoder/{fc0,fc1,fc2,x_hat}/{kernel,bias}` is used (`loggamma_x`, the encoder
and the optimiser slots are not). TensorFlow is imported only when a checkpoint is read.
"""
import glob
import os

import numpy as np

from synface_jax.generators.discofacegan import vae

DEFAULT_PREFIX = 'stage1_epoch_395.ckpt'
_UNUSED_DECODER_VARIABLES = ('loggamma_x',)


def checkpoint_prefix(vae_dir, factor: str) -> str:
  """The checkpoint prefix of `factor` under `vae_dir`, or FileNotFoundError naming the factor."""
  folder = os.path.join(os.fspath(vae_dir), factor)
  default = os.path.join(folder, DEFAULT_PREFIX)
  if os.path.exists(default + '.index'):
    return default
  indexes = sorted(glob.glob(os.path.join(folder, '*.index')))
  if len(indexes) == 1:
    return indexes[0][:-len('.index')]
  found = f'{len(indexes)} .index files' if indexes else 'nothing'
  raise FileNotFoundError(f"no VAE checkpoint for factor '{factor}': expected {default}.index "
                          f'and its .data-* file(s), found {found} in {folder}')


def expected_shapes(factor: str) -> dict:
  """Checkpoint variable name -> shape of the decoder of `factor`."""
  spec = vae.FACTORS[factor]
  widths = [spec.z_dim, spec.hidden, spec.hidden, spec.hidden, spec.out_dim]
  shapes = {}
  for i, layer in enumerate(vae.LAYER_NAMES):
    shapes[f'{factor}/stage1/decoder/{layer}/kernel'] = (widths[i], widths[i + 1])
    shapes[f'{factor}/stage1/decoder/{layer}/bias'] = (widths[i + 1],)
  return shapes


def read_decoder(prefix, factor: str) -> dict:
  """Decoder params {fc0: {kernel, bias}, ..., x_hat: ...} (float32) of one factor's checkpoint.

  Raises:
    ValueError: naming the factor and the variable when the checkpoint cannot be read, lacks a
      decoder variable, has one of another shape, or has an unknown variable in the decoder scope.
  """
  import tensorflow as tf  # Only the converter needs TensorFlow.

  try:
    reader = tf.train.load_checkpoint(os.fspath(prefix))
    found = reader.get_variable_to_shape_map()
  except Exception as e:  # TensorFlow raises several error types for unreadable checkpoints.
    raise ValueError(f"factor '{factor}': cannot read VAE checkpoint {prefix}: {e}") from None
  expected = expected_shapes(factor)
  scope = f'{factor}/stage1/decoder/'
  unexpected = sorted(n for n in found if n.startswith(scope) and n not in expected
                      and n[len(scope):] not in _UNUSED_DECODER_VARIABLES)
  if unexpected:
    raise ValueError(f"factor '{factor}': unexpected variable {unexpected[0]!r} in {prefix}")
  params = {}
  for name, shape in expected.items():
    if name not in found:
      raise ValueError(f"factor '{factor}': missing variable {name!r} in {prefix}")
    if tuple(found[name]) != shape:
      raise ValueError(f"factor '{factor}': variable {name!r} has shape {list(found[name])}, "
                       f'expected {list(shape)}')
    try:
      value = reader.get_tensor(name)
    except Exception as e:  # A missing .data file only shows up here.
      raise ValueError(f"factor '{factor}': cannot read variable {name!r} from {prefix}: "
                       f'{e}') from None
    layer, leaf = name[len(scope):].split('/')
    params.setdefault(layer, {})[leaf] = np.asarray(value, np.float32)
  return params


def read_decoders(vae_dir, factors) -> dict:
  """{factor: decoder params} for each of `factors` under `vae_dir` (see `read_decoder`)."""
  return {f: read_decoder(checkpoint_prefix(vae_dir, f), f) for f in factors}
