"""The procedural face generator (registered as 'procedural'): a morphable head built in code,
rendered and aligned in JAX. See `generator.ProceduralGenerator`."""
from synface_jax.generators.procedural.generator import ProceduralGenerator

__all__ = ['ProceduralGenerator']
