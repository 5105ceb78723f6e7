"""Progress lines with totals, and `data export` resuming where it stopped."""
import os

import jax
import pytest

from synface_jax import mixup, progress
from synface_jax.data import export
from toy_generator import ToyGenerator

SIZE = 16


def test_progress_lines_name_the_total_rate_and_eta(monkeypatch, capsys):
  now = [0.0]
  monkeypatch.setattr(progress.time, 'monotonic', lambda: now[0])
  bar = progress.Progress('export out', total=100, unit='images', done=20, interval=5.0)
  now[0] = 2.0
  bar.update(10)                        # Within the interval: no line.
  now[0] = 8.0
  bar.update(20)                        # 30 new images in 8 s; 50 left at 3.75/s.
  now[0] = 20.0
  bar.update(50)
  bar.close()
  bar.close()                           # Written once.
  lines = capsys.readouterr().err.splitlines()
  assert lines == [
      'export out: 20/100 images, 20 done before',
      'export out: 50/100 images (50.0%), 3.8 images/s, ETA 0:00:13',
      'export out: 100/100 images (100.0%), 4.0 images/s, took 0:00:20']


def _files(root):
  out = {}
  for folder, _, names in os.walk(root):
    for name in names:
      with open(os.path.join(folder, name), 'rb') as f:
        out[os.path.relpath(os.path.join(folder, name), root)] = f.read()
  return out


@pytest.fixture(scope='module')
def toy():
  generator = ToyGenerator(image_size=(SIZE, SIZE))
  return generator, generator.init(jax.random.key(0))


def _export(toy, out):
  generator, params = toy
  return export.export_folder(generator, params, str(out), num_identities=4,
                              images_per_identity=3, phi_sampler=mixup.make_sampler('synface'),
                              batch_size=5)


def test_export_killed_midway_resumes_to_the_same_files(toy, tmp_path, monkeypatch, capsys):
  _export(toy, tmp_path / 'once')
  reference = _files(tmp_path / 'once')
  assert len(reference) == 12 and not any('.part' in k for k in reference)

  # A kill between writing a file and renaming it, seven files in.
  calls, replace = [0], os.replace

  def killed(src, dst):
    calls[0] += 1
    if calls[0] == 7:
      raise KeyboardInterrupt
    replace(src, dst)
  monkeypatch.setattr(export.os, 'replace', killed)
  with pytest.raises(KeyboardInterrupt):
    _export(toy, tmp_path / 'twice')
  monkeypatch.setattr(export.os, 'replace', replace)
  partial = _files(tmp_path / 'twice')
  parts = [k for k in partial if k.endswith('.part')]
  assert len(parts) == 1 and os.path.basename(parts[0]).startswith('.')
  assert 6 <= len(partial) - 1 < 12                  # No half file under a .jpg name.
  assert all(reference[k] == v for k, v in partial.items() if k in reference)
  # A file cut short by an older writer is written again too.
  cut = sorted(k for k in partial if k.endswith('.jpg'))[0]
  with open(tmp_path / 'twice' / cut, 'r+b') as f:
    f.truncate(10)

  capsys.readouterr()
  result = _export(toy, tmp_path / 'twice')
  assert _files(tmp_path / 'twice') == reference     # Same names, same bytes, no .part left.
  kept = len(partial) - 2
  assert (result['kept'], result['written']) == (kept, 12 - kept)
  err = capsys.readouterr().err
  assert f'12 images, {kept} done before' in err and '12/12 images (100.0%)' in err
  # Nothing left to do: no batch is rendered again.
  assert _export(toy, tmp_path / 'twice')['written'] == 0


def test_generate_npz_reports_its_faces(toy, tmp_path, capsys):
  from synface_jax import generate
  generator, params = toy
  path = str(tmp_path / 'faces.npz')
  generate.write_npz(path, generator, params, jax.random.key(1), identities=3, per_identity=2,
                     pool=8, batch_size=4)
  err = capsys.readouterr().err
  assert f'generate {path}: 0/6 faces' in err and f'generate {path}: 6/6 faces (100.0%)' in err
