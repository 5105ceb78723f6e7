"""Face recognition evaluation; its command line is `python -m synface_jax.evaluate`.

  protocols.py       the 10-fold verification protocols, insightface and SynFace (pure numpy)
  evaluator.py       the in-training evaluator (PairEvaluator); embedding interleaved pair images
  metrics.py         ROC, AUC, EER, TAR@FAR and score histograms of pair scores (pure numpy)
  identification.py  exact 1:N search in bounded memory, closed-set CMC, open-set DIR@FPIR
  attributes.py      accuracy by pose, lighting and expression of the rendered pairs
  variation.py       `evaluate variation`: intra-class variation of labelled sets
  plots.py           histograms, ROC and CMC curves as PNGs (Pillow only)
  sets.py            loading evaluation sets: pair packs, labelled sets, synthetic ones
  report.py          `python -m synface_jax.evaluate run`: every set and metric of one checkpoint

Pair files are parsed in `synface_jax.data.pair_files`; nothing under `synface_jax.data` imports
this package. Only numpy is imported here; JAX is imported by the search and the report.
"""
