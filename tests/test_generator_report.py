"""The generator report: pair statistics worked out by hand, a hand-built judge, the CLI, dlib."""
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synface_jax import evaluate, generator_report as R
from toy_generator import ToyGenerator


def test_roc_summary_by_hand():
  genuine = np.array([0.1, 0.2, 0.3])
  impostor = np.array([0.25, 0.4, 0.5])
  s = R.roc_summary(genuine, impostor, threshold=0.35)
  # 8 of the 9 (genuine, impostor) pairs are ordered right: 0.3 > 0.25 is the one that is not.
  assert s['auc'] == pytest.approx(8 / 9)
  # Cut at 0.25 (d < 0.25 is "same"): 2/3 genuine accepted, no impostor: balanced 5/6.
  assert s['best_accuracy'] == pytest.approx(5 / 6)
  # Cut at 0.3: miss 1/3 of genuine pairs, accept 1/3 of impostors: EER 1/3.
  assert s['eer'] == pytest.approx(1 / 3)
  # At 0.35: all genuine accepted, 1/3 impostors accepted.
  assert s['accuracy_at_threshold'] == pytest.approx(0.5 * (1 + 2 / 3))
  separated = R.roc_summary(np.array([0.1, 0.2]), np.array([0.6, 0.9]))
  assert separated['auc'] == 1.0 and separated['eer'] == 0.0 and separated['best_accuracy'] == 1.0
  ties = R.roc_summary(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
  assert ties['auc'] == pytest.approx(0.5)


class ColourJudge:
  """Embeds a face by its mean colour; detects every face that is not blank."""
  name = 'mean_colour'
  threshold = 0.1

  def __call__(self, images):
    x = np.asarray(images, np.float32) / 255
    return x.std(axis=(1, 2, 3)) > 0, x.mean(axis=(1, 2))


def _hand_built_faces(n=6, m=3, identity_step=0.2, nuisance=0.01, factor_changes=None):
  """Identity i is a flat colour; nuisance adds tiny brightness changes; blank 0 means undetected."""
  rng = np.random.default_rng(0)
  colour = lambda i: np.array([0.1 + identity_step * (i % 4), 0.5, 0.1 + identity_step * (i // 4)])
  face = lambda c: np.uint8(np.clip(np.broadcast_to(c, (8, 8, 3)) * 255, 0, 255))
  draws = np.stack([[face(colour(i) + nuisance * rng.normal()) for _ in range(m)]
                    for i in range(n)])
  base = np.stack([face(colour(i)) for i in range(n)])
  changes = factor_changes or {}
  variants = {f: np.stack([face(colour(i) + changes.get(f, 0.0)) for i in range(n)])
              for f in R.FACTORS}
  swapped = np.stack([face(colour((i + 1) % n)) for i in range(n)])
  return R.Faces(draws=draws, base=base, variants=variants, swapped=swapped)


def test_score_separates_what_the_judge_can_tell_apart():
  report, arrays = R.score(_hand_built_faces(), ColourJudge())
  assert report['detection_rate'] == 1.0
  assert report['best_accuracy'] == 1.0 and report['auc'] == 1.0
  assert len(arrays['genuine']) == 6 * 3  # 3 pairs within each of 6 identities.
  for factor in R.FACTORS:
    assert report['per_factor'][factor]['separability'] == 1.0
  # A factor that moves the judge more than identity does is not separable.
  faces = _hand_built_faces(factor_changes={'lighting': 0.6})
  report, _ = R.score(faces, ColourJudge())
  assert report['per_factor']['lighting']['separability'] < 0.6
  assert report['per_factor']['yaw']['separability'] == 1.0
  # Identities the judge cannot tell apart: chance.
  report, _ = R.score(_hand_built_faces(identity_step=0.0, nuisance=0.05), ColourJudge())
  assert report['best_accuracy'] < 0.75


def test_run_writes_the_report(tmp_path):
  gen = ToyGenerator((16, 16))
  gen.num_identities = 10
  report = R.run(gen, gen.init(jax.random.key(0)), str(tmp_path), ColourJudge(), identities=4,
                 per_identity=3, name='toy', log=lambda _: None)
  stored = json.loads((tmp_path / 'report.json').read_text())
  assert stored == json.loads(json.dumps(report))
  assert stored['first_identity'] == 10 and stored['identities'] == 4
  assert {'yaw', 'lighting', 'expression'} == set(stored['per_factor'])
  assert '| faces detected |' in (tmp_path / 'report.md').read_text()
  for png in ('distances.png', 'hardest_pairs.png'):
    assert (tmp_path / png).stat().st_size > 500


def test_render_faces_changes_only_the_named_factor():
  gen = ToyGenerator((16, 16))
  params = gen.init(jax.random.key(0))
  faces = R.render_faces(gen, params, jax.random.key(1), [20, 21, 22], per_identity=2, batch_size=2)
  assert faces.draws.shape == (3, 2, 16, 16, 3) and faces.base.shape == (3, 16, 16, 3)
  # The toy renderer ignores expression; lighting changes brightness; identity changes the pattern.
  np.testing.assert_array_equal(faces.variants['expression'], faces.base)
  assert not np.array_equal(faces.variants['lighting'], faces.base)
  assert not np.array_equal(faces.swapped, faces.base)
  # Identity 20's twin with identity 21 renders the pattern of 21.
  coeffs = jax.vmap(gen.identity, (None, 0))(params, jnp.array([20, 21]))
  assert not np.allclose(coeffs[0], coeffs[1])


def test_augmented_draws_and_clean_factor_faces():
  from synface_jax.generators import augment
  gen = ToyGenerator((16, 16))
  params = gen.init(jax.random.key(0))
  faces = R.render_faces(gen, params, jax.random.key(1), [20, 21], per_identity=2, batch_size=2,
                         augment_options=augment.Augment(grayscale=1.0))
  draws = faces.draws.astype(int)
  assert np.abs(draws[..., 0] - draws[..., 1]).max() <= 1  # Grey (up to rounding).
  assert np.abs(faces.base[..., 0].astype(int) - faces.base[..., 1]).max() > 10  # Still colour.


def test_report_augment_option():
  from synface_jax import config as config_lib
  c = config_lib.base_config()
  c.synthetic.augment.blur_sigma = 1.0
  assert evaluate._report_augment(c, '') is None
  only = evaluate._report_augment(c, 'blur,jpeg')
  assert (only.blur, only.jpeg, only.noise, only.blur_sigma) == (1.0, 1.0, 0.0, 1.0)
  with pytest.raises(ValueError, match="--augment 'sharpen'"):
    evaluate._report_augment(c, 'sharpen')


def test_cli_names_a_bad_config(capsys):
  rc = evaluate.main(['generator', '--config', '/nonexistent/config.py', '--out', '/tmp/x'])
  assert rc != 0
  assert '/nonexistent/config.py' in capsys.readouterr().err


@pytest.mark.slow
def test_dlib_judge_on_a_rendered_face():
  pytest.importorskip('dlib', reason="the judge is an optional extra: pip install -e '.[judge]'")
  if importlib.util.find_spec('face_recognition_models') is None:
    pytest.skip("the judge's models are an optional extra: pip install -e '.[judge]'")
  from synface_jax.generators.procedural import ProceduralGenerator
  gen = ProceduralGenerator(image_size=(112, 112), resolution=0.5, num_identities=10)
  params = gen.init(None)
  faces = R.render_faces(gen, params, jax.random.key(0), [10, 11], per_identity=1, batch_size=2)
  judge = R.DlibJudge()
  blank = np.full((1, 112, 112, 3), 128, np.uint8)
  images = np.concatenate([faces.base, faces.base[:1, :, ::-1], blank])
  found, emb = judge(images)
  assert found.tolist() == [True, True, True, False]
  assert emb.shape == (4, 128)
  # A mirrored face is the same person to the judge, and closer than another identity.
  d_mirror = np.linalg.norm(emb[0] - emb[2])
  d_other = np.linalg.norm(emb[0] - emb[1])
  assert d_mirror < judge.threshold and d_mirror < d_other
