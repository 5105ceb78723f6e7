"""Named random streams: every random draw of a run comes from `config.seed` and a name.

    seed(config.seed, name) -> int in [0, 2**31)     for APIs that take an integer seed
    key(config.seed, name)  =  jax.random.key(seed(config.seed, name))

The int is the first 4 bytes (little-endian) of SHA-256('{seed}/{name}'), top bit cleared, so streams of different
names (or of different run seeds) are unrelated and stable across machines, versions and
processes. A name outside NAMES is refused, so a typo cannot open a stream of its own.
"""
import hashlib

import jax

NAMES = {
    'params': 'the initial backbone and head of the train state',
    'generator': "generator.init (a generator's identity pool is fixed by generator.*.seed)",
    'draws': "Syn_N_S's fixed nuisance draws, keyed by (identity, draw): the train step's and "
             "`data export`'s alike (`generators.sampling.fixed_draws`)",
    'step': "the train step's key; step t folds in t (identities, partners, phi, psi, dropout)",
    'eval_pairs': "the in-training evaluator's synthetic verification pairs",
    'data': "the real set's shuffle and augmentation (tf.data); one stream per host process",
    'export_mixup': "`data export`'s partners and phi, per image",
    'pictures': "`generate`'s identity grid, mixup strips, sweeps and npz faces",
}


def seed(root: int, name: str, *indices: int) -> int:
  """The integer seed of stream `name` of a run seeded with `root`; `indices` (e.g. the host's
  process index) give sub-streams of their own."""
  if name not in NAMES:
    raise ValueError(f'unknown random stream {name!r}; valid: {", ".join(NAMES)}')
  text = '/'.join([str(int(root)), name, *(str(int(i)) for i in indices)])
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], 'little') >> 1


def key(root: int, name: str, *indices: int) -> jax.Array:
  """The PRNG key of stream `name` of a run seeded with `root` (`seed`'s integer)."""
  return jax.random.key(seed(root, name, *indices))
