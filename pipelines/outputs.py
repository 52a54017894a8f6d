"""Output dataclasses of scorekit's pipelines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput


@dataclass
class ScoreSDEPipelineOutput(BaseOutput):
    """Output of the scorekit sampling pipelines.

    Args:
        images: ``batch_size`` PIL images, a numpy array ``(B, H, W, C)`` in [0, 1], or a tensor ``(B, C, H, W)``.
        nfe: number of score-network evaluations the run cost.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    nfe: int


@dataclass
class ScoreSDELikelihoodOutput(BaseOutput):
    """Output of :meth:`ScoreSDEPipeline.log_likelihood`.

    Args:
        bits_per_dim: ``(B,)`` bits/dim of the 8-bit images (uniform dequantization, see ``scorekit.bits_per_dim``).
        log_likelihood: ``(B,)`` nats of the dequantized images in the model's data space.
        stderr: ``(B,)`` Hutchinson-probe standard error of ``bits_per_dim`` (``None`` with one probe).
        latents: ``(B, C, H, W)`` PF-ODE latents at ``T``.
        nfe: number of score-network evaluations.
    """

    bits_per_dim: torch.Tensor
    log_likelihood: torch.Tensor
    stderr: torch.Tensor | None
    latents: torch.Tensor
    nfe: int
