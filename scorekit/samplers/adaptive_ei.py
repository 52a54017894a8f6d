"""Adaptive exponential-integrator solve of the probability-flow ODE (DPM-Solver-12 / -23, Lu et al. 2022, §4.2).

Steps are taken in the half-log-SNR ``lambda`` from ``lambda(T)`` to ``lambda(eps)``. Each attempt computes a lower-
and a higher-order singlestep DPM-Solver++ solution sharing their data predictions (order 2: DDIM and 2S with
``r1 = 1/2``; order 3: 2S and 3S with ``r1 = 1/3, r2 = 2/3``); the error
``E = RMS((x_high - x_low) / max(atol, rtol * max(|x_low|, |x_prev|)))`` over all elements (the norm dopri5
uses in torchdiffeq; the paper's code takes the largest per-sample RMS instead) accepts the step when ``E <= 1``,
and the next step is ``h <- min(theta h E^(-1/order), lambda(eps) - lambda)``, ``theta = 0.9`` (Algorithm 3).
"""

from __future__ import annotations

import math

import torch

from .base import RunContext
from .dpm_solver import first_order, singlestep_final, stage_state
from .grids import Grid, make_grid, t_of_lambda
from .options import AdaptiveEIOptions

THETA = 0.9
H_INIT = 0.05  # first step in lambda, as the paper's code
MAX_ATTEMPTS = 100_000


def _error(x_high, x_low, x_prev, rtol: float, atol: float) -> float:
    scale = torch.maximum(x_low.abs(), x_prev.abs()).mul(rtol).clamp_min(atol)
    return float(((x_high - x_low) / scale).square().mean().sqrt())  # RMS over all elements, as torchdiffeq


def _pair(x, ctx: RunContext, t: float, lam: float, h: float, m_s, order: int):
    """Lower- and higher-order solutions from ``(t, lambda)`` to ``lambda + h`` sharing data predictions (the
    singlestep kernels of :mod:`~scorekit.samplers.dpm_solver`)."""
    rs = (0.5,) if order == 2 else (1 / 3, 2 / 3)
    lams = torch.tensor([lam + h] + [lam + r * h for r in rs], dtype=torch.float64)
    g = Grid.at(ctx.sde, torch.cat([torch.tensor([t], dtype=torch.float64), t_of_lambda(ctx.sde, lams, ctx.eps)]))
    ts, alpha, std = g.t.tolist(), g.alpha.tolist(), g.std.tolist()  # [s, t, stage 1, (stage 2)]
    x_first = first_order(x, m_s, std[1] / std[0], alpha[1], h)  # DDIM / DPM-Solver++1
    u1 = stage_state(x, m_s, None, std[2] / std[0], alpha[2], h, rs[0], rs[0])
    d1 = ctx.x0(u1, ts[2], alpha[2], std[2]) - m_s
    x_2s = singlestep_final(x_first, alpha[1], h, 2, d1, None, rs[0], rs[0])
    if order == 2:
        return x_2s, x_first, ts[1]
    u2 = stage_state(x, m_s, d1, std[3] / std[0], alpha[3], h, rs[1], rs[0])
    d2 = ctx.x0(u2, ts[3], alpha[3], std[3]) - m_s
    return singlestep_final(x_first, alpha[1], h, 3, d1, d2, rs[0], rs[1]), x_2s, ts[1]  # 3S, 2S


def adaptive_ei_loop(x: torch.Tensor, ctx: RunContext, grid: None, opts: AdaptiveEIOptions) -> torch.Tensor:
    """DPM-Solver-12 (``order=2``) or -23 (``order=3``) from T to eps with error control (no grid).

    NFE (counted by the caller): per accepted step ``order`` evaluations (``order - 1`` per rejected attempt, the
    data prediction at the step's start being reused), plus one for denoising. The callback runs after every
    accepted step ``i`` with that step's end time.

    Raises:
        RuntimeError: the solve needed more than ``MAX_ATTEMPTS`` attempts.
    """
    ends = make_grid(ctx.sde, 1, ctx.eps, "uniform")  # (T, eps) with their kernel coefficients
    lam, lam_end = ends.lam.tolist()
    project, order = ctx.project_fn(False), opts.order
    t, h, m_s, i = ctx.sde.T, H_INIT, None, 0
    lam0, ticks = lam, ctx.fraction_progress()  # the bar follows lambda from lambda(T) to lambda(eps)
    for _ in range(MAX_ATTEMPTS):
        if lam >= lam_end:
            break
        if m_s is None:  # data prediction at the start of the step, once per accepted step
            x = project(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device), ctx.generator)
            alpha, std = ctx.sde.marginal_coef(torch.tensor([t], dtype=torch.float64))
            m_s = ctx.x0(x, t, float(alpha), float(std))
        last = lam + h >= lam_end
        h = lam_end - lam if last else h
        x_high, x_low, t_next = _pair(x, ctx, t, lam, h, m_s, order)
        err = _error(x_high, x_low, x, opts.rtol, opts.atol)
        if not math.isfinite(err):  # a non-finite model output first, else the step itself (named by the guard)
            ctx.guard.check()
            raise ValueError(f"the adaptive DPM-Solver's step from t={t:.4g} produced non-finite values")
        if err <= 1:
            x, t, lam, m_s = x_high, (ctx.eps if last else t_next), (lam_end if last else lam + h), None
            x = ctx.end_step(i, x, t)
            ticks.advance((lam - lam0) / (lam_end - lam0))
            i += 1
        h = THETA * h * max(err, 1e-12) ** (-1 / order)
    else:
        raise RuntimeError(f"adaptive DPM-Solver did not reach eps in {MAX_ATTEMPTS} attempts (rtol={opts.rtol}, "
                           f"atol={opts.atol})")
    ticks.close()
    return ctx.finish(x, ends, project)

