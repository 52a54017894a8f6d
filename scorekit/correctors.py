"""Correctors of the PC sampler (Song et al. 2021, Algorithms 4-5).

Every corrector is ``update(x, t, score_fn, sde, generator, snr, n_steps) -> (x, x_mean)`` and runs ``n_steps``
Langevin MCMC steps targeting p_t, costing ``n_steps`` score evaluations (none for ``"none"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .sde import SDE
from .utils import append_dims, batch_norm_mean, randn_like


def _langevin_move(x, grad, step, z):
    # x <- x + eps * grad + sqrt(2 eps) z  (Algorithms 4-5, inner loop)
    step = append_dims(step, x.ndim)
    x_mean = x + step * grad
    return x_mean + (2 * step).sqrt() * z, x_mean


def langevin(x, t, score_fn, sde: SDE, generator=None, snr: float = 0.16, n_steps: int = 1):
    """Langevin corrector (Algorithm 4): step ``eps = 2 alpha (snr ||z|| / ||score||)^2``, batch-mean norms.

    A score that is exactly zero (``||score|| = 0``) gives a zero step (``x`` unchanged), not an infinite one.
    """
    alpha = sde.langevin_alpha(t)
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        z = randn_like(x, generator)
        grad_norm = batch_norm_mean(grad)
        # ||z|| / ||score||, with 0 where the score vanishes (a zero step); computed without a host sync
        ratio = batch_norm_mean(z) / torch.where(grad_norm > 0, grad_norm, torch.ones_like(grad_norm))
        step = 2 * alpha * (snr * torch.where(grad_norm > 0, ratio, torch.zeros_like(ratio))) ** 2
        x, x_mean = _langevin_move(x, grad, step, z)
    return x, x_mean


def annealed_langevin(x, t, score_fn, sde: SDE, generator=None, snr: float = 0.16, n_steps: int = 1):
    """Annealed Langevin corrector (Algorithm 5's NCSN variant): step ``eps = 2 alpha (snr * std(t))^2``."""
    alpha = sde.langevin_alpha(t)
    _, std = sde.marginal_coef(t)
    step = 2 * alpha * (snr * std) ** 2
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        x, x_mean = _langevin_move(x, grad, step, randn_like(x, generator))
    return x, x_mean


def none_corrector(x, t, score_fn, sde, generator=None, snr: float = 0.16, n_steps: int = 1):
    """No corrector: costs no score evaluation."""
    return x, x


CORRECTORS: dict[str, Callable] = {"langevin": langevin, "ald": annealed_langevin, "none": none_corrector}
CORRECTOR_ALIASES = {"annealed_langevin": "ald"}
