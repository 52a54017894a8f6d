"""Formulas more than one sampler family (and the schedulers) use, written once.

- Tweedie's data prediction ``E[x_0 | x_t] = (x_t + std^2 score) / alpha`` (the ``x0`` of DDIM, DPM-Solver++ and
  EDM's ``D(x; sigma)``, the final denoising step of every sampler, and the clipped score of ``clip_sample``);
- the drift of the reverse-time SDE (eq. 6) and of the probability-flow ODE (eq. 13).
"""

from __future__ import annotations

import torch

from ..sde import SDE
from ..utils import append_dims


def tweedie_x0(x: torch.Tensor, score: torch.Tensor, alpha, std) -> torch.Tensor:
    """``(x + std^2 score) / alpha`` (Tweedie's formula); ``alpha``, ``std`` floats or tensors broadcasting with
    ``x`` (use :func:`~scorekit.utils.append_dims` on ``(B,)`` coefficients)."""
    return (x + std**2 * score) / alpha


def tweedie_denoise(x: torch.Tensor, t: torch.Tensor, score_fn, sde: SDE) -> torch.Tensor:
    """``E[x_0 | x_t]`` at times ``t`` ``(B,)`` through ``score_fn(x, t)`` and ``sde``'s kernel ``(alpha, std)``."""
    a, s = sde.marginal_coef(t)
    return tweedie_x0(x, score_fn(x, t), append_dims(a, x.ndim), append_dims(s, x.ndim))


def reverse_drift(x: torch.Tensor, t: torch.Tensor, score_fn, sde: SDE, probability_flow: bool = False):
    """Drift and diffusion of the reverse-time SDE (eq. 6), or of the probability-flow ODE (eq. 13):
    ``f - w g^2 score`` with ``w = 1`` (SDE, diffusion ``g``) or ``1/2`` (ODE, diffusion 0)."""
    f, g = sde.sde(x, t)
    weight = 0.5 if probability_flow else 1.0
    drift = f - append_dims(weight * g**2, x.ndim) * score_fn(x, t)
    return drift, torch.zeros_like(g) if probability_flow else g


def pf_ode_drift(x: torch.Tensor, t: torch.Tensor, score_fn, sde: SDE) -> torch.Tensor:
    """Probability-flow ODE drift ``f(x, t) - 1/2 g(t)^2 score(x, t)`` (eq. 13)."""
    return reverse_drift(x, t, score_fn, sde, probability_flow=True)[0]
