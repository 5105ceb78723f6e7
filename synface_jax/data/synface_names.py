"""SynFace's file naming of identity-mixed images, which carries each image's soft label.

Image j (1-based) of identity i (1-based), mixed with partner identity p (1-based) with weight phi,
is `{j:03}_{i:05}x{phi:.3f}_({p:05})x{1-phi:.3f}.jpg` inside folder `{i:05}`. Class ids are the
1-based numbers minus one; the label is (i - 1, phi), (p - 1, 1 - phi).
"""
import dataclasses
import re

_NAME = re.compile(r'^(\d+)_(\d+)x(-?\d+(?:\.\d*)?)_\((\d+)\)x(-?\d+(?:\.\d*)?)\.jpg$')


@dataclasses.dataclass(frozen=True)
class MixupName:
  """What a SynFace file name says: 0-based image number, class ids and their weights."""
  image: int
  identity: int
  weight: float
  partner: int
  partner_weight: float


def folder_name(identity: int) -> str:
  """The folder of 0-based `identity`."""
  return f'{identity + 1:05}'


def file_name(identity: int, image: int, phi: float, partner: int) -> str:
  """The file name of 0-based `image` of 0-based `identity` mixed with `partner` by `phi`."""
  return f'{image + 1:03}_{identity + 1:05}x{phi:.3f}_({partner + 1:05})x{1 - phi:.3f}.jpg'


def parse(name: str) -> MixupName | None:
  """The label a file name carries, or None when it is not in SynFace's naming."""
  m = _NAME.match(name)
  if not m:
    return None
  j, i, w, p, wp = m.groups()
  if int(j) < 1 or int(i) < 1 or int(p) < 1:
    return None
  return MixupName(int(j) - 1, int(i) - 1, float(w), int(p) - 1, float(wp))
