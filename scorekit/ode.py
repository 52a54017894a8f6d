"""Probability-flow ODE (Song et al. 2021, eq. 13) and the solvers that integrate it.

Fixed-step Euler and Heun steps share the predictor signature's spirit: ``step(x, t, t_next, drift_fn) -> x``.
The adaptive solve runs on torch tensors through torchdiffeq (dopri5 and friends), or through scipy's RK45 for
parity with the paper's code; both count every drift evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .sde import SDE
from .utils import append_dims

TORCHDIFFEQ_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
SCIPY_METHODS = ("scipy_RK45", "scipy_RK23", "scipy_DOP853", "scipy_LSODA")
ADAPTIVE_METHODS = TORCHDIFFEQ_METHODS + SCIPY_METHODS
FIXED_METHODS = ("euler", "heun")


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
) -> torch.Tensor:
    """Integrate ``dy/dt = func(t, y)`` from ``t0`` to ``t1`` with an adaptive solver; returns ``y(t1)``.

    ``func`` takes a 0-dim time tensor and a tensor shaped like ``y0``. torchdiffeq is told to land a step exactly on
    ``t1`` so it never evaluates ``func`` beyond the interval (the VP std is NaN below t = 0). Scipy methods run on
    float64 numpy copies of the state, as the paper's code does.
    """
    if method in SCIPY_METHODS:
        return _odeint_scipy(func, y0, t0, t1, method.removeprefix("scipy_"), rtol, atol)
    from torchdiffeq import odeint

    ts = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
    options = {"step_t": ts[1:]} if method in ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2") else None
    return odeint(func, y0, ts, rtol=rtol, atol=atol, method=method, options=options)[-1]


def _odeint_scipy(func, y0, t0, t1, method, rtol, atol):
    from scipy.integrate import solve_ivp

    shape, dtype, device = y0.shape, y0.dtype, y0.device

    def fun(t, y):
        y_t = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
        return func(torch.tensor(t, dtype=dtype, device=device), y_t).detach().cpu().double().numpy().ravel()

    sol = solve_ivp(fun, (t0, t1), y0.detach().cpu().double().numpy().ravel(), method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"scipy solve_ivp ({method}) failed: {sol.message}")
    return torch.as_tensor(np.asarray(sol.y[:, -1]), dtype=dtype, device=device).reshape(shape)
