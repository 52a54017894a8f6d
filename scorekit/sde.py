"""Forward SDEs of Song et al. (ICLR 2021): VP, sub-VP and VE.

Each SDE ``dx = f(x, t) dt + g(t) dw`` (eq. 5) has a linear drift, so its perturbation kernel is Gaussian,
``p_0t(x_t | x_0) = N(alpha(t) x_0, std(t)^2 I)`` (eqs. 29, 33 and 31 of the paper's appendix). Every quantity the
samplers need follows from ``(alpha, std)`` and ``g``; per-SDE behaviour lives here, never in the samplers.

All methods take ``x`` of any shape ``(B, ...)`` and ``t`` of shape ``(B,)``.
"""

from __future__ import annotations

import math

import torch

from .utils import append_dims, check_positive, randn


class SDE:
    """Base class. Subclasses define ``beta``-like schedules through ``sde`` and ``marginal_coef``.

    Args:
        N: number of discretization steps used in training (sets the DDPM time label ``t * (N - 1)``).
        T: end time of the forward process.
        sampling_eps: smallest time the samplers integrate down to.
    """

    name = "sde"

    def __init__(self, N: int = 1000, T: float = 1.0, sampling_eps: float = 1e-3):
        check_positive("N", N, integer=True)
        check_positive("T", T)
        check_positive("sampling_eps", sampling_eps)
        if sampling_eps >= T:
            raise ValueError(f"sampling_eps must be smaller than T={T}, got {sampling_eps}")
        self.N, self.T, self.sampling_eps = N, float(T), float(sampling_eps)

    # --- the forward process ---------------------------------------------------------------------------------------
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift ``f(x, t)`` (shape of ``x``) and diffusion ``g(t)`` (shape ``(B,)``) of eq. 5."""
        raise NotImplementedError

    def marginal_coef(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), std(t))``, each ``(B,)``: the perturbation kernel is ``N(alpha x_0, std^2 I)``."""
        raise NotImplementedError

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (shape of ``x``) and std (``(B,)``) of ``p_0t(x_t | x_0 = x)``."""
        alpha, std = self.marginal_coef(t)
        return append_dims(alpha, x.ndim) * x, std

    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian prior p_T."""
        return 1.0

    def prior_sampling(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Draw ``x_T ~ p_T = N(0, prior_std^2 I)`` of the given shape."""
        return randn(tuple(shape), generator, dtype=dtype, device=device) * self.prior_std()

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """``log p_T(z)`` per sample, shape ``(B,)``, for the isotropic Gaussian prior."""
        d = z[0].numel()
        var = self.prior_std() ** 2
        sq = z.reshape(z.shape[0], -1).pow(2).sum(-1)
        return -0.5 * d * math.log(2 * math.pi * var) - 0.5 * sq / var

    # --- discretizations used by the samplers ---------------------------------------------------------------------
    def transition_coef(self, t: torch.Tensor, t_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact forward transition ``x_t | x_{t_next} ~ N(r x_{t_next}, v I)`` for ``t > t_next``; returns ``(r, v)``.

        ``r = alpha(t) / alpha(t_next)`` and ``v = std(t)^2 - r^2 std(t_next)^2``. For VP this is the DDPM step with
        ``beta_i = v = 1 - r^2`` (eq. 10 with ``beta_i`` integrated over the step, so it stays below 1 for any number
        of steps); for VE it is SMLD's ``v = sigma_i^2 - sigma_{i-1}^2`` (eq. 9).
        """
        a_t, s_t = self.marginal_coef(t)
        a_n, s_n = self.marginal_coef(t_next)
        r = a_t / a_n
        v = (s_t**2 - (r * s_n) ** 2).clamp_min(0)
        return r, v

    def discretize(
        self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Discrete forward step ``x_t = x_{t_next} + f + G z`` (eq. 45's ``f_i``, ``G_i``); returns ``(f, G)``."""
        r, v = self.transition_coef(t, t_next)
        return append_dims(r - 1, x.ndim) * x, v.sqrt()

    def ancestral_std(self, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """Noise std of the ancestral step: the exact posterior std of ``x_{t_next} | x_t, x_0`` (eq. 47 for VE)."""
        _, v = self.transition_coef(t, t_next)
        _, s_t = self.marginal_coef(t)
        _, s_n = self.marginal_coef(t_next)
        return (v * s_n**2 / s_t**2).sqrt()

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """The ``alpha_i`` factor of the Langevin corrector's step size (Algorithms 4-5): 1 unless overridden."""
        return torch.ones_like(t)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def config(self) -> dict:
        return {"N": self.N, "T": self.T, "sampling_eps": self.sampling_eps}


class _BetaScheduleSDE(SDE):
    """Shared linear ``beta(t) = beta_min + t (beta_max - beta_min)`` of VP and sub-VP."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000, T: float = 1.0,
                 sampling_eps: float = 1e-3):
        super().__init__(N=N, T=T, sampling_eps=sampling_eps)
        check_positive("beta_min", beta_min)
        check_positive("beta_max", beta_max)
        if beta_max < beta_min:
            raise ValueError(f"beta_max must be >= beta_min={beta_min}, got {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral_beta(self, t: torch.Tensor) -> torch.Tensor:
        """``B(t) = int_0^t beta(s) ds``."""
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        # alpha_i = 1 - beta_i of the training discretization (beta_i ~ beta(t) T / N), kept in (0, 1] for any N.
        return torch.exp(-self.beta(t) * self.T / self.N)

    def config(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, **super().config()}


class VPSDE(_BetaScheduleSDE):
    """Variance-preserving SDE (eq. 11): ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw``; the continuous DDPM."""

    name = "vp"

    def sde(self, x, t):
        beta = self.beta(t)
        return -0.5 * append_dims(beta, x.ndim) * x, beta.sqrt()

    def marginal_coef(self, t):
        b = self.integral_beta(t)
        # eq. 29: mean e^{-B/2} x_0, variance 1 - e^{-B}
        return torch.exp(-0.5 * b), (-torch.expm1(-b)).sqrt()

    def ancestral_std(self, t, t_next):
        # The paper's ancestral VP step (eq. 47, DDPM "fixed_large"): noise std sqrt(beta_i).
        return self.transition_coef(t, t_next)[1].sqrt()


class SubVPSDE(_BetaScheduleSDE):
    """Sub-VP SDE (eq. 17): ``dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - e^{-2 B(t)})) dw``."""

    name = "subvp"

    def sde(self, x, t):
        beta = self.beta(t)
        g2 = beta * -torch.expm1(-2 * self.integral_beta(t))
        return -0.5 * append_dims(beta, x.ndim) * x, g2.sqrt()

    def marginal_coef(self, t):
        b = self.integral_beta(t)
        # eq. 33: mean e^{-B/2} x_0, std 1 - e^{-B}
        return torch.exp(-0.5 * b), -torch.expm1(-b)


class DiscreteVPSDE(SDE):
    """The VP SDE of a discrete ``alpha_bar`` table (any DDPM-family schedule: cosine, scaled-linear, trained betas,
    zero terminal SNR).

    ``alpha_bar_k`` sits at ``t_k = k / (N - 1)`` (the paper's time label ``t (N - 1)`` of DDPM checkpoints), and the
    half-log-SNR ``lambda = 1/2 log(alpha_bar / (1 - alpha_bar))`` is linear in ``t`` between them, so
    ``alpha(t)^2 = sigmoid(2 lambda)``, ``std(t)^2 = 1 - alpha(t)^2`` (eq. 29 with ``e^{-B(t)} = alpha(t)^2``) and
    ``beta(t) = -d log alpha(t)^2 / dt = -2 lambda'(t) std(t)^2`` (eq. 11's drift ``-1/2 beta x``, diffusion
    ``sqrt(beta)``). At the table's times the marginals are the table's exactly.

    Zero terminal SNR (``alpha_bar_{N-1} = 0``, Lin et al. 2024): ``lambda(1) = -inf``, so on the last interval
    ``alpha`` is linear in ``t`` down to ``alpha(1) = 0``. Then the prior ``N(0, I)`` is exact, but ``beta(1)`` and the
    noise level ``std / alpha`` are infinite and Tweedie's ``x0 = (x + std^2 score) / alpha`` is 0 / 0 at ``t = 1``:
    :attr:`zero_terminal_snr` lets the schedulers refuse the steps that need them there.

    Args:
        alpha_bars: ``(N,)`` table ``alpha_bar_k``, decreasing, in ``[0, 1)``; only the last entry may be 0.
        schedule: a short description for ``repr`` and model cards (e.g. ``"squaredcos_cap_v2"``).
        sampling_eps: smallest time the samplers integrate down to.
    """

    name = "vp"

    def __init__(self, alpha_bars: torch.Tensor, schedule: str = "table", sampling_eps: float = 1e-3):
        abar = torch.as_tensor(alpha_bars, dtype=torch.float64).reshape(-1)
        super().__init__(N=max(len(abar), 2), T=1.0, sampling_eps=sampling_eps)
        if len(abar) < 2 or not ((abar[:-1] > 0) & (abar[:-1] < 1)).all() or not 0 <= float(abar[-1]) < 1:
            raise ValueError("alpha_bars must hold at least 2 values in (0, 1) (the last may be 0), got "
                             f"{len(abar)} values in [{float(abar.min()):.3g}, {float(abar.max()):.3g}]")
        if not (abar[1:] < abar[:-1]).all():
            raise ValueError("alpha_bars must be strictly decreasing (more noise at larger k)")
        self.alpha_bars, self.schedule = abar, schedule
        self.zero_terminal_snr = bool(abar[-1] == 0)
        self.lam = 0.5 * (abar.log() - torch.log1p(-abar))  # half-log-SNR at t_k; -inf at a zero-SNR end
        self._on_device = {self.lam.device: (self.lam, abar)}

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # (lambda_k, alpha_bar_k) on the samples' device, copied once: no host round trip per score call
        if device not in self._on_device:
            self._on_device[device] = (self.lam.to(device), self.alpha_bars.to(device))
        return self._on_device[device]

    def _log_alpha_beta(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log alpha(t), beta(t))`` in float64 (see the class docstring): ``k = t (N - 1)`` lies in the table
        interval ``[lo, lo + 1]`` with weight ``w`` on its right end."""
        lams, abar = self._tables(t.device)
        k = (t.to(torch.float64) * (self.N - 1)).clamp(0, self.N - 1)
        lo = k.floor().clamp(max=self.N - 2).long()
        w = k - lo.to(k)
        last = (lo == self.N - 2) & self.zero_terminal_snr  # a zero-SNR last interval
        hi_lam = torch.where(last, lams[lo], lams[lo + 1])  # a finite stand-in on a zero-SNR interval
        lam = (1 - w) * lams[lo] + w * hi_lam
        slope = (hi_lam - lams[lo]) * (self.N - 1)  # d lambda / dt
        log_alpha = 0.5 * torch.nn.functional.logsigmoid(2 * lam)
        beta = -2 * slope * torch.sigmoid(-2 * lam)
        # zero-SNR last interval: alpha = alpha_{N-2} (1 - w), beta = -2 alpha' / alpha = 2 (N - 1) / (1 - w)
        log_alpha = torch.where(last, 0.5 * abar[lo].log() + torch.log1p(-w), log_alpha)
        beta = torch.where(last, 2 * (self.N - 1) / (1 - w), beta)
        return log_alpha, beta

    def sde(self, x, t):
        beta = self._log_alpha_beta(t)[1].to(t.dtype)
        return -0.5 * append_dims(beta, x.ndim) * x, beta.sqrt()

    def marginal_coef(self, t):
        log_alpha = self._log_alpha_beta(t)[0]
        std = (-torch.expm1(2 * log_alpha)).sqrt()
        return log_alpha.exp().to(t.dtype), std.to(t.dtype)

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        # alpha_i = 1 - beta_i = alpha_bar_k / alpha_bar_{k-1} of the table (alpha_bar_{-1} = 1)
        dt = 1.0 / (self.N - 1)
        a = self.marginal_coef(t)[0]
        a_prev = torch.where(t >= dt, self.marginal_coef((t - dt).clamp_min(0))[0], torch.ones_like(a))
        return (a / a_prev) ** 2

    def config(self) -> dict:
        return {"schedule": self.schedule, **super().config()}


class VESDE(SDE):
    """Variance-exploding SDE (eq. 9's limit): ``dx = sigma(t) sqrt(2 log(sigma_max / sigma_min)) dw``.

    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``; the perturbation kernel is ``N(x_0, sigma(t)^2 I)`` (eq. 31).
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000, T: float = 1.0,
                 sampling_eps: float = 1e-5):
        super().__init__(N=N, T=T, sampling_eps=sampling_eps)
        check_positive("sigma_min", sigma_min)
        check_positive("sigma_max", sigma_max)
        if sigma_max <= sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min={sigma_min}, got {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** (t / self.T)

    def sde(self, x, t):
        log_ratio = math.log(self.sigma_max / self.sigma_min)
        g = self.sigma(t) * math.sqrt(2 * log_ratio / self.T)
        return torch.zeros_like(x), g

    def marginal_coef(self, t):
        return torch.ones_like(t), self.sigma(t)

    def prior_std(self) -> float:
        return self.sigma_max

    def config(self) -> dict:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, **super().config()}


SDES: dict[str, type[SDE]] = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def get_sde(name: str, **kwargs) -> SDE:
    """Build an SDE by name (``"vp"``, ``"subvp"``, ``"ve"``)."""
    if name not in SDES:
        raise ValueError(f"sde={name!r} is not supported; expected one of {sorted(SDES)}")
    return SDES[name](**kwargs)
