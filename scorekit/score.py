"""Score adapters: turn a network into ``score_fn(x, t) -> score`` (layer 2 of docs/architecture.md).

A ``UNet2DModel`` is run under one of these parameterizations (``prediction_type`` in the scheduler config), with the
perturbation kernel ``x_t = alpha(t) x_0 + std(t) eps``:

- ``"epsilon"``: the network predicts the noise ``eps`` (DDPM); ``score = -eps / std(t)`` and the time label is
  ``t * (N - 1)`` (the paper's code for DDPM checkpoints);
- ``"score"``: the network predicts the score directly, time label ``t * (N - 1)``;
- ``"sigma"``: the network takes the noise level ``sigma = std(t)`` and returns the score, as the Fourier-embedded
  NCSN++ UNets do (``UNet2DModel`` divides its output by the Fourier timestep input);
- ``"sample"``: the network predicts the clean data ``x_0``; ``score = (alpha x_0 - x) / std^2``;
- ``"v_prediction"``: the network predicts ``v = alpha eps - std x_0`` (Salimans & Ho 2022, sec. 4), so
  ``eps = (alpha v + std x) / (alpha^2 + std^2)`` and ``score = -eps / std``.

``"sample"`` and ``"v_prediction"`` are diffusers' names; all but ``"sigma"`` feed the network ``t * (N - 1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .samplers.kernels import tweedie_x0
from .sde import SDE
from .utils import append_dims, check_choice

PARAMETERIZATIONS = ("epsilon", "score", "sigma")  # what scorekit's training losses fit
PREDICTION_TYPES = PARAMETERIZATIONS + ("sample", "v_prediction")  # what the adapters and schedulers run


def model_time_input(sde: SDE, t: torch.Tensor, parameterization: str) -> torch.Tensor:
    """The float time tensor the network is fed: ``t * (N - 1)`` or ``sigma = std(t)``."""
    if parameterization == "sigma":
        return sde.marginal_coef(t)[1]
    return t * (sde.N - 1)


def _kernel(t: torch.Tensor, sde: SDE, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    alpha, std = sde.marginal_coef(t)
    return append_dims(alpha, ndim), append_dims(std, ndim)


def output_to_score(output: torch.Tensor, t: torch.Tensor, sde: SDE, parameterization: str,
                    x: torch.Tensor | None = None) -> torch.Tensor:
    """Convert a raw network output ``(B, ...)`` at ``(x, t)`` to the score (``-eps / std`` for epsilon models).

    ``x`` (the network's input sample, shaped like ``output``) is needed by ``"sample"`` and ``"v_prediction"``.
    """
    if parameterization in ("score", "sigma"):
        return output
    alpha, std = _kernel(t, sde, output.ndim)
    if parameterization == "epsilon":
        return -output / std
    if x is None:
        raise ValueError(f"prediction_type={parameterization!r} needs the input sample x to give the score")
    if parameterization == "sample":
        return (alpha * output - x) / std**2  # score of N(alpha x_0, std^2 I) at x
    eps = (alpha * output + std * x) / (alpha**2 + std**2)  # v = alpha eps - std x_0 solved for eps
    return -eps / std


def output_to_denoised(output: torch.Tensor, x: torch.Tensor, t: torch.Tensor, sde: SDE,
                       parameterization: str) -> torch.Tensor:
    """The data prediction ``x_0`` ``(B, ...)`` of a raw network output at ``(x, t)``, straight from the output.

    Equal to Tweedie's ``(x + std^2 score) / alpha`` wherever ``alpha > 0``; for ``"sample"`` and ``"v_prediction"``
    it stays finite at ``alpha = 0`` (zero terminal SNR), where the score carries no information about ``x_0``.
    """
    alpha, std = _kernel(t, sde, x.ndim)
    if parameterization == "sample":
        return output
    if parameterization == "v_prediction":
        return (alpha * x - std * output) / (alpha**2 + std**2)  # v = alpha eps - std x_0 solved for x_0
    return tweedie_x0(x, output_to_score(output, t, sde, parameterization, x), alpha, std)


def model_score_fn(model: Callable, sde: SDE, parameterization: str = "epsilon") -> Callable:
    """Wrap a diffusers-style model (``model(x, timestep).sample``, or one returning a tensor) as a ``score_fn``."""
    check_choice("parameterization", parameterization, PREDICTION_TYPES)

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        timestep = model_time_input(sde, t, parameterization).to(x.dtype)
        out = model(x, timestep)
        out = getattr(out, "sample", out)
        return output_to_score(out, t, sde, parameterization, x)

    return score_fn
