"""Held-out data of the shipped models, as the demo and the quality benchmark read it.

The splits themselves live in :mod:`scorekit.training.data` (the trainer's): scikit-learn digits split 1437 / 360
(stratified, ``random_state=0``) and photo patches with whole photos (chelsea, flower) held out. This module adds
what evaluation needs on top: digits as integer levels, their bins in the model's space, and fixed patch subsets.
"""

from __future__ import annotations

import torch

from scorekit.training.data import load_digits_split, load_photo_patches

DIGITS_LEVELS = 17  # sklearn digits take integer values 0..16
# The trainer maps level k to x = -1 + 2 k / 16. bits_per_dim dequantizes level k into [lo + s k, lo + s (k + 1)),
# s = (hi - lo) / 17; centring those bins on the training points needs lo = -1 - 1/16, hi = 1 + 1/16.
DIGITS_DATA_RANGE = (-17 / 16, 17 / 16)


def digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer levels ``(N, 1, 8, 8)`` in ``0..16`` and labels ``(N,)`` of the fixed ``"train"`` / ``"test"`` split."""
    images, labels = load_digits_split(split)
    return torch.round(images * (DIGITS_LEVELS - 1)).long(), labels


def levels_to_unit(levels: torch.Tensor) -> torch.Tensor:
    """Integer levels ``0..16`` -> images in [0, 1] (``k / 16``, what the trainer feeds the model)."""
    return levels.float() / (DIGITS_LEVELS - 1)


def photo_patches(split: str, num: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """``num`` distinct patches ``(num, 3, size, size)`` in [0, 1] of the ``split`` photos, chosen by ``seed``."""
    patches = load_photo_patches(split, size)
    if not 0 < num <= len(patches):
        raise ValueError(f"num must be in [1, {len(patches)}] for {split} patches of size {size}, got {num}")
    return patches[torch.randperm(len(patches), generator=torch.Generator().manual_seed(seed))[:num]]
