"""Identity image folders (CASIA-WebFace layout) and SynFace's released synthetic set, as examples.

One sub-folder per identity, taken in sorted order; images in sorted order inside each. In a plain
folder the class ids are the positions of the identity folders that hold usable images. In SynFace's
released layout (see `synface_names`) each file name carries its soft label; the class ids are the
numbers in the names, which must lie within the identity folders.

Bad files are skipped and reported (`images.Report`): unreadable, corrupt or truncated images,
images whose size differs from the set's (the most common size among the first files), files that
are not images, empty identity folders, and, for SynFace's layout, names without a mixup label or
with a class outside the set.
"""
import dataclasses
import os
from typing import Iterator

from synface_jax.data import images, synface_names

SIZE_PROBE = 1000  # Files whose headers decide the set's image size.


@dataclasses.dataclass
class FolderSet:
  """The identity folders under `root` and what iterating over them found."""
  root: str
  soft: bool
  folders: list                  # [(identity folder name, [image file names, sorted])]
  report: images.Report
  size: tuple | None             # (H, W) every image must have
  classes: list = dataclasses.field(default_factory=list)  # name of each class id (plain sets)

  @property
  def num_classes(self) -> int:
    return len(self.folders) if self.soft else len(self.classes)

  def expected_images(self) -> int:
    """The image files listed (what iterating yields unless some are skipped)."""
    return sum(len(names) for _, names in self.folders)


def list_folders(root: str, soft: bool = False, size=None) -> FolderSet:
  """Lists identity folders and image files (no decoding yet); `size` (H, W) overrides the probe."""
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise ValueError(f'{root} is not a directory')
  report = images.Report(root)
  folders = []
  for folder in sorted(os.listdir(root)):
    path = os.path.join(root, folder)
    if not os.path.isdir(path) or folder.startswith('.'):
      continue
    names = []
    for name in sorted(os.listdir(path)):
      if name.startswith('.'):
        continue
      if name.lower().endswith(images.IMAGE_EXTENSIONS):
        names.append(name)
      else:
        report.skip(os.path.join(folder, name), 'not an image file')
    folders.append((folder, names))
  if not folders:
    raise ValueError(f'{root} has no identity sub-folders (expected one folder of images per '
                     'identity)')
  if size is None:
    probe = [os.path.join(root, f, n) for f, names in folders for n in names][:SIZE_PROBE]
    size = images.most_common_size(images.image_size(_read(p)) for p in probe)
  return FolderSet(root, soft, folders, report, tuple(size) if size else None)


def _read(path: str) -> bytes:
  try:
    return images.read_file(path)
  except images.BadImage:  # Reported when the examples are read.
    return b''


def examples(fs: FolderSet, limit: int = 0) -> Iterator[tuple[str, dict]]:
  """Yields (key, example) in dataset order; fills `fs.classes` and `fs.report` as it goes.

  An example is {'image': encoded RGB bytes, 'label': int} plus, for SynFace's layout,
  'label_ids' [2] and 'label_weights' [2] (a zero-weight partner has id -1).
  """
  count = 0
  fs.classes.clear()
  for position, (folder, names) in enumerate(fs.folders):
    if not names:
      fs.report.skip(folder + os.sep, 'empty identity folder')
      continue
    usable = []
    for name in names:
      rel = os.path.join(folder, name)
      example = _example(fs, position, folder, name, rel)
      if example is not None:
        usable.append((rel, example))
    if not usable:
      fs.report.skip(folder + os.sep, 'empty identity folder: no usable images')
      continue
    if not fs.soft:
      for _, example in usable:
        example['label'] = len(fs.classes)
      fs.classes.append(folder)
    for rel, example in usable:
      yield rel, example
      count += 1
      if limit and count >= limit:
        return


def _example(fs: FolderSet, position: int, folder: str, name: str, rel: str) -> dict | None:
  """One checked example, or None after reporting why the file is skipped."""
  label = None
  if fs.soft:
    parsed = synface_names.parse(name)
    if parsed is None:
      fs.report.skip(rel, 'no mixup label: the name is not in SynFace naming')
      return None
    if folder.isdigit() and int(folder) - 1 != parsed.identity:
      fs.report.skip(rel, f'label mismatch: identity {parsed.identity + 1} in folder {folder}')
      return None
    num = len(fs.folders)
    partner = parsed.partner if parsed.partner_weight != 0 else -1
    for cid in (parsed.identity, partner):
      if cid >= num:
        fs.report.skip(rel, f'label out of range: class {cid} outside [0, {num})')
        return None
    label = {'label_ids': [parsed.identity, partner],
             'label_weights': [parsed.weight, parsed.partner_weight]}
  path = os.path.join(fs.root, rel)
  try:
    data, note, _ = images.check_image(images.read_file(path), fs.size)
  except images.BadImage as e:
    fs.report.skip(rel, str(e))
    return None
  if note:
    fs.report.convert(rel, note)
  example = {'image': data, 'label': position}
  if label is not None:
    main = 0 if label['label_weights'][0] >= label['label_weights'][1] else 1
    example.update(label, label=label['label_ids'][main])
  return example
