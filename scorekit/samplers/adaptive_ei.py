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

from .base import DataPrediction, call_back, project_fn
from .dpm_solver import _finish
from .grids import Grid, make_grid, t_of_lambda

ADAPTIVE_ORDERS = (2, 3)
THETA = 0.9
H_INIT = 0.05  # first step in lambda, as the paper's code
MAX_ATTEMPTS = 100_000


def _error(x_high, x_low, x_prev, rtol: float, atol: float) -> float:
    scale = torch.maximum(x_low.abs(), x_prev.abs()).mul(rtol).clamp_min(atol)
    return float(((x_high - x_low) / scale).square().mean().sqrt())  # RMS over all elements, as torchdiffeq


def _pair(x, x0_fn, sde, t: float, lam: float, h: float, m_s, order: int, eps: float):
    """Lower- and higher-order solutions from ``(t, lambda)`` to ``lambda + h`` sharing data predictions."""
    lams = torch.tensor([lam, lam + h] + [lam + r * h for r in ((0.5,) if order == 2 else (1 / 3, 2 / 3))],
                        dtype=torch.float64)
    g = Grid.at(sde, torch.cat([torch.tensor([t], dtype=torch.float64), t_of_lambda(sde, lams[1:], eps)]))
    (a_t, a1), (s_s, s_t, s1) = g.alpha[[1, 2]].tolist(), g.std[[0, 1, 2]].tolist()
    phi1 = math.expm1(-h)
    x_first = (s_t / s_s) * x - (a_t * phi1) * m_s  # DDIM / DPM-Solver++1
    r1 = 0.5 if order == 2 else 1 / 3
    u1 = (s1 / s_s) * x - (a1 * math.expm1(-r1 * h)) * m_s
    d1 = x0_fn(u1, float(g.t[2]), a1, s1) - m_s
    x_2s = x_first - (0.5 / r1 * a_t * phi1) * d1  # 2S
    if order == 2:
        return x_2s, x_first, float(g.t[1])
    r2, a2, s2 = 2 / 3, float(g.alpha[3]), float(g.std[3])
    u2 = (s2 / s_s) * x - (a2 * math.expm1(-r2 * h)) * m_s + (r2 / r1 * a2 * (math.expm1(-r2 * h) / (r2 * h) + 1)) * d1
    d2 = x0_fn(u2, float(g.t[3]), a2, s2) - m_s
    return x_first + (a_t * (phi1 / h + 1) / r2) * d2, x_2s, float(g.t[1])  # 3S, 2S


def adaptive_ei(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, order, rtol, atol,
                denoise):
    """DPM-Solver-12 (``order=2``) or -23 (``order=3``) from T to eps with error control; ``steps`` is unused.

    NFE (counted by the caller): per accepted step ``order`` evaluations (``order - 1`` per rejected attempt, the
    data prediction at the step's start being reused), plus one for denoising.

    Raises:
        RuntimeError: the solve needed more than ``MAX_ATTEMPTS`` attempts.
    """
    ends = make_grid(sde, 1, eps, "uniform")  # (T, eps) with their kernel coefficients
    lam, lam_end = ends.lam.tolist()
    x0_fn, project = DataPrediction(score_fn), project_fn(condition, False)
    t, h, m_s, i = sde.T, H_INIT, None, 0
    for _ in range(MAX_ATTEMPTS):
        if lam >= lam_end:
            break
        if m_s is None:  # data prediction at the start of the step, once per accepted step
            x = project(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device), generator)
            alpha, std = sde.marginal_coef(torch.tensor([t], dtype=torch.float64))
            m_s = x0_fn(x, t, float(alpha), float(std))
        last = lam + h >= lam_end
        h = lam_end - lam if last else h
        x_high, x_low, t_next = _pair(x, x0_fn, sde, t, lam, h, m_s, order, eps)
        err = _error(x_high, x_low, x, rtol, atol)
        if err <= 1:
            x, t, lam, m_s = x_high, (eps if last else t_next), (lam_end if last else lam + h), None
            x = call_back(i, t, x, callback)
            i += 1
        h = THETA * h * max(err, 1e-12) ** (-1 / order)
    else:
        raise RuntimeError(f"adaptive DPM-Solver did not reach eps in {MAX_ATTEMPTS} attempts (rtol={rtol}, "
                           f"atol={atol})")
    return _finish(x, ends, x0_fn, project, generator, denoise)
