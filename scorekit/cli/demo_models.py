"""The shipped models as score functions for ``scorekit demo`` and ``benchmarks/quality.py``.

The digits UNet is class-conditional with ``num_class_embeds = K + 1``: labels ``0..K-1`` and ``K`` = "no label"
(dropped in training with probability 0.1), so one network gives the unconditional score (label ``K``), the
conditional one, and classifier-free guidance (Ho & Salimans 2022) in the epsilon parameterization::

    eps_w(x, t, y) = eps(x, t, K) + w (eps(x, t, y) - eps(x, t, K))      (w = 1: the conditional model)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from scorekit.score import model_time_input, output_to_score


@dataclass
class ShippedDigits:
    """The digits pipeline's parts: class-conditional ``unet``, ``sde``, noise-conditional ``classifier``."""

    unet: torch.nn.Module
    sde: object
    classifier: torch.nn.Module | None
    null_label: int

    def score_fn(self, labels: torch.Tensor | None = None, cfg_scale: float = 1.0) -> Callable:
        """``score_fn(x, t)`` of class ``labels`` ``(B,)`` with CFG weight ``cfg_scale``; ``None`` = unconditional."""
        unet, sde, null = self.unet, self.sde, self.null_label

        def eps(x, t, y):
            return unet(x, model_time_input(sde, t, "epsilon").to(x.dtype), class_labels=y).sample

        def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            y_null = torch.full((x.shape[0],), null, dtype=torch.long, device=x.device)
            if labels is None:
                out = eps(x, t, y_null)
            elif cfg_scale == 1.0:
                out = eps(x, t, labels.to(x.device))
            else:  # one batched call for the conditional and unconditional halves
                both = eps(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels.to(x.device), y_null]))
                e_cond, e_null = both.chunk(2)
                out = e_null + cfg_scale * (e_cond - e_null)
            return output_to_score(out, t, sde, "epsilon")

        return score_fn


def load_digits_model(path: str) -> ShippedDigits:
    """Load the digits pipeline folder (``unet/``, ``scheduler/``, ``classifier/``) in eval mode on CPU."""
    import os

    from diffusers import UNet2DModel

    from scorekit.models import TimeClassifierModel
    from scorekit.schedulers import ScoreSDEPCScheduler

    unet = UNet2DModel.from_pretrained(os.path.join(path, "unet")).eval()
    sde = ScoreSDEPCScheduler.from_pretrained(os.path.join(path, "scheduler")).sde
    clf_dir = os.path.join(path, "classifier")
    classifier = TimeClassifierModel.from_pretrained(clf_dir).eval() if os.path.isdir(clf_dir) else None
    if unet.config.num_class_embeds is None:
        raise ValueError(f"{path}: the digits UNet must be class-conditional (num_class_embeds set)")
    return ShippedDigits(unet, sde, classifier, null_label=unet.config.num_class_embeds - 1)
