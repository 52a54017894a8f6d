"""EDM's Heun sampler (Karras et al. 2022, Algorithm 2) in sigma space, for any SDE through its ``(alpha, std)``.

With ``sigma = std / alpha`` and the scaled state ``x~ = x / alpha``, the probability-flow ODE is
``dx~/dsigma = (x~ - D(x~; sigma)) / sigma`` (EDM eq. 4 with ``s(t) = alpha(t)``), ``D`` the data prediction. Each
step optionally "churns": it raises the noise level to ``sigma_hat = sigma_i (1 + gamma_i)`` with fresh noise,
``gamma_i = min(S_churn / N, sqrt(2) - 1)`` while ``S_tmin <= sigma_i <= S_tmax`` (``sigma_hat`` capped at
``sigma(T)`` so the score is never asked outside ``[eps, T]``), then takes a Heun step to ``sigma_{i+1}``.
"""

from __future__ import annotations

import math

import torch

from ..utils import randn_like
from .base import DataPrediction, call_back, iterate, project_fn
from .dpm_solver import _finish, _tb
from .grids import Grid, make_grid, t_of_sigma


def churn_grid(sde, grid: Grid, eps: float, s_churn: float, s_tmin: float, s_tmax: float) -> Grid:
    """The raised noise levels ``sigma_hat_i`` of each step as a grid of times ``(steps,)`` (EDM Alg. 2, lines 4-5)."""
    sigma = grid.sigma[:-1]
    inside = (sigma >= s_tmin) & (sigma <= s_tmax)
    gamma = torch.where(inside, min(s_churn / grid.steps, math.sqrt(2) - 1), 0.0)
    sigma_hat = (sigma * (1 + gamma)).clamp(max=float(grid.sigma[0]))
    t_hat = torch.where(gamma > 0, t_of_sigma(sde, sigma_hat, eps), grid.t[:-1])
    return Grid.at(sde, t_hat)


def edm_heun(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, time_grid, rho, timesteps,
             s_churn, s_noise, s_tmin, s_tmax, denoise):
    """Heun's method in sigma space with optional churn; NFE = 2 per step, plus one for the final denoising (EDM's
    last Euler step to ``sigma = 0`` is exactly that denoising)."""
    grid = make_grid(sde, steps, eps, time_grid, rho, timesteps)
    hat = churn_grid(sde, grid, eps, s_churn, s_tmin, s_tmax)
    x0_fn, project = DataPrediction(score_fn), project_fn(condition, s_churn > 0)

    def denoised(xs: torch.Tensor, g: Grid, j: int) -> torch.Tensor:  # D(x~; sigma) at the time g.t[j]
        a = float(g.alpha[j])
        return x0_fn(a * xs, float(g.t[j]), a, float(g.std[j]))

    for i in iterate(grid.steps, progress):
        x = project(x, _tb(float(grid.t[i]), x), generator)
        xs = x / float(grid.alpha[i])
        s_cur, s_hat, s_next = float(grid.sigma[i]), float(hat.sigma[i]), float(grid.sigma[i + 1])
        if s_hat > s_cur:  # churn: x~_hat = x~ + sqrt(sigma_hat^2 - sigma^2) S_noise z (line 5)
            xs = xs + (math.sqrt(s_hat**2 - s_cur**2) * s_noise) * randn_like(xs, generator)
        d = (xs - denoised(xs, hat, i)) / s_hat  # line 7
        x_euler = xs + (s_next - s_hat) * d  # line 8
        d_next = (x_euler - denoised(x_euler, grid, i + 1)) / s_next  # line 10
        xs = xs + (s_next - s_hat) * 0.5 * (d + d_next)  # line 11: trapezoid
        x = call_back(i, float(grid.t[i + 1]), float(grid.alpha[i + 1]) * xs, callback)
    return _finish(x, grid, x0_fn, project, generator, denoise)
