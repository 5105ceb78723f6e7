"""Where the scalp hair ends in the aligned crop: the first bare row down the middle of the forehead.

    PYTHONPATH=. python docs/results/hairline.py --faces 32

Renders `--faces` held-out identities (ids from the config's pool size up, 1000.. for the demo) frontal and with a neutral expression, once as
the generator draws them and once with the hair taken away (hairline and temples raised off the
head, no fringe, no side hair). A row of the crop's middle 20 columns counts as hair where the two
differ; the first row that does not is where the forehead begins. Prints the median and the 10th
and 90th percentiles of that row (0 = the crop's top edge, 112 pixels in all).
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax import generate
from synface_jax.generators import get_generator
from synface_jax.generators.procedural import texture


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/demo.py')
  parser.add_argument('--faces', type=int, default=32)
  args = parser.parse_args()
  config = generate.load_config(args.config, []).generator
  if config.name != 'procedural':
    parser.error(f'generator.name={config.name!r}: the hair is a procedural-generator layer')
  gen = get_generator(config)
  params = gen.init()
  first = int(config.num_identities)  # Held-out ids start at the pool size.
  ids = jnp.arange(first, first + args.faces)
  coeffs = jax.vmap(gen.identity, (None, 0))(params, ids)
  keys = jax.random.split(jax.random.PRNGKey(1), args.faces)
  factors = jax.vmap(gen.sample)(keys, coeffs)
  factors = factors._replace(pose=factors.pose * 0, expression=factors.expression * 0)
  with_hair = np.asarray(jax.jit(gen.render)(params, factors)[0])

  decode = texture.decode

  def bald(c):
    p = dict(decode(c))
    p['hairline'], p['temples'] = p['hairline'] + 5.0, p['temples'] + 5.0
    p['fringe'], p['hair_side'] = 0.0 * p['fringe'], 0.0 * p['hair_side']
    return p

  texture.decode = bald
  try:
    without = np.asarray(jax.jit(gen.render)(params, factors)[0])
  finally:
    texture.decode = decode
  width = with_hair.shape[2]
  middle = slice(width // 2 - 10, width // 2 + 10)
  hair = np.abs(with_hair - without).sum(-1)[:, :, middle].mean(-1) > 0.15  # [faces, rows]
  rows = np.array([int(np.argmin(h)) if h[0] else 0 for h in hair])
  print(f'hair ends at row {np.median(rows):.1f} (median; 10th-90th percentile '
        f'{np.percentile(rows, 10):.1f}-{np.percentile(rows, 90):.1f}) of {with_hair.shape[1]}')


if __name__ == '__main__':
  main()
