"""Is the gap between renders and photographs in the BatchNorm statistics? (AdaBN as a diagnostic)

    PYTHONPATH=. python docs/results/bn_adaptation.py --checkpoint runs/demo --sets real_pairs.npz

Scores a pair set twice with the same weights: once with the BatchNorm statistics the run
accumulated on renders, once with statistics re-estimated on the set's own images (one forward pass
in train mode over all of them, AdaBN). If the second is much better, what separates the domains is
first- and second-order image statistics (colour, contrast, noise), which augmentation can reach;
if not, it is in what the features encode. Prints the AUC and the best single-threshold accuracy
(flip-sum embeddings, as the insightface protocol) for each. A diagnostic, not an evaluation
protocol: the second score has seen the test images.
"""
import argparse

import jax.numpy as jnp
import numpy as np

from synface_jax import embedder as embedder_lib
from synface_jax.data import images as image_io
from synface_jax.eval import metrics, sets
from synface_jax.models import checkpoint, model_spec


def score(emb, images, issame):
  e = emb(images)
  s = np.sum(e[0::2] * e[1::2], axis=1)
  best = max(np.mean((s >= t) == issame) for t in np.unique(s))
  return metrics.auc(s[issame], s[~issame]), best


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--checkpoint', required=True)
  parser.add_argument('--sets', required=True, help='an images / issame .npz of aligned pairs')
  parser.add_argument('--step', type=int, default=None)
  args = parser.parse_args()
  images, issame = sets.load_pairs(args.sets)
  variables, step = checkpoint.load_backbone(args.checkpoint, args.step)
  spec = model_spec.resolve_spec(args.checkpoint, variables)
  stored = embedder_lib.Embedder(variables, spec, step=step, flip=True)
  x = jnp.asarray(image_io.model_input(images))
  _, updated = stored._model.apply(variables, x, train=True, mutable=['batch_stats'])  # pylint: disable=protected-access
  adapted = embedder_lib.Embedder({**variables, 'batch_stats': updated['batch_stats']}, spec,
                                  step=step, flip=True)
  for name, emb in (('statistics from training', stored), ('re-estimated on the set', adapted)):
    auc, acc = score(emb, images, issame)
    print(f'step {step}, {name}: AUC {auc:.4f}, best accuracy {acc:.4f}')


if __name__ == '__main__':
  main()
