"""Which draws does the judge's face detector miss? Detection rate per quartile of each factor.

    PYTHONPATH=. python docs/results/detection_misses.py --faces 320

Renders `--faces` held-out identities (ids 5000..) with one fresh draw each, runs the generator
report's judge (`pip install -e '.[judge]'`) and prints, for pose, light, expression, background
and every per-identity shader parameter, the detection rate in each quartile of that value (with
the quartile edges). `--out DIR` also writes a contact sheet of missed faces.
"""
import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from synface_jax import generate, generator_report
from synface_jax.generators import get_generator
from synface_jax.generators.sampling import to_uint8
from synface_jax.generators.procedural import texture


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/demo.py')
  parser.add_argument('--faces', type=int, default=320)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  gen = get_generator(generate.load_config(args.config, []).generator)
  params = gen.init(None)
  judge = generator_report.DlibJudge()
  n = args.faces
  ids = jnp.arange(5000, 5000 + n)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(9), i))(ids)
  faces = jax.vmap(gen.sample)(keys, jax.vmap(gen.identity, (None, 0))(params, ids))
  render = jax.jit(lambda f: gen.render(params, f)[0])
  images = np.concatenate([to_uint8(render(jax.tree.map(lambda x: x[s:s + 32], faces)))
                           for s in range(0, n, 32)])[:n]
  found, _ = judge(images)
  print(f'detected {found.mean():.3f} of {n}')
  pose = np.asarray(faces.pose)
  values = {'pitch': pose[:, 0], '|yaw|': np.abs(pose[:, 1]), '|roll|': np.abs(pose[:, 2]),
            'ambient': np.asarray(faces.lighting)[:, 0], 'smile': np.asarray(faces.expression)[:, 0],
            'jaw_open': np.asarray(faces.expression)[:, 1], 'background': np.asarray(faces.noise)[:, 0]}
  for name, value in texture.decode(faces.identity[:, 80:]).items():
    value = np.asarray(value)
    if value.ndim == 2 and value.shape[1] == 1:
      values[name] = value[:, 0]
  for name, x in values.items():
    edges = np.quantile(x, [0, 0.25, 0.5, 0.75, 1.0])
    quartile = np.clip(np.searchsorted(edges[1:-1], x), 0, 3)
    rates = [found[quartile == q].mean() if np.any(quartile == q) else np.nan for q in range(4)]
    print(f'{name:14s}', ' '.join(f'{r:.2f}' for r in rates), '  edges', ' '.join(f'{e:.2f}' for e in edges))
  missed = images[~found][:40]
  if args.out and len(missed):
    os.makedirs(args.out, exist_ok=True)
    rows = [np.concatenate(list(missed[r:r + 10]), 1) for r in range(0, len(missed) - 9, 10)]
    if rows:
      Image.fromarray(np.concatenate(rows, 0)).save(os.path.join(args.out, 'missed.png'))


if __name__ == '__main__':
  main()
