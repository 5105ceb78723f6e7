"""The generator report: how a real-face recogniser sees a generator's faces.

A generator is only useful if the faces it renders differ the way real people differ, and stay the
same person when only expression, pose or lighting change. Accuracy of our own model on our own
renders cannot tell (it is saturated); an independent recogniser trained on real photographs can.

    python -m synface_jax.evaluate generator --config=configs/demo.py --identities 100 \\
        --per-identity 8 --out reports/generator

renders `identities` held-out identities (ids from the generator's pool size up, never trained on)
x `per_identity` fresh nuisance draws each, and per identity one base face plus one variant per
nuisance factor that changes only that factor (yaw, lighting, expression). The judge (by default
dlib's ResNet face descriptor with its 5-point aligner: `pip install -e '.[judge]'`) finds and
embeds every face. Written to --out:

  report.json / report.md  detection rate; same/different pair accuracy at the judge's own
                           threshold and at the best one, EER and AUC; per-factor separability
                           (pairs differing only in that factor against pairs differing only in
                           identity);
  distances.png            genuine / impostor distance histograms with the judge's threshold;
  hardest_pairs.png        the genuine pairs the judge finds farthest apart and the impostor pairs
                           it finds closest.
"""
import dataclasses
import json
import os
from typing import Callable, Dict, Optional, Protocol, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from synface_jax.eval.metrics import roc_summary
from synface_jax.eval.plots import histogram_png
from synface_jax.generators import augment
from synface_jax.generators import sampling
from synface_jax.generators.sampling import to_uint8

FACTORS = ('yaw', 'lighting', 'expression')


class Judge(Protocol):
  """A face recogniser: finds and embeds faces; smaller distance = more alike."""
  name: str
  threshold: float  # Its own decision threshold: distance below it means "same person".

  def __call__(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 [N, H, W, 3] RGB -> (detected bool [N], embeddings float [N, D])."""


def _model_dir(package: str) -> str:
  """The `models` folder of an installed package, found without importing it (the
  face_recognition_models package imports pkg_resources, which setuptools >= 81 no longer ships)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise ImportError(f'no module named {package!r}')
  return os.path.join(list(spec.submodule_search_locations)[0], 'models')


class DlibJudge:
  """dlib's face detector (HOG), 5-point shape predictor and ResNet descriptor (LFW 99.38%).

  Aligned crops are tight, so each face is padded by half its size (edge pixels) before detection,
  as the face would sit in a photograph. A face the detector misses is still embedded from a box
  fitted to the aligned crop, and counted as missed.
  """
  name = 'dlib_resnet_v1'
  threshold = 0.6  # dlib's documented same-person threshold on Euclidean distance.

  def __init__(self):
    try:
      import dlib  # pylint: disable=g-import-not-at-top
      models = _model_dir('face_recognition_models')
    except ImportError as e:
      raise RuntimeError("the dlib judge needs the optional extra: pip install -e '.[judge]' "
                         f'({e})') from None
    self._dlib = dlib
    self._detector = dlib.get_frontal_face_detector()
    self._predictor = dlib.shape_predictor(os.path.join(models, 'shape_predictor_5_face_landmarks.dat'))
    self._encoder = dlib.face_recognition_model_v1(
        os.path.join(models, 'dlib_face_recognition_resnet_model_v1.dat'))

  def __call__(self, images):
    found, embeddings = [], []
    for image in np.asarray(images, np.uint8):
      h, w = image.shape[:2]
      pad = max(h, w) // 2
      padded = np.ascontiguousarray(np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode='edge'))
      boxes = self._detector(padded, 0)
      if len(boxes):
        box = max(boxes, key=lambda b: b.area())
      else:
        box = self._dlib.rectangle(pad + w // 14, pad + h // 14, pad + w - w // 14, pad + h - h // 14)
      shape = self._predictor(padded, box)
      found.append(len(boxes) > 0)
      embeddings.append(np.asarray(self._encoder.compute_face_descriptor(padded, shape)))
    return np.array(found, bool), np.array(embeddings, np.float32)


@dataclasses.dataclass
class Faces:
  """Rendered faces for the report, uint8 [..., H, W, 3]."""
  draws: np.ndarray      # [N, M, H, W, 3]: M fresh nuisance draws of each identity.
  base: np.ndarray       # [N, H, W, 3]: one reference face of each identity ...
  variants: Dict[str, np.ndarray]  # ... and per factor [N, H, W, 3] the same face with only it changed.
  swapped: np.ndarray    # [N, H, W, 3]: the base face of identity i with identity (i + 1) % N.


def _with_factor(base, other, factor):
  """`base` factors with one nuisance factor taken from `other`."""
  if factor == 'yaw':
    return base._replace(pose=base.pose.at[:, 1].set(other.pose[:, 1]))
  if factor == 'lighting':
    return base._replace(lighting=other.lighting)
  if factor == 'expression':
    return base._replace(expression=other.expression)
  raise ValueError(f'unknown factor {factor!r}; one of {FACTORS}')


def render_faces(generator, params, key, identity_ids: Sequence[int], per_identity: int,
                 batch_size: int = 32, augment_options: Optional[augment.Augment] = None) -> Faces:
  """The report's faces of the given (held-out) identities; deterministic in `key`.

  With `augment_options`, the draws (not the factor faces) go through the train step's augmentation,
  to see how much of each identity a real recogniser still finds in what the model trains on.
  """
  ids = jnp.asarray(identity_ids, jnp.int32)
  n = len(ids)

  def faces(params, ids, keys):
    """One fresh draw per (identity, key)."""
    images = sampling.faces(generator, params, None, ids, keys)[0]
    if augment_options is None or not augment_options.enabled:
      return images
    degrade = lambda k, x: augment.augment_one(jax.random.fold_in(k, 1), x, augment_options)
    return jax.vmap(degrade)(keys, (images + 1) / 2) * 2 - 1

  def factor_faces(params, ids, keys, other_keys, partner_ids):
    """Per identity: a base face, one variant per factor, and the base with the partner's identity."""
    coeffs = jax.vmap(generator.identity, (None, 0))(params, ids)
    base = jax.vmap(generator.sample)(keys, coeffs)
    other = jax.vmap(generator.sample)(other_keys, coeffs)
    stacks = [base] + [_with_factor(base, other, f) for f in FACTORS]
    stacks.append(base._replace(identity=jax.vmap(generator.identity, (None, 0))(params, partner_ids)))
    images = generator.render(params, jax.tree.map(lambda *xs: jnp.concatenate(xs), *stacks))[0]
    return images.reshape(len(stacks), -1, *images.shape[1:]).swapaxes(0, 1)

  draw_root, base_root, other_root = jax.random.split(key, 3)
  index = jnp.arange(n * per_identity)
  draws = _batched(jax.jit(faces), params, batch_size, jnp.repeat(ids, per_identity),
                   jax.vmap(lambda i: jax.random.fold_in(draw_root, i))(index))
  fold = lambda root: jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.arange(n))
  stacks = _batched(jax.jit(factor_faces), params, batch_size, ids, fold(base_root),
                    fold(other_root), jnp.roll(ids, -1)).swapaxes(0, 1)
  return Faces(draws=draws.reshape(n, per_identity, *draws.shape[1:]), base=stacks[0],
               variants={f: stacks[1 + i] for i, f in enumerate(FACTORS)}, swapped=stacks[-1])


def _batched(fn, params, batch_size, *arrays):
  """uint8 fn(params, *arrays) over the leading axis in batches (the last one padded): one compile."""
  total = len(arrays[0])
  out = []
  for start in range(0, total, batch_size):
    chunk = [a[start:start + batch_size] for a in arrays]
    count = len(chunk[0])
    chunk = [jnp.concatenate([a, jnp.repeat(a[-1:], batch_size - count, 0)]) for a in chunk]
    out.append(to_uint8(fn(params, *chunk))[:count])
  return np.concatenate(out)


def _pairs(num_identities: int, per_identity: int, seed: int):
  """Genuine pairs: all within-identity pairs of draws; impostor pairs: as many, random."""
  ii, jj = np.triu_indices(per_identity, 1)
  genuine = [(i * per_identity + a, i * per_identity + b)
             for i in range(num_identities) for a, b in zip(ii, jj)]
  rng = np.random.default_rng(seed)
  a = rng.integers(0, num_identities, len(genuine))
  b = (a + rng.integers(1, num_identities, len(genuine))) % num_identities
  impostor = list(zip(a * per_identity + rng.integers(0, per_identity, len(genuine)),
                      b * per_identity + rng.integers(0, per_identity, len(genuine))))
  return np.array(genuine), np.array(impostor)


def _distance(e, pairs):
  return np.linalg.norm(e[pairs[:, 0]] - e[pairs[:, 1]], axis=-1)


def score(faces: Faces, judge: Judge, seed: int = 0) -> Tuple[dict, dict]:
  """The report's figures, and the arrays the plots need."""
  n, m = faces.draws.shape[:2]
  flat = faces.draws.reshape(n * m, *faces.draws.shape[2:])
  found, emb = judge(flat)
  genuine_pairs, impostor_pairs = _pairs(n, m, seed)
  genuine, impostor = _distance(emb, genuine_pairs), _distance(emb, impostor_pairs)
  report = {'judge': judge.name, 'judge_threshold': judge.threshold, 'identities': n,
            'per_identity': m, 'detection_rate': float(found.mean()),
            **roc_summary(genuine, impostor, judge.threshold)}
  # Per factor: pairs that differ only in that factor against pairs that differ only in identity.
  stacked = np.concatenate([faces.base, faces.swapped] + [faces.variants[f] for f in FACTORS])
  found_f, emb_f = judge(stacked)
  base, swapped = emb_f[:n], emb_f[n:2 * n]
  identity_only = np.linalg.norm(base - swapped, axis=-1)
  report['identity_only_mean'] = float(identity_only.mean())
  report['per_factor'] = {}
  for k, factor in enumerate(FACTORS):
    variant = emb_f[(2 + k) * n:(3 + k) * n]
    only = np.linalg.norm(base - variant, axis=-1)
    stats = roc_summary(only, identity_only, judge.threshold)
    report['per_factor'][factor] = {
        'separability': stats['best_accuracy'], 'auc': stats['auc'],
        'factor_only_mean': float(only.mean()), 'same_at_threshold': float(np.mean(only < judge.threshold)),
    }
  report['detection_rate_factor_faces'] = float(found_f.mean())
  arrays = {'genuine': genuine, 'impostor': impostor, 'genuine_pairs': genuine_pairs,
            'impostor_pairs': impostor_pairs, 'images': flat}
  return report, arrays


def hardest_pairs_png(path, images, genuine_pairs, genuine, impostor_pairs, impostor, count=8):
  """Two rows of pairs: the farthest genuine pairs, then the closest impostor pairs."""
  h, w = images.shape[1:3]
  label_h = 14
  sheet = Image.new('RGB', (count * 2 * w, 2 * (h + label_h)), 'white')
  draw = ImageDraw.Draw(sheet)
  rows = ((genuine_pairs[np.argsort(-genuine)[:count]], np.sort(genuine)[::-1][:count], 'same'),
          (impostor_pairs[np.argsort(impostor)[:count]], np.sort(impostor)[:count], 'diff'))
  for r, (pairs, distances, kind) in enumerate(rows):
    y = r * (h + label_h)
    for k, ((a, b), d) in enumerate(zip(pairs, distances)):
      x = k * 2 * w
      sheet.paste(Image.fromarray(images[a]), (x, y + label_h))
      sheet.paste(Image.fromarray(images[b]), (x + w, y + label_h))
      draw.text((x + 2, y + 1), f'{kind} {d:.3f}', fill='black')
  sheet.save(path)


def markdown(report: dict) -> str:
  """report.md: the figures as two tables."""
  lines = [f"# Generator report ({report.get('generator', '')})", '',
           f"{report['identities']} held-out identities x {report['per_identity']} draws, judged by "
           f"`{report['judge']}` (same person below distance {report['judge_threshold']}).", '',
           '| measure | value |', '|---|---|']
  rows = (('faces detected', 'detection_rate'),
          ('pair accuracy at the judge threshold', 'accuracy_at_threshold'),
          ('pair accuracy, best threshold', 'best_accuracy'), ('best threshold', 'best_threshold'),
          ('EER', 'eer'), ('AUC', 'auc'), ('mean genuine distance', 'genuine_mean'),
          ('mean impostor distance', 'impostor_mean'),
          ('mean distance, identity only changed', 'identity_only_mean'))
  lines += [f'| {label} | {report[key]:.4f} |' for label, key in rows if key in report]
  lines += ['', 'Per nuisance factor: faces differing only in that factor (genuine) against faces '
            'differing only in identity (impostor).', '',
            '| factor | separability (best accuracy) | AUC | mean distance | judged same |',
            '|---|---|---|---|---|']
  for factor, s in report['per_factor'].items():
    lines.append(f"| {factor} | {s['separability']:.4f} | {s['auc']:.4f} | "
                 f"{s['factor_only_mean']:.4f} | {s['same_at_threshold']:.4f} |")
  return '\n'.join(lines) + '\n'


def run(generator, params, out_dir: str, judge: Judge, identities: int = 100,
        per_identity: int = 8, seed: int = 0, first_identity: Optional[int] = None,
        name: str = '', log: Callable[[str], None] = print,
        augment_options: Optional[augment.Augment] = None) -> dict:
  """Renders, judges and writes the report; returns its figures."""
  if identities < 2 or per_identity < 2:
    raise ValueError(f'the report needs at least 2 identities x 2 draws, got {identities} x {per_identity}')
  first = int(generator.num_identities if first_identity is None else first_identity)
  os.makedirs(out_dir, exist_ok=True)
  log(f'rendering {identities} held-out identities (ids {first}..{first + identities - 1}) '
      f'x {per_identity} draws + {len(FACTORS) + 2} factor faces each')
  faces = render_faces(generator, params, jax.random.key(seed), np.arange(first, first + identities),
                       per_identity, augment_options=augment_options)
  log(f'judging {identities * (per_identity + len(FACTORS) + 2)} faces with {judge.name}')
  report, arrays = score(faces, judge, seed)
  report.update(generator=name, seed=seed, first_identity=first,
                augment={k: v for k, v in dataclasses.asdict(augment_options).items()
                         if v and not isinstance(v, tuple)} if augment_options else {})
  with open(os.path.join(out_dir, 'report.json'), 'w') as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(out_dir, 'report.md'), 'w') as f:
    f.write(markdown(report))
  histogram_png(os.path.join(out_dir, 'distances.png'), arrays['genuine'], arrays['impostor'],
                judge.threshold, title=f'{name}: {judge.name} distances')
  hardest_pairs_png(os.path.join(out_dir, 'hardest_pairs.png'), arrays['images'],
                    arrays['genuine_pairs'], arrays['genuine'], arrays['impostor_pairs'],
                    arrays['impostor'])
  return report


def summary_line(report: dict) -> str:
  factors = ', '.join(f"{k} {v['separability']:.3f}" for k, v in report['per_factor'].items())
  return (f"detected {report['detection_rate']:.3f}, pair accuracy {report['best_accuracy']:.3f} "
          f"(at the judge's threshold {report.get('accuracy_at_threshold', float('nan')):.3f}), "
          f"EER {report['eer']:.3f}, AUC {report['auc']:.3f}; separability by factor: {factors}")
