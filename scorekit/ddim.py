"""DDIM (Song, Meng & Ermon 2021) for any SDE with a Gaussian perturbation kernel ``N(alpha x_0, std^2 I)``.

With ``eta = 0`` it is the exact integrator of the probability-flow ODE in the coordinates ``(x / alpha, std / alpha)``
(the ODE's DDIM discretization); with ``eta = 1`` and VE it is the ancestral step.
"""

from __future__ import annotations

import torch

from .sde import SDE
from .utils import append_dims, randn_like


def ddim_step(x, t, t_next, score_fn, sde: SDE, generator=None, eta: float = 0.0, x0: torch.Tensor | None = None):
    """One DDIM step from ``t`` to ``t_next``; returns ``(x_next, x0_pred)``.

    ``x0 = (x + std^2 score) / alpha`` (Tweedie), ``eps = -std * score`` and (DDIM eq. 12)
    ``x_next = alpha' x0 + sqrt(std'^2 - c^2) eps + c z`` with
    ``c = eta std' sqrt(1 - (alpha std' / (alpha' std))^2)``. A given ``x0`` (shaped like ``x``) replaces Tweedie's
    while ``eps`` stays the score's: diffusers' clipped x0 with the model's own epsilon, or a model's x0 at
    ``alpha = 0``.
    """
    a, s = sde.marginal_coef(t)
    a_n, s_n = sde.marginal_coef(t_next)
    score = score_fn(x, t)
    if x0 is None:
        x0 = tweedie_denoise(x, t, lambda *_: score, sde)
    eps = -append_dims(s, x.ndim) * score
    r2 = (a * s_n / (a_n * s)).square().clamp(max=1)
    c = eta * s_n * (1 - r2).sqrt()
    # sqrt(std'^2 - c^2) = std' sqrt(1 - eta^2 (1 - r2)): no cancellation when c ~ std' (eta = 1, alpha ~ 0)
    direction = s_n * ((1 - eta**2) + eta**2 * r2).clamp_min(0).sqrt()
    x_next = append_dims(a_n, x.ndim) * x0 + append_dims(direction, x.ndim) * eps
    if eta > 0:
        x_next = x_next + append_dims(c, x.ndim) * randn_like(x, generator)
    return x_next, x0


def tweedie_denoise(x, t, score_fn, sde: SDE) -> torch.Tensor:
    """``E[x_0 | x_t] = (x_t + std^2 score) / alpha`` (Tweedie's formula): the final denoising step of ODE / DDIM."""
    a, s = sde.marginal_coef(t)
    return (x + append_dims(s**2, x.ndim) * score_fn(x, t)) / append_dims(a, x.ndim)
