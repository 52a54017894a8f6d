"""EDM's Heun sampler (Karras et al. 2022, Algorithm 2) in sigma space, for any SDE through its ``(alpha, std)``.

With ``sigma = std / alpha`` and the scaled state ``x~ = x / alpha``, the probability-flow ODE is
``dx~/dsigma = (x~ - D(x~; sigma)) / sigma`` (EDM eq. 4 with ``s(t) = alpha(t)``), ``D`` the data prediction. Each
step optionally "churns": it raises the noise level to ``sigma_hat = sigma_i (1 + gamma_i)`` with fresh noise,
``gamma_i = min(S_churn / N, sqrt(2) - 1)`` while ``S_tmin <= sigma_i <= S_tmax`` (``sigma_hat`` capped at
``sigma`` of the grid's first time, so the score is never asked outside ``[eps, T]``), then takes a Heun step to
``sigma_{i+1}``. The two stages (:func:`euler_stage`, :func:`heun_correction`) and the churn (:func:`churn`) are
the kernels ``ScoreSDEODEScheduler.step`` runs too.
"""

from __future__ import annotations

import math

import torch

from ..utils import randn_like
from .base import RunContext
from .grids import Grid, t_of_sigma
from .options import EDMHeunOptions


def churn_grid(sde, grid: Grid, eps: float, s_churn: float, s_tmin: float, s_tmax: float) -> Grid:
    """The raised noise levels ``sigma_hat_i`` of each step as a grid of times ``(steps,)`` (EDM Alg. 2, lines 4-5)."""
    sigma = grid.sigma[:-1]
    inside = (sigma >= s_tmin) & (sigma <= s_tmax)
    gamma = torch.where(inside, min(s_churn / grid.steps, math.sqrt(2) - 1), 0.0)
    sigma_hat = sigma * (1 + gamma)
    t_hat = t_of_sigma(sde, sigma_hat, eps)
    t_hat = torch.where(sigma_hat >= grid.sigma[0], grid.t[0], t_hat)  # capped at the first time, exactly
    return Grid.at(sde, torch.where(gamma > 0, t_hat, grid.t[:-1]))


def churn(xs: torch.Tensor, s_cur: float, s_hat: float, s_noise: float, generator) -> torch.Tensor:
    """``x~_hat = x~ + sqrt(sigma_hat^2 - sigma^2) S_noise z`` (Algorithm 2, line 5); no draw when not raised."""
    if s_hat <= s_cur:
        return xs
    return xs + (math.sqrt(s_hat**2 - s_cur**2) * s_noise) * randn_like(xs, generator)


def euler_stage(xs: torch.Tensor, x0: torch.Tensor, s_hat: float, s_next: float):
    """``d = (x~ - D) / sigma_hat`` and the Euler point ``x~ + (sigma_next - sigma_hat) d`` (lines 7-8)."""
    d = (xs - x0) / s_hat
    return d, xs + (s_next - s_hat) * d


def heun_correction(xs, d, x_euler, x0_next, s_hat: float, s_next: float) -> torch.Tensor:
    """The trapezoid ``x~ + (sigma_next - sigma_hat) (d + d') / 2``, ``d' = (x~_euler - D') / sigma_next``
    (lines 10-11)."""
    d_next = (x_euler - x0_next) / s_next
    return xs + (s_next - s_hat) * 0.5 * (d + d_next)


def edm_heun_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: EDMHeunOptions) -> torch.Tensor:
    """Heun's method in sigma space with optional churn; NFE = 2 per step, plus one for the final denoising (EDM's
    last Euler step to ``sigma = 0`` is exactly that denoising)."""
    hat = churn_grid(ctx.sde, grid, ctx.eps, opts.s_churn, opts.s_tmin, opts.s_tmax)
    project, generator = ctx.project_fn(opts.s_churn > 0), ctx.generator
    tb = ctx.batch_times(x.shape[0])

    def denoised(xs: torch.Tensor, g: Grid, j: int) -> torch.Tensor:  # D(x~; sigma) at the time g.t[j]
        a = float(g.alpha[j])
        return ctx.x0(a * xs, float(g.t[j]), a, float(g.std[j]))

    for i in ctx.iterate(grid.steps):
        x = project(x, tb[i], generator)
        s_hat, s_next = float(hat.sigma[i]), float(grid.sigma[i + 1])
        xs = churn(x / float(grid.alpha[i]), float(grid.sigma[i]), s_hat, opts.s_noise, generator)
        d, x_euler = euler_stage(xs, denoised(xs, hat, i), s_hat, s_next)
        xs = heun_correction(xs, d, x_euler, denoised(x_euler, grid, i + 1), s_hat, s_next)
        x = ctx.end_step(i, float(grid.alpha[i + 1]) * xs)
    return ctx.finish(x, grid, project)
