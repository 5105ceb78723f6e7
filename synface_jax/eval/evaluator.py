"""The in-training evaluator (`PairEvaluator`) and embedding of interleaved pair images.

`evaluate_pairs` embeds pair images (rows 2k and 2k + 1 are pair k) with any `embed_fn` and runs a
protocol of `protocols`. Pair sets are read by `synface_jax.eval.sets` (files through the one
parser of each format, `synface_jax.data.pair_files`) and prepared as the embedder prepares faces:
`images.fit_to_size`, then `images.model_input`.

TensorFlow is never imported.
"""
from typing import Any, Callable, Dict

import numpy as np

from synface_jax.data import images as image_io
from synface_jax.eval import protocols as protocols_lib

def embed_images(embed_fn: Callable[[np.ndarray], Any],
                 images: np.ndarray,
                 batch_size: int = 64,
                 flip: bool = False) -> np.ndarray:
  """Embeds uint8 NHWC images (or float ones, already normalised) in fixed-size batches.

  The last batch is padded (with copies of its first image) to ``batch_size`` so that a jitted
  ``embed_fn`` sees one shape; the padding rows are dropped.

  Args:
    embed_fn: normalised float32 [B, H, W, 3] -> embeddings [B, D] (numpy or jax).
    images: uint8 [M, H, W, 3].
    batch_size: batch size passed to ``embed_fn``.
    flip: when True, returns ``embed(x) + embed(x flipped along the width)``.

  Returns:
    float32/float64 embeddings [M, D] as a numpy array.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  outputs = []
  for start in range(0, images.shape[0], batch_size):
    batch = images[start:start + batch_size]
    real = batch.shape[0]
    if real < batch_size:
      pad = np.repeat(batch[:1], batch_size - real, axis=0)
      batch = np.concatenate([batch, pad], axis=0)
    x = image_io.model_input(batch)
    emb = np.asarray(embed_fn(x))
    if flip:
      emb = emb + np.asarray(embed_fn(np.ascontiguousarray(x[:, :, ::-1])))
    if emb.ndim != 2 or emb.shape[0] != batch_size:
      raise ValueError(f'embed_fn must return [{batch_size}, D] embeddings, got {emb.shape}')
    outputs.append(emb[:real])
  return np.concatenate(outputs, axis=0)


def evaluate_pairs(embed_fn: Callable[[np.ndarray], Any],
                   images: np.ndarray,
                   issame,
                   protocol: str,
                   batch_size: int = 64) -> Dict[str, Any]:
  """Embeds interleaved pair images and runs a verification protocol.

  Args:
    embed_fn: normalised float32 [B, H, W, 3] -> embeddings [B, D].
    images: uint8 [2N, H, W, 3]; rows 2k and 2k + 1 are pair k.
    issame: [N] ground truth.
    protocol: 'insightface' (flip-sum embeddings) or 'synface' (no flip).
    batch_size: batch size passed to ``embed_fn``.

  Returns:
    The protocol's result dict (see `protocols.verify`).
  """
  if protocol not in protocols_lib.PROTOCOLS:
    raise ValueError(f'unknown verification protocol {protocol!r}; expected one of '
                     f'{protocols_lib.PROTOCOLS}')
  images = np.asarray(images)
  issame = np.asarray(issame)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be [2N, H, W, 3], got shape {images.shape}')
  if images.shape[0] != 2 * issame.shape[0]:
    raise ValueError(f'{images.shape[0]} images for {issame.shape[0]} pairs; expected '
                     f'{2 * issame.shape[0]}')
  embeddings = embed_images(embed_fn, images, batch_size, flip=protocol == 'insightface')
  return protocols_lib.verify(embeddings[0::2], embeddings[1::2], issame, protocol)


class PairEvaluator:
  """Verification of the backbone being trained on the pair sets named in config.eval.pairs.

  A source is a '.bin' pack, 'IMAGE_ROOT:pairs.txt', an '.npz' (images, issame) or
  'synthetic[:N]': N pairs (default 6,000) rendered by the run's generator from identities outside
  its training pool ("Syn-LFW"). The pair images are loaded once (files at construction, so a bad
one stops the run before training; rendered pairs at the first call); each call embeds them in eval
  mode and returns {'eval/NAME/PROTOCOL/accuracy': ..., '.../std': ..., for insightface
  '.../val', and the all-pairs '.../auc', '.../eer', '.../tar@far=0.001', ...}
  (`synface_jax.eval.report.verification_figures`). After a call, `images()` draws its ROC curves
  and score histograms and `scores()` holds the genuine and impostor pair scores.
  """

  def __init__(self, config, model, generator=None, gen_params=None):
    import jax
    self.protocols = tuple(config.eval.protocols)
    self.batch_size = config.eval.batch_size
    self.size = size = tuple(config.model.input_size)
    self.sets, self._to_render = {}, {}
    for source in config.eval.pairs:
      kind, _, count = source.partition(':')
      if kind == 'synthetic':
        if generator is None:
          raise ValueError(f'eval.pairs entry {source!r}: synthetic pairs need a generator '
                           '(the synthetic or mixed regime)')
        from synface_jax.generators.pairs import NUM_FOLDS  # pylint: disable=g-import-not-at-top
        num_pairs = int(count or 6000)
        if num_pairs <= 0 or num_pairs % (2 * NUM_FOLDS):
          raise ValueError(f'eval.pairs entry {source!r}: rendered pairs come in positive '
                           f'multiples of {2 * NUM_FOLDS} (10 folds, half same, half different)')
        # Rendered at the first evaluation, not before the first step (nothing to check here).
        from synface_jax import seeds  # pylint: disable=g-import-not-at-top
        self._to_render['synthetic'] = (generator, gen_params,
                                        seeds.key(config.seed, 'eval_pairs'), num_pairs)
        continue
      else:
        from synface_jax.eval.sets import load_pairs, set_name
        images, issame = load_pairs(source, progress=True)
        name = set_name(source)
      if len(issame) < 10:
        raise ValueError(f'eval.pairs entry {source!r} holds {len(issame)} pairs; the '
                         f'verification protocols need at least 10 (10 folds)')
      self.sets[name] = (image_io.fit_to_size(images, size), issame)
    self._embed = jax.jit(lambda variables, x: model.apply(variables, x, train=False))
    self._last = {}  # name -> (figures by protocol, {protocol: (genuine, impostor) scores}).

  def __call__(self, params, batch_stats) -> Dict[str, float]:
    from synface_jax.eval.report import pair_scores, verification_figures  # pylint: disable=g-import-not-at-top
    from synface_jax.generators.pairs import synthetic_pairs  # pylint: disable=g-import-not-at-top
    for name, args in self._to_render.items():
      images, issame = synthetic_pairs(*args)
      self.sets[name] = (image_io.fit_to_size(images, self.size), issame)
    self._to_render = {}
    variables = {'params': params, 'batch_stats': batch_stats}
    embed_fn = lambda x: self._embed(variables, x)
    results = {}
    for name, (images, issame) in self.sets.items():
      plain = embed_images(embed_fn, images, self.batch_size)
      flipped = None
      if 'insightface' in self.protocols:  # embed(x) + embed(flipped x), as evaluate_pairs sums.
        flipped = plain + embed_images(embed_fn, np.ascontiguousarray(images[:, :, ::-1]),
                                       self.batch_size)
      figures = verification_figures(plain, flipped, issame, self.protocols)
      scores = {p: pair_scores(plain, flipped, p) for p in self.protocols}
      self._last[name] = (figures, {p: (s[issame], s[~issame]) for p, s in scores.items()})
      for protocol, r in figures.items():
        prefix = f'eval/{name}/{protocol}'
        for key in ('accuracy', 'std', 'val', 'auc', 'eer'):
          if key in r:
            results[f'{prefix}/{key}'] = float(r[key])
        for far, at in r['tar_at_far'].items():
          results[f'{prefix}/tar@far={far}'] = float(at['tar'])
    return results

  def scores(self) -> Dict[str, np.ndarray]:
    """{'eval/NAME/PROTOCOL/genuine' and '.../impostor': pair scores} of the last call."""
    out = {}
    for name, (_, by_protocol) in self._last.items():
      for protocol, (genuine, impostor) in by_protocol.items():
        out[f'eval/{name}/{protocol}/genuine'] = genuine
        out[f'eval/{name}/{protocol}/impostor'] = impostor
    return out

  def images(self) -> Dict[str, np.ndarray]:
    """uint8 [H, W, 3] pictures of the last call: 'eval/roc/PROTOCOL' (one curve per set) and
    'eval/NAME/PROTOCOL/histogram' (genuine and impostor cosine similarities)."""
    from synface_jax.eval import plots  # pylint: disable=g-import-not-at-top
    out = {}
    for protocol in self.protocols:
      curves = {f"{name} (AUC = {figures[protocol]['auc']:.3f})":
                (figures[protocol]['roc']['far'], figures[protocol]['roc']['tar'])
                for name, (figures, _) in self._last.items()}
      if curves:
        out[f'eval/roc/{protocol}'] = np.asarray(
            plots.roc_png(None, curves, title=f'ROC, {protocol} protocol'))
    for name, (_, by_protocol) in self._last.items():
      for protocol, (genuine, impostor) in by_protocol.items():
        out[f'eval/{name}/{protocol}/histogram'] = np.asarray(plots.histogram_png(
            None, genuine, impostor, title=f'{name}, {protocol}: cosine similarity', bins=50,
            label='cosine'))
    return out
