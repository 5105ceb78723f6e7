"""Real training data: the one place where the train loop gets its real batches from."""
import dataclasses
from typing import Iterator

import jax
import ml_collections

from synface_jax import sharding
from synface_jax.data import image_folder


@dataclasses.dataclass
class RealData:
  """A real identity dataset streamed as global batches on the mesh."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  folder: image_folder.IdentityFolder

  @property
  def num_classes(self) -> int:
    return self.folder.num_classes

  @property
  def num_images(self) -> int:
    return len(self.folder.files)

  def iterator(self, start_step: int = 0) -> Iterator[dict]:
    """Global batches; a resumed run reshuffles with a seed derived from its start step."""
    c = self.config
    per_host, rest = divmod(c.optim.batch_size, jax.process_count())
    if rest:
      raise ValueError(f'optim.batch_size={c.optim.batch_size} is not divisible by the '
                       f'{jax.process_count()} processes')
    ds = image_folder.make_dataset(
        self.folder, batch_size=per_host, image_size=tuple(c.model.input_size),
        seed=c.seed * 1_000_003 + start_step, flip=c.real.flip, shuffle_buffer=c.real.shuffle_buffer,
        process_index=jax.process_index(), process_count=jax.process_count())
    for batch in ds.as_numpy_iterator():
      yield sharding.host_local_to_global(batch, self.mesh)


def real_dataset(config: ml_collections.ConfigDict, mesh) -> RealData:
  folder = image_folder.scan(config.real.path, config.real.num_identities,
                             config.real.images_per_identity)
  return RealData(config, mesh, folder)
