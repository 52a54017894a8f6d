"""The discrete noise schedules of diffusers' DDPM-family configs as ``alpha_bar`` tables.

A DDPM / DDIM / DPM-Solver config fixes ``alpha_bar_k = prod_{j <= k} (1 - beta_j)``, ``k = 0 .. N - 1``, through
``beta_schedule`` (with ``beta_start``, ``beta_end``), or ``trained_betas``, optionally rescaled to zero terminal SNR
(``rescale_betas_zero_snr``; Lin et al. 2024, Algorithm 1). :func:`alpha_bar_table` builds the same float32 table as
diffusers does, operation for operation, so that ``alphas_cumprod`` round-trips bit for bit; the VP SDE over a table
is :class:`scorekit.sde.DiscreteVPSDE`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace")
MAX_BETA = 0.999  # diffusers' cap of the betas of an alpha_bar function (betas_for_alpha_bar)


def glide_cosine(s: float) -> float:
    """Nichol & Dhariwal's cosine ``alpha_bar(s) = cos^2((s + 0.008) / 1.008 * pi / 2)`` (eq. 17), ``s`` in [0, 1]."""
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def laplace(s: float) -> float:
    """The "laplace" ``alpha_bar(s)`` of diffusers' DDPMScheduler: log-SNR ``-sign(1/2 - s) log(1 - 2 |1/2 - s|)``."""
    lam = -0.5 * math.copysign(1, 0.5 - s) * math.log(1 - 2 * math.fabs(0.5 - s) + 1e-6)
    snr = math.exp(lam)
    return math.sqrt(snr / (1 + snr))


def betas_of_alpha_bar(alpha_bar: Callable[[float], float], n: int, max_beta: float = MAX_BETA) -> torch.Tensor:
    """``beta_i = min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta)`` ``(n,)`` float32 (Nichol & Dhariwal
    2021, eq. 17's discretization)."""
    return torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)],
                        dtype=torch.float32)


def schedule_betas(n: int, beta_start: float, beta_end: float, beta_schedule: str = "linear",
                   trained_betas: Sequence[float] | None = None) -> torch.Tensor:
    """The ``(n,)`` float32 betas of a diffusers config (before any zero-SNR rescaling).

    Raises:
        ValueError: an unknown ``beta_schedule``, or ``trained_betas`` whose length is not ``n`` or whose values are
            not in (0, 1].
    """
    if trained_betas is not None:
        betas = torch.tensor(list(trained_betas), dtype=torch.float32)
        if betas.ndim != 1 or len(betas) != n or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError(f"trained_betas must be {n} (num_train_timesteps) values in (0, 1], got "
                             f"{len(betas)} values in [{float(betas.min()):.3g}, {float(betas.max()):.3g}]")
        return betas
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    if beta_schedule == "scaled_linear":  # latent diffusion: linear in sqrt(beta)
        return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":
        return betas_of_alpha_bar(glide_cosine, n)
    if beta_schedule == "laplace":
        return betas_of_alpha_bar(laplace, n)
    if beta_schedule == "sigmoid":  # GeoDiff
        return torch.sigmoid(torch.linspace(-6, 6, n)) * (beta_end - beta_start) + beta_start
    raise ValueError(f"beta_schedule={beta_schedule!r} is not supported; expected one of {list(BETA_SCHEDULES)} "
                     f"or trained_betas")


def rescale_to_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1: shift and scale ``sqrt(alpha_bar)`` so that ``alpha_bar_{N-1} = 0`` exactly while
    ``alpha_bar_0`` is kept; returns the new betas (the last one is 1)."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    alphas = torch.cat([alpha_bar[0:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


def alpha_bar_table(n: int, beta_start: float = 1e-4, beta_end: float = 0.02, beta_schedule: str = "linear",
                    trained_betas: Sequence[float] | None = None,
                    rescale_betas_zero_snr: bool = False) -> torch.Tensor:
    """``alpha_bar_k`` ``(n,)`` float32, exactly diffusers' ``alphas_cumprod`` for the same config keys."""
    betas = schedule_betas(n, beta_start, beta_end, beta_schedule, trained_betas)
    if rescale_betas_zero_snr:
        betas = rescale_to_zero_terminal_snr(betas)
    return torch.cumprod(1.0 - betas, dim=0)
