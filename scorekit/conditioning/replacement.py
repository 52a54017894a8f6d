"""The replacement method for any operator with an SVD (Song et al. 2021, App. I.2; DDNM, Wang et al. 2023).

In the SVD's coordinates ``c = V^T x`` an observation fixes the observed coordinates (``s_i > 0``) through
``ybar_i = (U^T y)_i / s_i = c_i(x_0) + sigma_i e_i`` with ``sigma_i = sigma_y / s_i`` (the range space of ``A``;
the null space ``s_i = 0`` is left to the prior, DDNM's range/null-space split). Since the perturbation kernel is
``N(alpha(t) x_0, std(t)^2 I)`` and ``V`` is orthonormal, ``c_i(x_t) = alpha c_i(x_0) + std z``; the observation
already carries noise ``alpha sigma_i`` of it, so the method writes after every step

    ``c_i(x_t) <- alpha ybar_i + sqrt(std^2 - alpha^2 sigma_i^2) z``   while ``std / alpha > sigma_i``,

and leaves ``c_i`` to the sampler once ``std / alpha <= sigma_i`` (the observation is then noisier than the state:
DDNM+'s noise budget, DDRM's ``eta_b = 1`` rule). Noiseless (``sigma_y = 0``) this is Song's replacement in the SVD
basis, for every ``t``, and ``finalize`` sets ``c_i = ybar_i`` exactly (``A x = y`` to rounding).

After ``t*`` the observed coordinates follow the reverse SDE conditioned on ``c(x_{t*}) = alpha(t*) ybar``: the score
gains the bridge term ``(alpha ybar - c) / (alpha^2 sigma_i^2 - std^2)`` (Doob's h-transform of the forward
kernel). Its variance vanishes at ``t*``, so on the first grid point after ``t*`` it is stiff: the denoised estimate
``(x + std^2 score) / alpha`` overshoots ``ybar`` by ``std^2 / var``, and with operators of many distinct
``sigma_i`` (a blur) some coordinate always lands there, whatever the step count (measured: noisy deblurring of photo
patches at 2-28 dB, erratic in the step count). The variance is therefore kept ``>= std^2``, so the denoised estimate
moves at most to ``ybar``; this changes the term only where ``sigma_i / sqrt 2 < std / alpha < sigma_i`` and keeps
the exactness on independent blocks below (``tests/test_inverse_methods.py``).

Hooks: ``project`` draws a fresh ``z`` (stochastic samplers), ``project_mean`` uses ``z = 0`` on a step's noise-free
mean, ``project_ode`` one ``z`` per run (a smooth path for deterministic solvers).

Exactness, for a Gaussian prior and exact scores: the method samples the exact posterior when the observed and
unobserved coordinates are independent under the prior (``V^T Sigma V`` block-diagonal), with a stochastic sampler
in the small-step limit (a noisy observation then starts the sampler's own reverse SDE at ``t*``, ``std / alpha =
sigma_i``, from ``alpha ybar_i``, which is distributed as ``x_{t*}`` given ``x_0``). With correlated blocks it is an
approximation: the unobserved part is scored given a noisy observed path instead of ``y``. Measured on the Gaussian
image oracles (``benchmarks/conditional.py --sections inverse``, n = 1000; whitened squared mean bias, 0 = exact):
with PC + Langevin (snr 0.25, 500 steps) 0.005-0.075 noiseless and 0.011-0.11 at ``sigma_y = 0.1`` on inpainting,
colorization and super-resolution, 0.57 / 0.61 on the random projection; predictor-only PC 0.39-5.5 (2026-12-06).
For noisy ``y`` use a stochastic sampler with a corrector (measured: predictor-only is off even on independent
blocks); a deterministic solver cannot spread the observation's noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..sde import SDE
from ..utils import append_dims, randn
from .inverse import InverseProblem, spectral
from .linear import Observation


class Replacement(InverseProblem):
    """Replace the observed SVD coordinates of the state after every step (module doc).

    Args:
        observation: ``y = A x + sigma_y e``; the operator must have an SVD.

    Example:
        ``obs = Observation(Downsample((3, 32, 32), 2), y_low, sigma_y=0.05)``;
        ``x, info = scorekit.sample(score_fn, sde, (4, 3, 32, 32), condition=Replacement(obs))``
    """

    method = "Replacement"
    needs_svd = True

    def __init__(self, observation: Observation | None):
        super().__init__(observation)
        self._generator, self._z_ode = None, None

    def bind(self, sde: SDE, x_T: torch.Tensor, generator: torch.Generator | None) -> None:
        super().bind(sde, x_T, generator)
        self._spec = spectral(self.observation, x_T)
        self._generator, self._z_ode = generator, None

    def wrap_score(self, score_fn: Callable) -> Callable:
        """Noisy ``y``: add the observed coordinates' likelihood score once the state is less noisy than them."""
        if self.observation is not None and self.observation.noiseless:
            return score_fn

        def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            spec = self._spec
            alpha, std = self._bound_sde().marginal_coef(t)
            alpha, std = append_dims(alpha, 2), append_dims(std, 2)
            var = (alpha * spec.sigma) ** 2 - std**2  # alpha ybar ~ N(c(x_t), alpha^2 sigma_i^2 - std^2)
            late = spec.support & (var > 0)
            c = spec.svd.V_adjoint(x)
            # the bridge's pull, with its variance kept >= std^2 (module doc: it is stiff just after t*)
            grad = torch.where(late, (alpha * spec.ybar - c) / torch.where(late, var.clamp_min(std**2), 1), 0)
            return score_fn(x, t) + spec.svd.V(grad)

        return guided

    def project(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Observed coordinates <- a fresh draw of ``alpha ybar + sqrt(std^2 - alpha^2 sigma_i^2) z``."""
        self._bound_sde()
        return self._replace(x, t, randn((x.shape[0], self._spec.ybar.shape[1]), generator, x.dtype, x.device))

    def project_mean(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Observed coordinates of a noise-free mean <- ``alpha ybar``."""
        return self._replace(x, t, None)

    def project_ode(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Observed coordinates <- the smooth path with one ``z`` per run."""
        self._bound_sde()
        if self._z_ode is None:
            self._z_ode = randn((x.shape[0], self._spec.ybar.shape[1]), self._generator, x.dtype, x.device)
        return self._replace(x, t, self._z_ode)

    def finalize(self, x: torch.Tensor) -> torch.Tensor:
        """Noiseless: observed coordinates equal ``ybar`` exactly (``A x = y``); noisy: unchanged."""
        if not self.observation.noiseless:
            return x
        spec = self._spec
        return spec.svd.V(torch.where(spec.support, spec.ybar, spec.svd.V_adjoint(x)))

    def _replace(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        spec = self._spec
        alpha, std = self._bound_sde().marginal_coef(t)
        alpha, std = append_dims(alpha, 2), append_dims(std, 2)
        active = spec.support & (std > alpha * spec.sigma) if not self.observation.noiseless else spec.support
        target = alpha * spec.ybar  # perturbation kernel of the observed coordinates (eqs. 29, 31, 33)
        if z is not None:
            budget = (std**2 - (alpha * torch.where(spec.support, spec.sigma, 0)) ** 2).clamp_min(0).sqrt()
            target = target + budget * z
        return spec.svd.V(torch.where(active, target, spec.svd.V_adjoint(x)))
