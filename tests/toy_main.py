"""`python -m synface_jax.main` with the toy generator registered as 'toy' (for subprocess tests).

    python tests/toy_main.py --config=configs/synthetic.py --workdir=W --config.generator.name=toy
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402

from synface_jax import generators, main  # noqa: E402
from toy_generator import ToyGenerator  # noqa: E402


@generators.register('toy')
class RegisteredToy(ToyGenerator):
  """ToyGenerator taking the generator config's shared fields."""

  def __init__(self, image_size=(32, 32), num_identities=None, **unused):
    super().__init__(image_size, num_identities=num_identities)


@generators.register('toy_nan')
class NaNToy(RegisteredToy):
  """Renders only NaN (its parameters are NaN): a generator gone wrong. Same program as 'toy'."""

  def init(self, key):
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    return {'basis': jnp.full_like(super().init(key)['basis'], jnp.nan)}


if __name__ == '__main__':
  app.run(main.main, flags_parser=main.parse_flags)
