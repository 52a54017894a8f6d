"""Training of score networks and noise-conditional classifiers with accelerate (installed as ``scorekit.training``).

- :mod:`~scorekit.training.losses`: score-matching losses as pure functions (DSM for VP / sub-VP / VE in every
  parameterization and weighting, DDPM, SMLD, NCSN, sliced and Hyvärinen score matching, classifier cross-entropy);
- :mod:`~scorekit.training.data`: the bundled offline sets with fixed splits (``load_digits_split``,
  ``load_photo_patches``), image folders and 🤗 datasets;
- ``train_score.py`` / ``train_classifier.py``: the trainers (``accelerate launch training/train_score.py ...``, or
  ``scorekit train`` / ``scorekit train-classifier``), built on :mod:`~scorekit.training.loop` and
  :mod:`~scorekit.training.checkpoint` (exact resume on any number of processes, one run per folder).
"""
