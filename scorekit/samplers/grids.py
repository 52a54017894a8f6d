"""Every time grid of scorekit, built before a sampler's loop and handed to it (as k-diffusion does), and the state
a run starts from.

Every SDE is handled through its perturbation kernel ``N(alpha(t) x_0, std(t)^2 I)``: the EDM noise level is
``sigma(t) = std / alpha`` and the half-log-SNR is ``lambda(t) = log(alpha / std) = -log sigma(t)`` (DPM-Solver,
Lu et al. 2022, eq. 3.1). A grid is ``steps + 1`` times from ``T`` down to ``eps``:

- ``"uniform"``: equally spaced in ``t`` (the paper's grid);
- ``"logsnr"``: equally spaced in ``lambda`` (DPM-Solver's "logSNR" grid);
- ``"karras"``: EDM's rho-schedule ``sigma_i = (sigma_max^(1/rho) + i/N (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
  (Karras et al. 2022, eq. 5), ``rho = 7`` by default;
- a user grid: any strictly decreasing sequence of times inside ``[eps, T]`` (``timesteps=``);
- ALD's noise levels: ``steps`` times from ``T`` to ``eps`` (:func:`level_grid`).

A run whose grid starts at ``t_0 = T`` starts from the SDE's prior. A user grid may start below ``T``; without
``x_T`` the start is then drawn from ``N(0, std(t_0)^2 I)`` (:func:`start_state`): the marginal at ``t_0`` with the
data's share ``alpha(t_0)^2 E[x_0^2]`` left out, k-diffusion's ``randn * sigmas[0]``. That share is at most
``1 / sigma(t_0)^2`` of the variance for data of unit scale (scorekit's data ranges [-1, 1] and [0, 1]), so a grid
that starts where ``sigma(t_0) = std / alpha < MIN_START_SIGMA`` (10: a share above 1 %) is refused without
``x_T``: the data still shape the marginal there, and only the caller can draw it (SDEdit:
``alpha(t_0) x_0 + std(t_0) z``).

Times are recovered from ``sigma`` by bisection on the monotone ``sigma(t)`` inside ``[eps, T]``, in float64, so no
grid ever asks the score outside ``[eps, T]`` and no per-SDE closed form is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from ..sde import SDE
from ..utils import check_choice, check_positive, randn
from .options import TIME_GRIDS

_BISECTION_STEPS = 64
MIN_START_SIGMA = 10.0  # sigma(t_0) below which a grid's data-free start is refused (see the module docstring)


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


def uniform_times(sde: SDE, n: int, eps: float) -> torch.Tensor:
    """``n`` equally spaced float64 times from ``T`` down to ``eps`` (the paper's grid has ``n = steps + 1``)."""
    return torch.linspace(sde.T, eps, n, dtype=torch.float64)


def time_grid(sde: SDE, steps: int, eps: float, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """``steps + 1`` equally spaced times from ``T`` down to ``eps`` in ``dtype`` on ``device``."""
    return uniform_times(sde, steps + 1, eps).to(dtype=dtype, device=device)


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
        ts = uniform_times(sde, steps + 1, eps)
    elif time_grid == "logsnr":
        lam_lo, lam_hi = -sigma_of_t(sde, t_max).log(), -sigma_of_t(sde, t_min).log()
        ts = t_of_lambda(sde, torch.linspace(float(lam_lo), float(lam_hi), steps + 1, dtype=torch.float64), eps)
    else:
        s_max, s_min = float(sigma_of_t(sde, t_max)) ** (1 / rho), float(sigma_of_t(sde, t_min)) ** (1 / rho)
        ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        ts = t_of_sigma(sde, (s_max + ramp * (s_min - s_max)) ** rho, eps)  # Karras et al. eq. 5
    ts[0], ts[-1] = sde.T, eps  # the ends exactly, not up to the bisection's last bit
    return Grid.at(sde, ts)


def level_grid(sde: SDE, steps: int, eps: float) -> Grid:
    """ALD's ``steps`` noise levels from ``T`` down to ``eps`` (NCSN's geometric sigmas for VE)."""
    return Grid.at(sde, uniform_times(sde, steps, eps))


def steps_of_timesteps(timesteps, steps: int | None) -> int | None:
    """``len(timesteps) - 1`` for a user grid (``steps`` must then be None or agree), else ``steps`` unchanged."""
    if timesteps is None:
        return steps
    n = len(timesteps) - 1
    if steps is not None and steps != n:
        raise ValueError(f"steps={steps} disagrees with timesteps of length {n + 1} ({n} steps); pass one of them")
    return n


def build_grid(kind: str, opts, sde: SDE, steps: int, eps: float) -> Grid | None:
    """The grid of a run: ``kind`` is the registry's ``"fixed"`` / ``"levels"`` / ``"adaptive"`` (see
    :class:`~scorekit.samplers.registry.SamplerSpec`); ``opts`` may set ``timesteps``, ``time_grid`` and ``rho``."""
    if kind == "adaptive" or opts.adaptive:
        return None
    if kind == "levels":
        return level_grid(sde, steps, eps)
    timesteps = getattr(opts, "timesteps", None)
    return make_grid(sde, steps, eps, getattr(opts, "time_grid", "uniform"), getattr(opts, "rho", 7.0), timesteps)


def start_state(sde: SDE, t0: float, x_T, shape: tuple[int, ...], generator, dtype, device) -> torch.Tensor:
    """The state a run starts from at ``t0`` (the grid's first time): ``x_T`` if given, the prior at ``t0 = T``,
    else ``N(0, std(t0)^2 I)`` when ``sigma(t0) >= MIN_START_SIGMA`` (see the module docstring).

    Raises:
        ValueError: ``t0 < T`` where ``sigma(t0) < MIN_START_SIGMA`` and no ``x_T`` is given.
    """
    if x_T is not None:
        return x_T.to(dtype=dtype, device=device)
    if t0 >= sde.T:
        return sde.prior_sampling(shape, generator=generator, dtype=dtype, device=device)
    sigma = float(sigma_of_t(sde, torch.tensor([t0])))
    if sigma < MIN_START_SIGMA:
        raise ValueError(f"timesteps start at t={t0:.4g} < T={sde.T}, where sigma = std / alpha = {sigma:.3g} < "
                         f"{MIN_START_SIGMA:g}: the data still shape the marginal there (N(0, std(t_0)^2 I) would "
                         f"miss up to {100 / sigma**2:.3g} % of the variance of unit-scale data); pass x_T drawn at "
                         f"t={t0:.4g} (e.g. alpha(t_0) x_0 + std(t_0) z from your data, as SDEdit does), or start the "
                         f"grid where sigma(t) >= {MIN_START_SIGMA:g}")
    std = float(sde.marginal_coef(torch.tensor([t0], dtype=torch.float64))[1])
    return randn(shape, generator, dtype=dtype, device=device) * std  # k-diffusion: randn * sigmas[0]
