"""Which identity coefficients of the procedural generator move a real-face recogniser?

    PYTHONPATH=. python docs/results/attribute_sensitivity.py --identities 6

Renders held-out identities (ids 2000..) with a neutral expression, 0.25 rad of yaw and one shared
light, then sets one identity coefficient at a time to -2 and +2 (two standard deviations; the
unnamed shape fields and the albedo patterns are redrawn as a group) and prints, per coefficient,
the judge's mean descriptor distance to the unchanged face, largest first, after the distance
between two different identities under the same conditions. Needs the judge extra
(`pip install -e '.[judge]'`).
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from synface_jax import generate, generator_report
from synface_jax.generators import get_generator
from synface_jax.generators.sampling import to_uint8
from synface_jax.generators.procedural import shape_basis, texture


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/demo.py')
  parser.add_argument('--identities', type=int, default=6)
  args = parser.parse_args()
  gen = get_generator(generate.load_config(args.config, []).generator)
  params = gen.init(None)
  judge = generator_report.DlibJudge()
  ids = jnp.arange(2000, 2000 + args.identities)
  coeffs = np.asarray(jax.vmap(gen.identity, (None, 0))(params, ids))
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(5), i))(ids)
  faces = jax.vmap(gen.sample)(keys, jnp.asarray(coeffs))
  faces = faces._replace(expression=jnp.zeros_like(faces.expression),
                         pose=jnp.zeros_like(faces.pose).at[:, 1].set(0.25),
                         lighting=jnp.broadcast_to(faces.lighting[0], faces.lighting.shape))
  render = jax.jit(lambda identity: gen.render(params, faces._replace(identity=identity))[0])
  embed = lambda c: judge(to_uint8(render(jnp.asarray(c, jnp.float32))))[1]
  base = embed(coeffs)
  shape_names = len(shape_basis.IDENTITY_NAMES)
  groups = ([(f'shape {n}', [i]) for i, n in enumerate(shape_basis.IDENTITY_NAMES)]
            + [('shape, unnamed fields', list(range(shape_names, 80)))]
            + [(f'texture {n}', [80 + i]) for i, n in enumerate(texture.NAMES)]
            + [('texture, albedo patterns', list(range(80 + len(texture.NAMES), 160)))])
  rng = np.random.default_rng(0)
  rows = []
  for name, index in groups:
    distances = []
    for value in (-2.0, 2.0):
      c = coeffs.copy()
      c[:, index] = rng.normal(size=(len(ids), len(index))) if len(index) > 1 else value
      distances.append(float(np.linalg.norm(embed(c) - base, axis=-1).mean()))
    rows.append((max(distances), name, distances))
  other = float(np.linalg.norm(embed(np.roll(coeffs, 1, 0)) - base, axis=-1).mean())
  print(f'{"another identity":32s} {other:.3f}')
  for _, name, (low, high) in sorted(rows, reverse=True):
    print(f'{name:32s} {low:.3f} {high:.3f}')


if __name__ == '__main__':
  main()
