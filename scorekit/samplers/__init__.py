"""Few-step samplers: DPM-Solver++ (multistep, singlestep, SDE), EDM Heun and an adaptive exponential integrator.

Each is a plain loop function with the signature of ``scorekit.sampling``'s loops; :data:`FEW_STEP_SAMPLERS` is the
registry ``scorekit.sample`` reads, and :func:`few_step_settings` validates a sampler's own arguments before any work.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from ..utils import check_choice, check_positive
from .adaptive_ei import ADAPTIVE_ORDERS, adaptive_ei
from .dpm_solver import MULTISTEP_ORDERS, SDE_ORDERS, SINGLESTEP_ORDERS, dpm_solver_pp, dpm_solver_pp_singlestep
from .edm import edm_heun
from .grids import TIME_GRIDS, Grid, check_timesteps, make_grid, sigma_of_t, t_of_lambda, t_of_sigma

FEW_STEP_SAMPLERS = {
    "dpmsolver++": dpm_solver_pp,
    "dpmsolver++-singlestep": dpm_solver_pp_singlestep,
    "sde-dpmsolver++": partial(dpm_solver_pp, stochastic=True),
    "edm-heun": edm_heun,
    "dpmsolver-adaptive": adaptive_ei,
}
# samplers that draw no noise after x_T (replacement conditioning through them is biased; EDM Heun too without churn)
DETERMINISTIC_SAMPLERS = ("dpmsolver++", "dpmsolver++-singlestep", "dpmsolver-adaptive")
# steps when none are given, from the NFE sweep (benchmarks/nfe_sweep.py): 20 NFE for DPM-Solver++ (2M, 3S) and its
# SDE variant; EDM Heun is far from the floor at 19 NFE on VP and sub-VP (Karras grid), so 24 steps (49 NFE)
FEW_STEP_DEFAULT_STEPS = {"dpmsolver++": 19, "dpmsolver++-singlestep": 6, "sde-dpmsolver++": 19, "edm-heun": 24,
                          "dpmsolver-adaptive": 1}
ORDERS = {"dpmsolver++": MULTISTEP_ORDERS, "dpmsolver++-singlestep": SINGLESTEP_ORDERS,
          "sde-dpmsolver++": SDE_ORDERS, "dpmsolver-adaptive": ADAPTIVE_ORDERS}
DEFAULT_ORDERS = {"dpmsolver++": 2, "dpmsolver++-singlestep": 3, "sde-dpmsolver++": 2, "dpmsolver-adaptive": 3}
DEFAULT_GRIDS = {"dpmsolver++": "logsnr", "dpmsolver++-singlestep": "logsnr", "sde-dpmsolver++": "logsnr",
                 "edm-heun": "karras"}


def few_step_settings(sampler: str, *, order: int | None = None, time_grid: str | None = None,
                      timesteps=None, rho: float = 7.0, s_churn: float = 0.0, s_noise: float = 1.0,
                      s_tmin: float = 0.0, s_tmax: float = math.inf, rtol: float = 1e-5,
                      atol: float = 1e-5) -> dict[str, Any]:
    """Validate the settings of a few-step ``sampler``; returns the keyword arguments its loop runs with.

    Raises:
        ValueError: an order the sampler lacks, an unknown ``time_grid``, ``rho <= 0``, negative churn settings,
            ``s_tmax < s_tmin``, non-positive tolerances, or a grid setting given to the adaptive solver.
    """
    check_choice("sampler", sampler, FEW_STEP_SAMPLERS)
    out: dict[str, Any] = {}
    if sampler in ORDERS:
        order = DEFAULT_ORDERS[sampler] if order is None else order
        if isinstance(order, bool) or order not in ORDERS[sampler]:
            raise ValueError(f"order={order!r} is not supported by sampler={sampler!r}; expected one of "
                             f"{list(ORDERS[sampler])}")
        out["order"] = order
    elif order is not None:
        raise ValueError(f"order={order!r} is not a setting of sampler={sampler!r} (it is second order by design)")
    if sampler == "dpmsolver-adaptive":
        if time_grid is not None or timesteps is not None:
            raise ValueError("sampler='dpmsolver-adaptive' chooses its own steps; time_grid and timesteps must be "
                             "None")
        check_positive("rtol", rtol)
        check_positive("atol", atol)
        return {**out, "rtol": rtol, "atol": atol}
    time_grid = DEFAULT_GRIDS[sampler] if time_grid is None else time_grid
    check_choice("time_grid", time_grid, TIME_GRIDS)
    check_positive("rho", rho)
    out.update(time_grid=time_grid, rho=rho, timesteps=timesteps)
    if sampler == "edm-heun":
        for name, value in (("s_churn", s_churn), ("s_noise", s_noise), ("s_tmin", s_tmin)):
            check_positive(name, value, allow_zero=True)
        if not (isinstance(s_tmax, (int, float)) and s_tmax >= s_tmin):
            raise ValueError(f"s_tmax must be a number >= s_tmin={s_tmin}, got {s_tmax!r}")
        out.update(s_churn=s_churn, s_noise=s_noise, s_tmin=s_tmin, s_tmax=s_tmax)
    return out


def steps_of_timesteps(timesteps, steps: int | None) -> int | None:
    """``len(timesteps) - 1`` for a user grid (``steps`` must then be None or agree), else ``steps`` unchanged."""
    if timesteps is None:
        return steps
    n = len(timesteps) - 1
    if steps is not None and steps != n:
        raise ValueError(f"steps={steps} disagrees with timesteps of length {n + 1} ({n} steps); pass one of them")
    return n


__all__ = ["FEW_STEP_SAMPLERS", "DETERMINISTIC_SAMPLERS", "FEW_STEP_DEFAULT_STEPS", "TIME_GRIDS", "Grid",
           "few_step_settings", "make_grid",
           "check_timesteps", "steps_of_timesteps", "sigma_of_t", "t_of_sigma", "t_of_lambda", "dpm_solver_pp",
           "dpm_solver_pp_singlestep", "edm_heun", "adaptive_ei"]
