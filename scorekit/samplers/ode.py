"""Probability-flow ODE (Song et al. 2021, eq. 13) and the solvers that integrate it.

Fixed-step Euler and Heun steps share the predictor signature's spirit: ``step(x, t, t_next, drift_fn) -> x``.
The adaptive solve runs on torch tensors through torchdiffeq (dopri5 and friends), or through scipy's RK45 for
parity with the paper's code; both count every drift evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..numerics import FiniteGuard, apply_callback
from ..sde import SDE
from ..utils import append_dims, batch_time
from .base import batch_grid, iterate
from .ddim import tweedie_denoise
from .grids import time_grid

TORCHDIFFEQ_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
SCIPY_METHODS = ("scipy_RK45", "scipy_RK23", "scipy_DOP853", "scipy_LSODA")
ADAPTIVE_METHODS = TORCHDIFFEQ_METHODS + SCIPY_METHODS
FIXED_METHODS = ("euler", "heun")
FIRST_STEP = 1e-2  # first step of an adaptive torchdiffeq solve, as a fraction of the interval


def pf_ode_drift(x: torch.Tensor, t: torch.Tensor, score_fn: Callable, sde: SDE) -> torch.Tensor:
    """Probability-flow ODE drift ``f(x, t) - 1/2 g(t)^2 score(x, t)`` (eq. 13)."""
    f, g = sde.sde(x, t)
    return f - 0.5 * append_dims(g**2, x.ndim) * score_fn(x, t)


def euler_step(x, t, t_next, drift_fn):
    """Explicit Euler step of ``dx/dt = drift_fn(x, t)`` from ``t`` to ``t_next``."""
    return x + drift_fn(x, t) * append_dims(t_next - t, x.ndim)


def heun_step(x, t, t_next, drift_fn):
    """Heun's second-order step (EDM Algorithm 1, lines 5-8): Euler predictor, trapezoidal corrector."""
    dt = append_dims(t_next - t, x.ndim)
    d = drift_fn(x, t)
    x_euler = x + d * dt
    return x + 0.5 * (d + drift_fn(x_euler, t_next)) * dt


FIXED_STEPS = {"euler": euler_step, "heun": heun_step}


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


def ode_sampler(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, method, rtol, atol,
                denoise):
    """Probability-flow ODE sampling (eq. 13) from T to eps, fixed-step or adaptive."""

    def drift(x_, t_):
        x_ = condition.project_ode(x_, t_)
        return pf_ode_drift(x_, t_, score_fn, sde)

    if method in FIXED_METHODS:
        step = FIXED_STEPS[method]
        ts = time_grid(sde, steps, eps, x.dtype, x.device)
        tb = batch_grid(ts, x.shape[0])
        for i in iterate(steps, progress):
            x = apply_callback(callback, i, ts[i + 1], step(x, tb[i], tb[i + 1], drift))
    else:  # adaptive: steps chosen by the error controller; the callback is not called (scorekit.numerics)
        x = odeint_adaptive(lambda t, y: drift(y, batch_time(t, y.shape[0], y)), x, sde.T, eps, method, rtol, atol)
    t_end = batch_time(eps, x.shape[0], x)
    x = condition.project_ode(x, t_end)
    return tweedie_denoise(x, t_end, score_fn, sde) if denoise else x
