"""Probability-flow ODE (Song et al. 2021, eq. 13) and the solvers that integrate it.

Fixed-step Euler and Heun are written as updates given the drift (:func:`euler_update`, :func:`heun_update`), so
the loop here and ``ScoreSDEODEScheduler.step`` (which gets the drift stage by stage) share them. The adaptive
solve runs on torch tensors through torchdiffeq (dopri5 and friends), or through scipy's RK45 for parity with the
paper's code; both count every drift evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..numerics import FiniteGuard
from ..utils import append_dims, batch_time
from .base import RunContext
from .grids import Grid
from .kernels import pf_ode_drift, tweedie_denoise
from .options import ADAPTIVE_METHODS, FIXED_METHODS, SCIPY_METHODS, ODEOptions

__all__ = ["ADAPTIVE_METHODS", "FIXED_METHODS", "pf_ode_drift", "euler_update", "heun_update", "odeint_adaptive",
           "ode_loop"]
FIRST_STEP = 1e-2  # first step of an adaptive torchdiffeq solve, as a fraction of the interval


def euler_update(x: torch.Tensor, d: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """Explicit Euler step of ``dx/dt = d`` from ``t`` to ``t_next`` (``(B,)`` times)."""
    return x + d * append_dims(t_next - t, x.ndim)


def heun_update(x: torch.Tensor, d: torch.Tensor, d_next: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor):
    """Heun's trapezoidal correction (EDM Algorithm 1, line 8): ``x + (t_next - t) (d + d_next) / 2``, ``d_next`` the
    drift at the Euler point."""
    return x + 0.5 * (d + d_next) * append_dims(t_next - t, x.ndim)


def _fixed_step(method: str, x, t, t_next, drift_fn):
    d = drift_fn(x, t)
    x_euler = euler_update(x, d, t, t_next)
    return x_euler if method == "euler" else heun_update(x, d, drift_fn(x_euler, t_next), t, t_next)


def odeint_adaptive(
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t0: float,
    t1: float,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    guard: FiniteGuard | None = None,
) -> torch.Tensor:
    """Integrate ``dy/dt = func(t, y)`` from ``t0`` to ``t1`` with an adaptive solver; returns ``y(t1)``.

    With a ``guard`` (the :class:`~scorekit.numerics.FiniteGuard` watching the score ``func`` calls), a non-finite
    result raises a ValueError that names the model when its output went non-finite first (also when that made the
    solver itself fail, e.g. torchdiffeq's "underflow in dt"), else the solve.

    ``func`` takes a 0-dim time tensor and a tensor shaped like ``y0``; the state and the time are in ``y0``'s dtype
    (the compute dtype of :mod:`scorekit.numerics`). ``func`` is never evaluated outside ``[min(t0, t1), max(t0,
    t1)]``: torchdiffeq is told to land a step exactly on ``t1`` and is given a first step (its own first-step
    heuristic probes ``t0 + 0.01 ||y0|| / ||f(t0, y0)||``, which lands far outside the interval when the drift at
    ``t0`` is tiny: t ~ 6 for VE, t ~ 1e5 for a VP encode), and every time handed to ``func`` is clamped to the
    interval as a last guard (a no-op for the steps the solvers take). Scipy methods run on float64 numpy copies
    of the state, as the paper's code does.
    """
    if guard is None:
        return _odeint(func, y0, t0, t1, method, rtol, atol)
    guard.start(f"adaptive PF-ODE solve ({method})")
    try:
        out = _odeint(func, y0, t0, t1, method, rtol, atol)
    except Exception:
        guard.check()
        raise
    guard.end_step(out)
    guard.check()
    return out


def _odeint(func, y0, t0, t1, method, rtol, atol):
    lo, hi = min(t0, t1), max(t0, t1)

    def inside(t, y):
        return func(t.clamp(lo, hi), y)

    if method in SCIPY_METHODS:
        return _odeint_scipy(inside, y0, t0, t1, method.removeprefix("scipy_"), rtol, atol)
    from torchdiffeq import odeint

    ts = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
    options = {"step_t": ts[1:], "first_step": FIRST_STEP * (hi - lo)}
    return odeint(inside, y0, ts, rtol=rtol, atol=atol, method=method, options=options)[-1]


def _odeint_scipy(func, y0, t0, t1, method, rtol, atol):
    from scipy.integrate import solve_ivp

    shape, dtype, device = y0.shape, y0.dtype, y0.device

    def fun(t, y):
        y_t = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
        out = func(torch.tensor(t, dtype=dtype, device=device), y_t).detach().cpu().double().numpy().ravel()
        if not np.isfinite(out).all():  # scipy keeps shrinking its step on NaN; the host copy makes this check free
            raise FloatingPointError(f"the drift is non-finite at t={t:.4g} (scipy {method})")
        return out

    sol = solve_ivp(fun, (t0, t1), y0.detach().cpu().double().numpy().ravel(), method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"scipy solve_ivp ({method}) failed: {sol.message}")
    return torch.as_tensor(np.asarray(sol.y[:, -1]), dtype=dtype, device=device).reshape(shape)


def ode_loop(x: torch.Tensor, ctx: RunContext, grid: Grid | None, opts: ODEOptions) -> torch.Tensor:
    """Probability-flow ODE sampling (eq. 13) from the grid's first time (``T`` for an adaptive solve) to eps,
    then, with ``ctx.denoise``, Tweedie's denoising at eps (one NFE)."""
    condition, score_fn, sde = ctx.condition, ctx.score_fn, ctx.sde

    def drift(x_, t_):
        x_ = condition.project_ode(x_, t_)
        return pf_ode_drift(x_, t_, score_fn, sde)

    if grid is not None:
        tb = ctx.batch_times(x.shape[0])
        for i in ctx.iterate(grid.steps):
            x = ctx.end_step(i, _fixed_step(opts.method, x, tb[i], tb[i + 1], drift))
    else:  # adaptive: steps chosen by the error controller; the callback is not called (scorekit.numerics)
        ticks, span = ctx.fraction_progress(), sde.T - ctx.eps  # the bar follows the latest time evaluated

        def timed_drift(t, y):
            if ctx.progress and t.device.type == "cpu":  # reading a device time would sync at every evaluation
                ticks.advance((sde.T - float(t)) / span)
            return drift(y, batch_time(t, y.shape[0], y))

        x = odeint_adaptive(timed_drift, x, sde.T, ctx.eps, opts.method, opts.rtol, opts.atol)
        ticks.close()
    t_end = batch_time(ctx.eps, x.shape[0], x)
    x = condition.project_ode(x, t_end)
    return tweedie_denoise(x, t_end, score_fn, sde) if ctx.denoise else x
