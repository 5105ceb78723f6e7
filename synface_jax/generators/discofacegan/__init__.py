"""DiscoFaceGAN (Deng et al., CVPR 2020) in Flax: the generator SynFace samples faces from.

Modules: vae.py (factor VAE decoders), mapping.py and synthesis.py (StyleGAN1 networks),
truncation.py, network.py (the forward pass over one parameter tree), align.py (the crop onto
the 5-point template), generator.py (the registered 'discofacegan' generator). Import of the
official checkpoint: convert.py (snapshot.py reads the pickle, vae_checkpoint.py the VAEs,
checkpoint.py is the converted layout, mean_w.py the average identity w).
"""
from synface_jax.generators.discofacegan.generator import DiscoFaceGAN

__all__ = ['DiscoFaceGAN']
