"""Time grids for the few-step samplers, chosen independently of the solver.

Every SDE is handled through its perturbation kernel ``N(alpha(t) x_0, std(t)^2 I)``: the EDM noise level is
``sigma(t) = std / alpha`` and the half-log-SNR is ``lambda(t) = log(alpha / std) = -log sigma(t)`` (DPM-Solver,
Lu et al. 2022, eq. 3.1). A grid is ``steps + 1`` times from ``T`` down to ``eps``:

- ``"uniform"``: equally spaced in ``t`` (the paper's grid);
- ``"logsnr"``: equally spaced in ``lambda`` (DPM-Solver's "logSNR" grid);
- ``"karras"``: EDM's rho-schedule ``sigma_i = (sigma_max^(1/rho) + i/N (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
  (Karras et al. 2022, eq. 5), ``rho = 7`` by default;
- a user grid: any strictly decreasing sequence of times inside ``[eps, T]`` (``timesteps=``).

Times are recovered from ``sigma`` by bisection on the monotone ``sigma(t)`` inside ``[eps, T]``, in float64, so no
grid ever asks the score outside ``[eps, T]`` and no per-SDE closed form is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from ..sde import SDE
from ..utils import check_choice, check_positive

TIME_GRIDS = ("uniform", "logsnr", "karras")
_BISECTION_STEPS = 64


def sigma_of_t(sde: SDE, t: torch.Tensor) -> torch.Tensor:
    """EDM noise level ``sigma(t) = std(t) / alpha(t)`` (float64, shape of ``t``)."""
    alpha, std = sde.marginal_coef(t.to(torch.float64))
    return std / alpha


def t_of_sigma(sde: SDE, sigma: torch.Tensor, eps: float) -> torch.Tensor:
    """Invert ``sigma(t)`` on ``[eps, T]`` by bisection (float64); ``sigma`` outside the range clamps to the ends."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    lo = torch.full_like(sigma, eps)
    hi = torch.full_like(sigma, sde.T)
    for _ in range(_BISECTION_STEPS):  # sigma(t) is increasing in t for VP, sub-VP and VE
        mid = 0.5 * (lo + hi)
        above = sigma_of_t(sde, mid) > sigma
        hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
    return 0.5 * (lo + hi)


def t_of_lambda(sde: SDE, lam: torch.Tensor, eps: float) -> torch.Tensor:
    """Invert the half-log-SNR ``lambda(t) = -log sigma(t)`` on ``[eps, T]`` (float64)."""
    return t_of_sigma(sde, torch.exp(-torch.as_tensor(lam, dtype=torch.float64)), eps)


@dataclass(frozen=True)
class Grid:
    """A time grid and its kernel coefficients, all float64 tensors of shape ``(steps + 1,)``, decreasing in t."""

    t: torch.Tensor
    alpha: torch.Tensor
    std: torch.Tensor

    @property
    def steps(self) -> int:
        return len(self.t) - 1

    @cached_property  # computed once per grid: the solvers index it at every step
    def sigma(self) -> torch.Tensor:
        return self.std / self.alpha

    @cached_property
    def lam(self) -> torch.Tensor:
        return torch.log(self.alpha / self.std)

    @classmethod
    def at(cls, sde: SDE, t: torch.Tensor) -> Grid:
        t = torch.as_tensor(t, dtype=torch.float64)
        alpha, std = sde.marginal_coef(t)
        return cls(t=t, alpha=alpha, std=std)


def time_grid(sde: SDE, steps: int, eps: float, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """``steps + 1`` equally spaced times from ``T`` down to ``eps`` (the paper's uniform grid)."""
    return torch.linspace(sde.T, eps, steps + 1, dtype=torch.float64).to(dtype=dtype, device=device)


def check_timesteps(timesteps, sde: SDE, eps: float) -> torch.Tensor:
    """Validate a user grid: at least 2 finite, strictly decreasing times inside ``[eps, T]``; returns float64 (n,)."""
    try:
        ts = torch.as_tensor(timesteps, dtype=torch.float64).reshape(-1).cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"timesteps must be a 1-D sequence of floats, got {type(timesteps).__name__}") from err
    if len(ts) < 2 or not torch.isfinite(ts).all():
        raise ValueError(f"timesteps must hold at least 2 finite times, got {ts.tolist()}")
    if not (ts[1:] < ts[:-1]).all():
        raise ValueError(f"timesteps must be strictly decreasing (from T towards eps), got {ts.tolist()}")
    tol = 1e-9 * sde.T
    if ts[0] > sde.T + tol or ts[-1] < eps - tol:
        raise ValueError(f"timesteps must lie inside [eps, T] = [{eps}, {sde.T}], got [{ts[-1]}, {ts[0]}]")
    return ts.clamp(eps, sde.T)


def check_grid_args(time_grid: str, rho: float) -> None:
    check_choice("time_grid", time_grid, TIME_GRIDS)
    check_positive("rho", rho)


def make_grid(
    sde: SDE,
    steps: int,
    eps: float,
    time_grid: str = "logsnr",
    rho: float = 7.0,
    timesteps: Sequence[float] | torch.Tensor | None = None,
) -> Grid:
    """The ``steps + 1`` grid times from ``T`` to ``eps`` (or the user's ``timesteps``) with ``alpha`` and ``std``.

    Raises:
        ValueError: an unknown ``time_grid``, ``rho <= 0``, ``steps < 1`` or a bad user grid.
    """
    if timesteps is not None:
        return Grid.at(sde, check_timesteps(timesteps, sde, eps))
    check_positive("steps", steps, integer=True)
    check_grid_args(time_grid, rho)
    t_max, t_min = torch.tensor(sde.T, dtype=torch.float64), torch.tensor(eps, dtype=torch.float64)
    if time_grid == "uniform":
        ts = torch.linspace(sde.T, eps, steps + 1, dtype=torch.float64)
    elif time_grid == "logsnr":
        lam_lo, lam_hi = -sigma_of_t(sde, t_max).log(), -sigma_of_t(sde, t_min).log()
        ts = t_of_lambda(sde, torch.linspace(float(lam_lo), float(lam_hi), steps + 1, dtype=torch.float64), eps)
    else:
        s_max, s_min = float(sigma_of_t(sde, t_max)) ** (1 / rho), float(sigma_of_t(sde, t_min)) ** (1 / rho)
        ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        ts = t_of_sigma(sde, (s_max + ramp * (s_min - s_max)) ** rho, eps)  # Karras et al. eq. 5
    ts[0], ts[-1] = sde.T, eps  # the ends exactly, not up to the bisection's last bit
    return Grid.at(sde, ts)
