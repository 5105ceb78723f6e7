"""Console scripts: each `synface-X` command runs exactly what `python -m synface_jax.X` runs.

    synface-train      python -m synface_jax.main
    synface-generate   python -m synface_jax.generate
    synface-evaluate   python -m synface_jax.evaluate
    synface-embed      python -m synface_jax.embed
    synface-export     python -m synface_jax.models.export
    synface-convert    python -m synface_jax.models.convert
    synface-data       python -m synface_jax.data
    synface-benchmark  python -m synface_jax.benchmark
"""
import runpy

COMMANDS = {
    'train': 'synface_jax.main',
    'generate': 'synface_jax.generate',
    'evaluate': 'synface_jax.evaluate',
    'embed': 'synface_jax.embed',
    'export': 'synface_jax.models.export',
    'convert': 'synface_jax.models.convert',
    'data': 'synface_jax.data',
    'benchmark': 'synface_jax.benchmark',
}


def _run(command):
  # As `python -m`: the module's `if __name__ == '__main__'` block runs with this process's argv.
  runpy.run_module(COMMANDS[command], run_name='__main__', alter_sys=True)


def train():
  _run('train')


def generate():
  _run('generate')


def evaluate():
  _run('evaluate')


def embed():
  _run('embed')


def export():
  _run('export')


def convert():
  _run('convert')


def data():
  _run('data')


def benchmark():
  _run('benchmark')
