"""The training discretizations of diffusers' schedulers, for step-for-step parity with DDPM / DDIM / ScoreSdeVe.

scorekit's default (``discretization="continuous"``) steps exactly between times of the continuous SDE on the uniform
grid from ``T`` to ``eps`` (Song et al. 2021). diffusers and the paper's code instead step on the *training*
discretization of the checkpoint:

- DDPM / DDIM (VP): integer timesteps ``k`` with ``alpha_bar_k = prod_{j<=k} (1 - beta_j)`` (the config's
  schedule: linear from ``beta_min / N`` to ``beta_max / N``, cosine, scaled-linear, trained, zero terminal SNR; see
  :mod:`~scorekit.schedulers.alpha_bars`); ``k = -1`` is clean data (``alpha_bar = 1``, or ``alpha_bar_0`` with
  DDIM's ``set_alpha_to_one=False``). Inference timesteps follow the config's ``timestep_spacing`` (default
  ``"leading"``: ``k_i = (S - 1 - i) * (N // S) + steps_offset``). The continuous time of label ``k`` is
  ``t = k / (N - 1)`` (the paper's time label ``t * (N - 1)``), so 1000 DDPM steps visit ``t = 1, 998/999, ..., 0``
  and then land on clean data, where scorekit's continuous grid stops at ``eps = 1e-3``. A DDPM step lands on the
  next label; a DDIM step on ``k - N // S`` (diffusers' rule, the same for "leading" spacing).
- ScoreSdeVe (VE): continuous times ``t_i = linspace(1, eps, S)`` feed the model ``sigma(t_i)``, but the step uses
  the geometric ladder ``sigma_k = exp(linspace(log sigma_min, log sigma_max, S))[k]`` with ``k = floor(t (S - 1))``
  and ``sigma_{-1} = 0`` (so the last step lands on clean data).

:class:`DiscreteSchedule` exposes such a table through the SDE interface the predictors use (``marginal_coef``,
``transition_coef``, ``ancestral_std``, ``langevin_alpha``), so the same predictor / DDIM functions run on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..samplers.kernels import tweedie_x0
from ..sde import SDE, VESDE
from ..utils import append_dims

DISCRETIZATIONS = ("continuous", "discrete")
VARIANCE_TYPES = ("fixed_large", "fixed_small")


class DiscreteSchedule(SDE):
    """A table of marginals ``(alpha_k, std_k)`` at integer indices ``k``; index ``-1`` is clean data (1, 0).

    Args:
        alphas, stds: ``(K,)`` float tensors of ``alpha_k`` and ``std_k``.
        to_index: maps times ``t`` ``(B,)`` to long indices ``(B,)`` (negative = clean).
        variance_type: ancestral noise: ``"fixed_large"`` (``beta_k``, DDPM's and the paper's VP choice; no noise
            on the last step) or ``"fixed_small"`` (the posterior variance ``beta_k (1 - abar_{k-1}) / (1 - abar_k)``).
        final: ``(alpha, std)`` at index ``-1`` (default ``(1, 0)``: clean data).
    """

    name = "discrete"

    def __init__(self, alphas: torch.Tensor, stds: torch.Tensor, to_index: Callable[[torch.Tensor], torch.Tensor],
                 variance_type: str = "fixed_large", final: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__(N=len(alphas), T=1.0, sampling_eps=0.5)
        self.alphas, self.stds, self.to_index, self.variance_type = alphas, stds, to_index, variance_type
        self.final = (torch.tensor(1.0), torch.tensor(0.0)) if final is None else final

    def marginal_coef(self, t):
        k = self.to_index(t)
        clean = k < 0
        k = k.clamp(0, len(self.alphas) - 1).to(self.alphas.device)
        a = torch.where(clean, self.final[0].to(t), self.alphas[k].to(t))
        s = torch.where(clean, self.final[1].to(t), self.stds[k].to(t))
        return a, s

    def ancestral_std(self, t, t_next):
        if self.variance_type == "fixed_small":
            return super().ancestral_std(t, t_next)  # posterior std, 0 when landing on clean data
        _, v = self.transition_coef(t, t_next)
        return torch.where(self.to_index(t_next) < 0, torch.zeros_like(v), v.sqrt())  # DDPM: no noise at t = 0

    def langevin_alpha(self, t):
        # the paper's alpha_i = 1 - beta_i = abar_k / abar_{k-1} (1 for VE)
        a, _ = self.marginal_coef(t)
        a_prev, _ = self.marginal_coef(self._prev_time(t))
        return (a / a_prev) ** 2

    def _prev_time(self, t):
        return t - 1.0


def alpha_bar_schedule(alpha_bars: torch.Tensor, variance_type: str = "fixed_large",
                       final_alpha_bar: float = 1.0) -> DiscreteSchedule:
    """The DDPM / DDIM table of ``alpha_bars`` ``(N,)`` (any schedule, see :mod:`~scorekit.schedulers.alpha_bars`);
    times are the integer labels themselves (``t = k``), and index ``-1`` has ``alpha_bar = final_alpha_bar``
    (DDIM's ``set_alpha_to_one``: 1, or ``alpha_bar_0`` when false)."""
    final = torch.tensor(float(final_alpha_bar))
    return DiscreteSchedule(alpha_bars.sqrt(), (1.0 - alpha_bars).sqrt(), lambda t: t.round().long(), variance_type,
                            final=(final.sqrt(), (1 - final).sqrt()))


TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def diffusers_timesteps(num_train_timesteps: int, num_inference_steps: int, spacing: str = "leading",
                        steps_offset: int = 0) -> torch.Tensor:
    """diffusers' DDPM / DDIM inference labels (float32 ``(S,)``, decreasing), by ``timestep_spacing`` (Lin et al.
    2024, Table 2): ``"leading"`` ``k_i = (S - 1 - i) (N // S) + steps_offset``; ``"trailing"``
    ``round(N - i N / S) - 1`` (starts at ``N - 1``); ``"linspace"`` ``round(linspace(0, N - 1, S))`` reversed."""
    n, s = num_train_timesteps, num_inference_steps
    if spacing == "leading":
        k = (np.arange(0, s) * (n // s)).round()[::-1].astype(np.int64) + steps_offset
    elif spacing == "trailing":
        k = np.round(np.arange(n, 0, -n / s)).astype(np.int64) - 1
    elif spacing == "linspace":
        k = np.linspace(0, n - 1, s).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"timestep_spacing={spacing!r} is not supported; expected one of {list(TIMESTEP_SPACINGS)}")
    return torch.from_numpy(k.copy()).to(torch.float32)


def smld_schedule(sde: VESDE, num_inference_steps: int) -> DiscreteSchedule:
    """ScoreSdeVe's ladder ``sigma_k`` over ``num_inference_steps`` levels, indexed by ``k = floor(t (S - 1))``."""
    s = num_inference_steps
    sigmas = torch.exp(torch.linspace(math.log(sde.sigma_min), math.log(sde.sigma_max), s))
    schedule = DiscreteSchedule(torch.ones_like(sigmas), sigmas, lambda t: (t * (s - 1)).long())
    schedule._prev_time = lambda t: t  # langevin_alpha = 1 for VE
    return schedule


def clip_denoised_score(score: torch.Tensor, x: torch.Tensor, t: torch.Tensor, sde: SDE,
                        data_range: tuple[float, float]) -> torch.Tensor:
    """The score whose Tweedie estimate is ``x0`` clipped to ``data_range`` (diffusers' ``clip_sample``).

    ``x0 = (x + std^2 score) / alpha`` is clamped, then ``score' = (alpha clamp(x0) - x) / std^2``. Off by default
    (the paper does not clip); with it, an ancestral step equals diffusers' DDPM step with ``clip_sample=True``, and a
    DDIM step diffusers' with ``clip_sample=True, use_clipped_model_output=True``.
    """
    a, s = (append_dims(c, x.ndim) for c in sde.marginal_coef(t))
    x0 = tweedie_x0(x, score, a, s).clamp(*data_range)
    return (a * x0 - x) / s**2
