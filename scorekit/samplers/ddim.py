"""DDIM (Song, Meng & Ermon 2021) for any SDE with a Gaussian perturbation kernel ``N(alpha x_0, std^2 I)``.

With ``eta = 0`` it is the exact integrator of the probability-flow ODE in the coordinates ``(x / alpha, std / alpha)``
(the ODE's DDIM discretization); with ``eta = 1`` and VE it is the ancestral step.
"""

from __future__ import annotations

import torch

from ..sde import SDE
from ..utils import append_dims, batch_time, randn_like
from .base import RunContext
from .grids import Grid
from .kernels import tweedie_denoise, tweedie_x0
from .options import DDIMOptions

__all__ = ["ddim_step", "tweedie_denoise", "ddim_loop"]


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
        x0 = tweedie_x0(x, score, append_dims(a, x.ndim), append_dims(s, x.ndim))
    eps = -append_dims(s, x.ndim) * score
    r2 = (a * s_n / (a_n * s)).square().clamp(max=1)
    c = eta * s_n * (1 - r2).sqrt()
    # sqrt(std'^2 - c^2) = std' sqrt(1 - eta^2 (1 - r2)): no cancellation when c ~ std' (eta = 1, alpha ~ 0)
    direction = s_n * ((1 - eta**2) + eta**2 * r2).clamp_min(0).sqrt()
    x_next = append_dims(a_n, x.ndim) * x0 + append_dims(direction, x.ndim) * eps
    if eta > 0:
        x_next = x_next + append_dims(c, x.ndim) * randn_like(x, generator)
    return x_next, x0


def ddim_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: DDIMOptions) -> torch.Tensor:
    """DDIM sampling (eq. 12) over the grid to eps, then, with ``ctx.denoise``, Tweedie's denoising (one NFE)."""
    score_fn, sde, generator = ctx.score_fn, ctx.sde, ctx.generator
    tb = ctx.batch_times(x.shape[0])
    project = ctx.project_fn(opts.eta > 0)
    for i in ctx.iterate(grid.steps):
        t, t_next = tb[i], tb[i + 1]
        x, _ = ddim_step(project(x, t, generator), t, t_next, score_fn, sde, generator, eta=opts.eta)
        x = ctx.end_step(i, x)
    t_end = batch_time(ctx.eps, x.shape[0], x)
    x = project(x, t_end, generator)
    return tweedie_denoise(x, t_end, score_fn, sde) if ctx.denoise else x
