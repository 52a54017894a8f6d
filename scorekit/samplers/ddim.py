"""DDIM (Song, Meng & Ermon 2021) for any SDE with a Gaussian perturbation kernel ``N(alpha x_0, std^2 I)``.

With ``eta = 0`` it is the exact integrator of the probability-flow ODE in the coordinates ``(x / alpha, std / alpha)``
(the ODE's DDIM discretization); with ``eta = 1`` and VE it is the ancestral step.
"""

from __future__ import annotations

import torch

from ..numerics import apply_callback
from ..sde import SDE
from ..utils import append_dims, batch_time, randn_like
from .base import batch_grid, iterate
from .grids import time_grid


def ddim_step(x, t, t_next, score_fn, sde: SDE, generator=None, eta: float = 0.0):
    """One DDIM step from ``t`` to ``t_next``; returns ``(x_next, x0_pred)``.

    ``x0 = (x + std^2 score) / alpha`` (Tweedie), ``eps = -std * score`` and (DDIM eq. 12)
    ``x_next = alpha' x0 + sqrt(std'^2 - c^2) eps + c z`` with
    ``c = eta std' sqrt(1 - (alpha std' / (alpha' std))^2)``.
    """
    a, s = sde.marginal_coef(t)
    a_n, s_n = sde.marginal_coef(t_next)
    score = score_fn(x, t)
    x0 = tweedie_denoise(x, t, lambda *_: score, sde)
    eps = -append_dims(s, x.ndim) * score
    c = eta * s_n * (1 - (a * s_n / (a_n * s)) ** 2).clamp_min(0).sqrt()
    x_next = append_dims(a_n, x.ndim) * x0 + append_dims((s_n**2 - c**2).clamp_min(0).sqrt(), x.ndim) * eps
    if eta > 0:
        x_next = x_next + append_dims(c, x.ndim) * randn_like(x, generator)
    return x_next, x0


def tweedie_denoise(x, t, score_fn, sde: SDE) -> torch.Tensor:
    """``E[x_0 | x_t] = (x_t + std^2 score) / alpha`` (Tweedie's formula): the final denoising step of ODE / DDIM."""
    a, s = sde.marginal_coef(t)
    return (x + append_dims(s**2, x.ndim) * score_fn(x, t)) / append_dims(a, x.ndim)


def ddim_sampler(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, eta, denoise):
    """DDIM sampling (Song, Meng & Ermon 2021, eq. 12) on the uniform grid from T to eps."""
    ts = time_grid(sde, steps, eps, x.dtype, x.device)
    tb = batch_grid(ts, x.shape[0])
    project = condition.project if eta > 0 else (lambda x_, t_, g_: condition.project_ode(x_, t_))
    for i in iterate(steps, progress):
        t, t_next = tb[i], tb[i + 1]
        x, _ = ddim_step(project(x, t, generator), t, t_next, score_fn, sde, generator, eta=eta)
        x = apply_callback(callback, i, ts[i + 1], x)
    t_end = batch_time(eps, x.shape[0], x)
    x = project(x, t_end, generator)
    return tweedie_denoise(x, t_end, score_fn, sde) if denoise else x
