"""Evaluation beyond the 10-fold verification protocols of `synface_jax.evaluate`.

  metrics.py         ROC, AUC, EER, TAR@FAR and score histograms of pair scores (pure numpy)
  identification.py  exact 1:N search in bounded memory, closed-set CMC, open-set DIR@FPIR
  plots.py           histograms, ROC and CMC curves as PNGs (Pillow only)
  sets.py            loading evaluation sets: pair packs, labelled sets, synthetic ones
  report.py          `python -m synface_jax.evaluate run`: every set and metric of one checkpoint

Only numpy is imported here; JAX is imported by the search and the report.
"""
