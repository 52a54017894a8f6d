"""DPM-Solver++ in data prediction (Lu et al. 2022, "DPM-Solver++"), for any SDE through its ``(alpha, std)``.

With ``lambda = log(alpha / std)``, ``h = lambda_t - lambda_s`` and the data prediction ``x0(x, s)`` (Tweedie), the
probability-flow ODE solved exactly in its linear part gives (DPM-Solver++ eq. 9-10)

    x_t = (std_t / std_s) x_s - alpha_t (e^{-h} - 1) x0_s + higher-order corrections,

which at first order is DDIM (eta = 0). The multistep solvers (1, 2M, 3M) reuse the data predictions of previous
steps; the singlestep solvers (2S, 3S) evaluate intermediate times inside each step; SDE-DPM-Solver++ (1, 2M) adds
fresh noise (Lu et al. 2022, eq. 18; its first order is DDIM with eta = 1). Final steps lower the order as diffusers'
``DPMSolverMultistepScheduler`` does (see :func:`~scorekit.samplers.base.step_order`).
"""

from __future__ import annotations

import math

import torch

from ..utils import randn_like
from .base import DataPrediction, call_back, iterate, project_fn, step_order
from .grids import Grid, make_grid, t_of_lambda

MULTISTEP_ORDERS = (1, 2, 3)
SDE_ORDERS = (1, 2)
SINGLESTEP_ORDERS = (1, 2, 3)


def multistep_update(x: torch.Tensor, grid: Grid, i: int, history: list, order: int) -> torch.Tensor:
    """DPM-Solver++ multistep update from ``t_i`` to ``t_{i+1}``; ``history``: ``[(lambda, x0), ...]``, newest last."""
    lam, a_t, s_t, s_s = grid.lam, float(grid.alpha[i + 1]), float(grid.std[i + 1]), float(grid.std[i])
    h = float(lam[i + 1] - lam[i])
    phi1 = math.expm1(-h)
    m0 = history[-1][1]
    x_t = (s_t / s_s) * x - (a_t * phi1) * m0  # first order = DDIM (DPM-Solver++ eq. 9)
    if order == 1:
        return x_t
    r0 = (history[-1][0] - history[-2][0]) / h
    d1_0 = (m0 - history[-2][1]) / r0
    if order == 2:  # 2M, midpoint form (Algorithm 2 of DPM-Solver++; diffusers' solver_type="midpoint")
        return x_t - (0.5 * a_t * phi1) * d1_0
    r1 = (history[-2][0] - history[-3][0]) / h
    d1_1 = (history[-2][1] - history[-3][1]) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    # 3M: Taylor terms of the data prediction up to second order (DPM-Solver++ Appendix B)
    return x_t + (a_t * (phi1 / h + 1)) * d1 - (a_t * ((phi1 + h) / h**2 - 0.5)) * d2


def sde_multistep_update(x, grid: Grid, i: int, history: list, order: int, noise: torch.Tensor) -> torch.Tensor:
    """SDE-DPM-Solver++ (1, 2M) from ``t_i`` to ``t_{i+1}`` with standard normal ``noise`` (Lu et al. 2022, eq. 18)."""
    a_t, s_t, s_s = float(grid.alpha[i + 1]), float(grid.std[i + 1]), float(grid.std[i])
    h = float(grid.lam[i + 1] - grid.lam[i])
    one_minus = -math.expm1(-2 * h)  # 1 - e^{-2h}
    m0 = history[-1][1]
    drift = m0
    if order == 2:
        r0 = (history[-1][0] - history[-2][0]) / h
        drift = m0 + 0.5 * (m0 - history[-2][1]) / r0
    return (s_t / s_s * math.exp(-h)) * x + (a_t * one_minus) * drift + (s_t * math.sqrt(one_minus)) * noise


def dpm_solver_pp(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, order, time_grid, rho,
                  timesteps, denoise, stochastic=False):
    """Multistep DPM-Solver++ (orders 1-3) or SDE-DPM-Solver++ (``stochastic``, orders 1-2) from T to eps.

    NFE: one per grid step, plus one for the final denoising (the step to ``sigma = 0``).
    """
    grid = make_grid(sde, steps, eps, time_grid, rho, timesteps)
    x0_fn, project = DataPrediction(score_fn), project_fn(condition, stochastic)
    history: list = []
    for i in iterate(grid.steps, progress):
        t = _tb(float(grid.t[i]), x)  # the step's (B,) time, built once for the projection and the model
        x = project(x, t, generator)
        history = (history + [(float(grid.lam[i]), x0_fn(x, t, float(grid.alpha[i]), float(grid.std[i])))])[-3:]
        k = step_order(order, i, grid.steps, denoise)
        if stochastic:
            x = sde_multistep_update(x, grid, i, history, k, randn_like(x, generator))
        else:
            x = multistep_update(x, grid, i, history, k)
        x = call_back(i, float(grid.t[i + 1]), x, callback)
    return _finish(x, grid, x0_fn, project, generator, denoise)


def _finish(x, grid: Grid, x0_fn, project, generator, denoise: bool) -> torch.Tensor:
    """Project at ``eps`` and, with ``denoise``, take the order-1 step to ``sigma = 0``: ``x0(x, eps)``."""
    t_end = _tb(float(grid.t[-1]), x)
    x = project(x, t_end, generator)
    return x0_fn(x, t_end, float(grid.alpha[-1]), float(grid.std[-1])) if denoise else x


def _tb(t: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


# --- singlestep 2S / 3S ----------------------------------------------------------------------------------------------
def stage_grid(sde, grid: Grid, fractions: tuple[float, ...], eps: float) -> list[Grid]:
    """For each fraction ``r``, the times at ``lambda_i + r h_i`` inside every step (float64 ``(steps,)`` grids)."""
    lam = grid.lam
    return [Grid.at(sde, t_of_lambda(sde, lam[:-1] + r * (lam[1:] - lam[:-1]), eps)) for r in fractions]


def singlestep_update(x, x0_fn, grid: Grid, stages: list[Grid], i: int, m_s: torch.Tensor, order: int):
    """One singlestep DPM-Solver++ step (order 1, 2S with r1 = 1/2, 3S with r1 = 1/3, r2 = 2/3); returns x at t_{i+1}.

    2S: ``u = (std_1/std_s) x - alpha_1 (e^{-r1 h} - 1) x0_s``, ``D = x0(u) - x0_s``,
    ``x_t = (std_t/std_s) x - alpha_t (e^{-h} - 1) (x0_s + D / (2 r1))`` (DPM-Solver++ Algorithm 1).
    """
    a_t, s_t, s_s = float(grid.alpha[i + 1]), float(grid.std[i + 1]), float(grid.std[i])
    h = float(grid.lam[i + 1] - grid.lam[i])
    phi1 = math.expm1(-h)
    x_t = (s_t / s_s) * x - (a_t * phi1) * m_s
    if order == 1:
        return x_t
    r1 = 0.5 if len(stages) == 1 else 1 / 3  # a 3S run lowered to 2S keeps its stage at r1 = 1/3
    g1 = stages[0]
    a1, s1 = float(g1.alpha[i]), float(g1.std[i])
    u1 = (s1 / s_s) * x - (a1 * math.expm1(-r1 * h)) * m_s
    d1 = x0_fn(u1, float(g1.t[i]), a1, s1) - m_s
    if order == 2:
        return x_t - (0.5 / r1 * a_t * phi1) * d1
    r2, g2 = 2 / 3, stages[1]
    a2, s2 = float(g2.alpha[i]), float(g2.std[i])
    phi_22 = math.expm1(-r2 * h) / (r2 * h) + 1
    u2 = (s2 / s_s) * x - (a2 * math.expm1(-r2 * h)) * m_s + (r2 / r1 * a2 * phi_22) * d1
    d2 = x0_fn(u2, float(g2.t[i]), a2, s2) - m_s
    return x_t + (a_t * (phi1 / h + 1) / r2) * d2  # DPM-Solver-3 in data prediction (Lu et al. 2022a, Alg. 2)


def dpm_solver_pp_singlestep(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, order,
                             time_grid, rho, timesteps, denoise):
    """Singlestep DPM-Solver++ (1, 2S, 3S) from T to eps; NFE = ``order`` per step (lowered at the final steps as
    :func:`~scorekit.samplers.base.step_order` says), plus one for denoising."""
    grid = make_grid(sde, steps, eps, time_grid, rho, timesteps)
    stages = stage_grid(sde, grid, (0.5,) if order == 2 else (1 / 3, 2 / 3), eps) if order > 1 else []
    x0_fn, project = DataPrediction(score_fn), project_fn(condition, False)
    for i in iterate(grid.steps, progress):
        t = _tb(float(grid.t[i]), x)  # the step's (B,) time, built once for the projection and the model
        x = project(x, t, generator)
        m_s = x0_fn(x, t, float(grid.alpha[i]), float(grid.std[i]))
        k = step_order(order, i, grid.steps, denoise, warm_up=False)
        x = singlestep_update(x, x0_fn, grid, stages, i, m_s, k)
        x = call_back(i, float(grid.t[i + 1]), x, callback)
    return _finish(x, grid, x0_fn, project, generator, denoise)
