"""synface_jax: SynFace (face recognition with synthetic data) in JAX/Flax."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / 'requirements.txt').read_text().splitlines()
    if line.strip() and not line.startswith('#')
]

setup(
    name='synface_jax',
    version='0.1.0',
    description='SynFace: face recognition with synthetic data, in JAX/Flax.',
    long_description=(here / 'README.md').read_text() if (here / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['synface_jax', 'synface_jax.*']),
    python_requires='>=3.10',
    install_requires=requirements,
    extras_require={
        'test': ['pytest>=7'],
        # The generator report's independent real-face recogniser (models ship inside the wheels).
        'judge': ['dlib-bin>=19.24', 'face_recognition_models>=0.3'],
    },
)
