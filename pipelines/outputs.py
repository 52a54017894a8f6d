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
class ScoreSDERestorationOutput(ScoreSDEPipelineOutput):
    """Output of :class:`~scorekit.pipelines.ScoreSDERestorationPipeline` (and the inpainting and colorization
    pipelines over it).

    Args:
        images: the ``B`` restorations (``B * K`` with ``return_particles=True``: the ``K`` particles of sample 0,
            then of sample 1, ...), as PIL images, numpy ``(N, H, W, C)`` or a tensor ``(N, C, H, W)`` in [0, 1].
        nfe: score evaluations of the run, each on the whole batch: for a particle method (``tds``, ``mcgdiff``),
            whose batch is the ``B * K`` particles, the NFE per particle. With ``dps``, ``pigdm`` and ``tds`` each
            evaluation also takes a vector-Jacobian product through the network.
        nfe_per_sample: network evaluations one returned sample cost: ``K * nfe`` for a particle method, ``nfe``
            otherwise.
        sampler: the sampler that ran.
        particles: for a particle method, ``scorekit.sample``'s ``info["particles"]``: ``num_particles``, the ESS
            trace ``ess`` ``(steps + 1, B)``, ``resampled`` ``(steps, B)``, ``num_resampling`` ``(B,)`` and, with
            ``return_particles=True``, the normalized ``log_weights`` ``(B, K)``; ``None`` otherwise.
    """

    nfe_per_sample: int = 0
    sampler: str = ""
    particles: dict | None = None


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
