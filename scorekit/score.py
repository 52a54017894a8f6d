"""Score adapters: turn a network into ``score_fn(x, t) -> score`` (layer 2 of docs/architecture.md).

A ``UNet2DModel`` is run under one of three parameterizations, recorded in the scheduler config:

- ``"epsilon"``: the network predicts the noise (DDPM); ``score = -eps / std(t)`` and the time label is
  ``t * (N - 1)`` (the paper's code for DDPM checkpoints);
- ``"score"``: the network predicts the score directly, time label ``t * (N - 1)``;
- ``"sigma"``: the network takes the noise level ``sigma = std(t)`` and returns the score, as the Fourier-embedded
  NCSN++ UNets do (``UNet2DModel`` divides its output by the Fourier timestep input).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .sde import SDE
from .utils import append_dims, check_choice

PARAMETERIZATIONS = ("epsilon", "score", "sigma")


def model_time_input(sde: SDE, t: torch.Tensor, parameterization: str) -> torch.Tensor:
    """The float time tensor the network is fed: ``t * (N - 1)`` or ``sigma = std(t)``."""
    if parameterization == "sigma":
        return sde.marginal_coef(t)[1]
    return t * (sde.N - 1)


def output_to_score(output: torch.Tensor, t: torch.Tensor, sde: SDE, parameterization: str) -> torch.Tensor:
    """Convert a raw network output at time ``t`` to the score (``-eps / std`` for epsilon models)."""
    if parameterization == "epsilon":
        return -output / append_dims(sde.marginal_coef(t)[1], output.ndim)
    return output


def model_score_fn(model: Callable, sde: SDE, parameterization: str = "epsilon") -> Callable:
    """Wrap a diffusers-style model (``model(x, timestep).sample``, or one returning a tensor) as a ``score_fn``."""
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        timestep = model_time_input(sde, t, parameterization).to(x.dtype)
        out = model(x, timestep)
        out = getattr(out, "sample", out)
        return output_to_score(out, t, sde, parameterization)

    return score_fn
