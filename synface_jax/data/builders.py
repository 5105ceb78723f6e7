"""TFDS builders for face data held in a local folder (TFDS's manual directory).

  face_identity_folder  identity image folders (CASIA-WebFace layout)
  synface_mixup         SynFace's released synthetic set; soft labels from the file names
  insightface_rec       insightface RecordIO train.rec + train.idx + property
  lfw_pairs             LFW image folder + pairs.txt (split 'test')
  verification_bins     insightface .bin packs (one split per pack: lfw, cfp_fp, agedb_30, ...)

Build with `python -m synface_jax.data build PATH` (picks the builder from what PATH holds and names
the config after it), or with TFDS itself, in ArrayRecord (the format the training pipeline reads)::

  builder = tfds.builder('face_identity_folder', data_dir=DIR, file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/casia-webface'))

(`tfds build face_identity_folder --imports synface_jax.data.builders --manual_dir ...
--file_format array_record` does the same where the TFDS command line is installed with its
apache-beam dependency.)

Training sets keep their examples in the source's order (identity by identity) and record in the
dataset's metadata the label of every example, the class names and count, the image size and every
skipped or converted file with its reason.
"""
import dataclasses
import os

from etils import epath
import tensorflow as tf
import tensorflow_datasets as tfds

from synface_jax import progress
from synface_jax.data import source_folder, source_pairs, source_rec

VERSION = tfds.core.Version('1.0.0')


@dataclasses.dataclass(eq=False)
class SourceConfig(tfds.core.BuilderConfig):
  """A config that names its source path (a file, a folder or 'ROOT:PAIRS') directly."""
  source: str = ''


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Reads from `builder_config.source` when given, else from the manual directory."""
  VERSION = VERSION
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Pass the data folder as --manual_dir (see the module docstring).'
  # TFDS derives this from the package's resources, which needs an optional package; no checksums
  # file is looked up next to it (nothing is downloaded).
  code_path = epath.Path(__file__)

  def source_path(self, dl_manager=None) -> str:
    config = self.builder_config
    if config is not None and getattr(config, 'source', ''):
      return config.source
    return os.fspath(dl_manager.manual_dir)


class _TrainBuilder(_LocalBuilder, skip_registration=True):
  """An identity dataset: image, label, key (+ soft label) per example, in source order."""
  SOFT = False
  DESCRIPTION = ''

  def _info(self):
    features = {
        'image': tfds.features.Image(shape=(None, None, 3)),
        'label': tf.int64,
        'key': tfds.features.Text(),
    }
    if self.SOFT:
      features['label_ids'] = tfds.features.Tensor(shape=(2,), dtype=tf.int32)
      features['label_weights'] = tfds.features.Tensor(shape=(2,), dtype=tf.float32)
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict(features), disable_shuffling=True,
        metadata=tfds.core.MetadataDict())

  def open_source(self, path: str):
    raise NotImplementedError

  def iter_examples(self, src):
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    path = self.source_path(dl_manager)
    return {'train': self._generate_examples(path, self.open_source(path))}

  def _generate_examples(self, path, src):
    labels, partners = [], []
    examples = progress.iterate(self.iter_examples(src), f'build {path}', src.expected_images(),
                                unit='images')
    for key, example in examples:
      labels.append(int(example['label']))
      out = {'image': example['image'], 'label': example['label'], 'key': key}
      if self.SOFT:
        out['label_ids'] = example['label_ids']
        out['label_weights'] = example['label_weights']
        partners.append(int(example['label_ids'][1]))
      yield key, out
    src.report.warn()
    if not labels:
      raise ValueError(f'{path}: no usable images (skipped {len(src.report.skipped)} files; see '
                       f'python -m synface_jax.data stats {path})')
    classes = getattr(src, 'classes', None) or [str(c) for c in range(src.num_classes)]
    if self.SOFT:
      classes = [name for name, _ in src.folders]
    self.info.metadata.update({
        'source': os.path.abspath(path) if os.path.exists(path) else path,
        'num_classes': int(src.num_classes),
        'class_names': list(classes),
        'image_size': list(src.size) if src.size else None,
        'labels': labels,
        'partners': partners,
        **src.report.to_json(),
    })


class FaceIdentityFolder(_TrainBuilder):
  """Identity image folders (one sub-folder of images per identity, CASIA-WebFace layout)."""
  DESCRIPTION = __doc__

  def open_source(self, path):
    return source_folder.list_folders(path)

  def iter_examples(self, src):
    return source_folder.examples(src)


class SynfaceMixup(_TrainBuilder):
  """SynFace's released synthetic set: identity folders whose file names carry mixup labels."""
  DESCRIPTION = __doc__
  SOFT = True

  def open_source(self, path):
    return source_folder.list_folders(path, soft=True)

  def iter_examples(self, src):
    return source_folder.examples(src)


class InsightfaceRec(_TrainBuilder):
  """insightface RecordIO training set: train.rec + train.idx + property."""
  DESCRIPTION = __doc__

  def open_source(self, path):
    return source_rec.open_set(path)

  def iter_examples(self, src):
    return source_rec.examples(src)


class _PairBuilder(_LocalBuilder, skip_registration=True):
  """A verification set: pairs of images (stored as PNG) and whether they show one identity."""
  DESCRIPTION = ''

  def _info(self):
    image = tfds.features.Image(shape=(None, None, 3), encoding_format='png')
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({'image1': image, 'image2': image, 'issame': tf.bool}),
        disable_shuffling=True)

  def _generate_examples(self, examples):
    yield from examples


class LfwPairs(_PairBuilder):
  """LFW: an aligned image folder and pairs.txt; one split, 'test', in pairs.txt order."""
  DESCRIPTION = __doc__

  def _split_generators(self, dl_manager):
    examples = source_pairs.lfw_examples(self.source_path(dl_manager))
    return {'test': self._generate_examples(examples)}


class VerificationBins(_PairBuilder):
  """insightface .bin verification packs; one split per pack, named after its file."""
  DESCRIPTION = __doc__

  def _split_generators(self, dl_manager):
    files = source_pairs.bin_files(self.source_path(dl_manager))
    return {source_pairs.split_name(f): self._generate_examples(source_pairs.bin_examples(f))
            for f in files}


BUILDERS = {
    'folder': FaceIdentityFolder,
    'synface': SynfaceMixup,
    'rec': InsightfaceRec,
    'lfw': LfwPairs,
    'bin': VerificationBins,
}
