"""DPM-Solver++ in data prediction (Lu et al. 2022, "DPM-Solver++"), for any SDE through its ``(alpha, std)``.

With ``lambda = log(alpha / std)``, ``h = lambda_t - lambda_s`` and the data prediction ``x0(x, s)`` (Tweedie), the
probability-flow ODE solved exactly in its linear part gives (DPM-Solver++ eq. 9-10)

    x_t = (std_t / std_s) x_s - alpha_t (e^{-h} - 1) x0_s + higher-order corrections,

which at first order is DDIM (eta = 0). The multistep solvers (1, 2M, 3M) reuse the data predictions of previous
steps; the singlestep solvers (2S, 3S) evaluate intermediate times inside each step; SDE-DPM-Solver++ (1, 2M) adds
fresh noise (Lu et al. 2022, eq. 18; its first order is DDIM with eta = 1). Final steps lower the order as diffusers'
``DPMSolverMultistepScheduler`` does (:func:`step_order`).

``steps`` is the number of grid intervals for all three. A singlestep step of order ``k`` spans ``k`` intervals and
evaluates the model at each grid point inside it (on the default half-log-SNR grid: at ``r = 1/2`` or
``r = 1/3, 2/3`` of the step in lambda, DPM-Solver's stages), so ``steps`` counts model evaluations as
``num_inference_steps`` of diffusers' ``DPMSolverSinglestepScheduler`` does (its ``get_order_list``:
:func:`singlestep_orders`); the final denoising is the last of diffusers' steps, the order-1 step to ``sigma = 0``.
"""

from __future__ import annotations

import math

import torch

from ..utils import randn_like
from .base import RunContext
from .grids import Grid
from .options import DPMSolverOptions, DPMSolverSinglestepOptions, SDEDPMSolverOptions


def step_order(order: int, i: int, n_steps: int, denoise: bool, warm_up: bool = True) -> int:
    """Order of step ``i`` of ``n_steps`` multistep solver steps, as diffusers' DPMSolverMultistepScheduler lowers it.

    Warm-up: step ``i`` has at most ``i + 1`` data predictions. Counting the final denoising step (to
    ``sigma = 0``) as one more step, a run of fewer than 15 steps takes its last step at order 1 and the one before
    at order <= 2 (``lower_order_final``); with ``denoise`` the last step is the denoising itself.
    """
    total = n_steps + int(denoise)
    k = min(order, i + 1) if warm_up else order
    if i == total - 1 and total < 15:
        k = 1
    elif i == total - 2 and total < 15:
        k = min(k, 2)
    return k


def first_order(x: torch.Tensor, m: torch.Tensor, std_ratio: float, alpha_t: float, h: float) -> torch.Tensor:
    """DPM-Solver++(1) = DDIM (eq. 9): ``(std_t / std_s) x - alpha_t (e^{-h} - 1) x0_s``."""
    return std_ratio * x - (alpha_t * math.expm1(-h)) * m


# --- multistep 1 / 2M / 3M and SDE 1 / 2M ------------------------------------------------------------------------
def multistep_update(x: torch.Tensor, grid: Grid, i: int, history: list, order: int) -> torch.Tensor:
    """DPM-Solver++ multistep update from ``t_i`` to ``t_{i+1}``; ``history``: ``[(lambda, x0), ...]``, newest last."""
    lam, a_t, s_t, s_s = grid.lam, float(grid.alpha[i + 1]), float(grid.std[i + 1]), float(grid.std[i])
    h = float(lam[i + 1] - lam[i])
    phi1 = math.expm1(-h)
    m0 = history[-1][1]
    x_t = first_order(x, m0, s_t / s_s, a_t, h)
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


def multistep_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: DPMSolverOptions,
                   stochastic: bool = False) -> torch.Tensor:
    """Multistep DPM-Solver++ (orders 1-3) or SDE-DPM-Solver++ (``stochastic``, orders 1-2) over the grid.

    NFE: one per grid step, plus one for the final denoising (the step to ``sigma = 0``).
    """
    project, generator = ctx.project_fn(stochastic), ctx.generator
    tb = ctx.batch_times(x.shape[0])
    history: list = []
    for i in ctx.iterate(grid.steps):
        x = project(x, tb[i], generator)
        history = (history + [(float(grid.lam[i]), ctx.x0(x, tb[i], float(grid.alpha[i]), float(grid.std[i])))])[-3:]
        k = step_order(opts.order, i, grid.steps, ctx.denoise)
        if stochastic:
            x = sde_multistep_update(x, grid, i, history, k, randn_like(x, generator))
        else:
            x = multistep_update(x, grid, i, history, k)
        x = ctx.end_step(i, x)
    return ctx.finish(x, grid, project)


def sde_multistep_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: SDEDPMSolverOptions) -> torch.Tensor:
    """SDE-DPM-Solver++ (1, 2M): :func:`multistep_loop` with fresh noise."""
    return multistep_loop(x, ctx, grid, opts, stochastic=True)


# --- singlestep 1 / 2S / 3S ----------------------------------------------------------------------------------------
def singlestep_orders(order: int, n_evals: int, final_zero: bool) -> list[int]:
    """diffusers' ``DPMSolverSinglestepScheduler.get_order_list`` for ``n_evals`` model evaluations.

    With ``lower_order_final`` (always, when the run ends at ``sigma = 0``: ``final_zero``; otherwise when
    ``n_evals`` is not a multiple of ``order``), and the last order set to 1 with ``final_zero``. Each run
    ``1, 2, ..., k`` of the list is one order-``k`` step over ``k`` grid intervals.
    """
    n, lower = n_evals, final_zero or n_evals % order != 0
    if order == 1 or not lower:
        orders = [1] * n if order == 1 else list(range(1, order + 1)) * (n // order)
    elif order == 2:
        orders = [1, 2] * (n // 2 - 1) + [1, 1] if n % 2 == 0 else [1, 2] * (n // 2) + [1]
    else:
        tail = {0: [1, 2, 1], 1: [1], 2: [1, 2]}[n % 3]
        orders = [1, 2, 3] * (n // 3 - (n % 3 == 0)) + tail
    if final_zero:
        orders[-1] = 1
    return orders


def singlestep_blocks(order: int, steps: int, denoise: bool) -> list[int]:
    """The order of each singlestep step over ``steps`` grid intervals (they sum to ``steps``); with ``denoise``
    the list covers ``steps + 1`` evaluations and its final order-1 step is the denoising."""
    orders = singlestep_orders(order, steps + int(denoise), denoise)
    blocks = [k for j, k in enumerate(orders) if j + 1 == len(orders) or orders[j + 1] == 1]
    return blocks[:-1] if denoise else blocks


def stage_state(x, m_s, d1, std_ratio: float, alpha: float, h: float, r: float, r1: float) -> torch.Tensor:
    """The state at ``lambda_s + r h`` inside a singlestep step: DDIM from ``x_s`` (stage 1, ``d1 = None``), plus the
    second-order term of DPM-Solver-3's stage 2 (Lu et al. 2022a, Algorithm 2, in data prediction)."""
    u = first_order(x, m_s, std_ratio, alpha, r * h)
    if d1 is None:
        return u
    return u + (r / r1 * alpha * (math.expm1(-r * h) / (r * h) + 1)) * d1


def singlestep_final(x_first, alpha_t: float, h: float, order: int, d1, d2, r1: float, r2: float) -> torch.Tensor:
    """The end of a 2S step, ``x_first - alpha_t (e^{-h} - 1) D1 / (2 r1)`` (DPM-Solver++ Algorithm 1), or of a 3S
    step, ``x_first + alpha_t ((e^{-h} - 1) / h + 1) D2 / r2``; ``x_first`` the DDIM step, ``Dk = x0(u_k) - x0_s``."""
    if order == 2:
        return x_first - (0.5 / r1 * alpha_t * math.expm1(-h)) * d1
    return x_first + (alpha_t * (math.expm1(-h) / h + 1) / r2) * d2


def singlestep_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: DPMSolverSinglestepOptions) -> torch.Tensor:
    """Singlestep DPM-Solver++ (1, 2S, 3S) over the grid; NFE = ``steps`` plus one for denoising.

    Grid point ``b + j`` inside an order-``k`` step from ``b`` is a stage: the model is evaluated there, and the
    callback of interval ``b + j - 1`` sees (and may replace) the stage's state before that evaluation.
    """
    project, generator = ctx.project_fn(False), ctx.generator
    tb, lam = ctx.batch_times(x.shape[0]), grid.lam.tolist()
    alpha, std = grid.alpha.tolist(), grid.std.tolist()
    ticks, b = iter(ctx.iterate(grid.steps)), 0  # the progress bar advances one grid interval at a time
    for k in singlestep_blocks(opts.order, grid.steps, ctx.denoise):
        next(ticks, None)
        x = project(x, tb[b], generator)
        m_s = ctx.x0(x, tb[b], alpha[b], std[b])
        h = lam[b + k] - lam[b]
        r = [(lam[b + j] - lam[b]) / h for j in range(k)]  # stage fractions: r[1] = r1, r[2] = r2
        d = [None]
        for j in range(1, k):  # stages b + 1 .. b + k - 1
            u = stage_state(x, m_s, d[j - 1] if j == 2 else None, std[b + j] / std[b], alpha[b + j], h, r[j], r[1])
            u = project(ctx.end_step(b + j - 1, u), tb[b + j], generator)
            next(ticks, None)
            d.append(ctx.x0(u, tb[b + j], alpha[b + j], std[b + j]) - m_s)
        x = first_order(x, m_s, std[b + k] / std[b], alpha[b + k], h)
        if k > 1:
            x = singlestep_final(x, alpha[b + k], h, k, d[1], d[-1], r[1], r[-1])
        b += k
        x = ctx.end_step(b - 1, x)
    next(ticks, None)  # closes a tqdm bar
    return ctx.finish(x, grid, project)
