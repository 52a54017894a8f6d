"""Likelihood-gradient methods: the score plus an approximation of ``grad_x log p_t(y | x_t)`` taken through the
score network at the Tweedie estimate ``x0_hat = (x_t + std^2 score) / alpha`` (DPS, PiGDM).

Both wrap the score (``wrap_score``), so they run with every sampler; each score evaluation is one forward and one
backward pass through the network (``info["nfe"]`` counts the forward ones). The gradient is taken under a local
``torch.enable_grad()``, so they work inside ``torch.no_grad`` (``scorekit.sample`` and the pipelines run so); under
``torch.inference_mode()``, which cannot be undone locally, they raise before the first network call.

Neither is exact in general (the bias on the Gaussian oracles is measured by ``benchmarks/conditional.py
--sections inverse`` and bounded in ``tests/test_inverse_methods.py``); PiGDM is exact for white Gaussian data
``N(mu, I)``, where its Gaussian approximation of ``p(x_0 | x_t)`` is the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..samplers.kernels import tweedie_x0
from ..utils import append_dims
from .inverse import InverseProblem, spectral
from .linear import Observation


class _LikelihoodGuidance(InverseProblem):
    """``score + correction(x, x0_hat, t)``, the correction computed with autograd through ``x0_hat``."""

    needs_autograd = True

    def __init__(self, observation: Observation, scale: float):
        super().__init__(observation)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
        self.scale = float(scale)

    def wrap_score(self, score_fn: Callable) -> Callable:
        def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            sde = self._bound_sde()
            alpha, std = sde.marginal_coef(t)
            with torch.enable_grad():  # local: sampling loops and pipelines run under torch.no_grad
                x_in = x.detach().requires_grad_(True)
                score = score_fn(x_in, t)
                x0 = tweedie_x0(x_in, score, append_dims(alpha, x.ndim), append_dims(std, x.ndim))  # E[x_0 | x_t]
                correction = self.correction(x_in, x0, t, alpha, std)
            return score.detach() + correction.detach()

        return guided

    def correction(self, x_in, x0, t, alpha, std) -> torch.Tensor:
        raise NotImplementedError


class DPS(_LikelihoodGuidance):
    """Diffusion posterior sampling (Chung et al., ICLR 2023, Algorithm 1).

    DPS approximates ``p(y | x_t)`` by ``p(y | x_0 = x0_hat)`` (their eq. 16) and, on the DDPM ancestral sampler
    with ``N`` steps, moves every step by ``-zeta grad_{x_t} ||y - A x0_hat||`` (the official code's update, with
    the paper's ``zeta_i = zeta' / ||y - A x0_hat||`` folded in, per sample). In score units this is the correction

        ``-scale * grad_x ||y - A x0_hat(x)|| / (g(t)^2 T / N)``,   ``N = sde.N``,

    since a reverse-diffusion step of length ``T / N`` moves ``x`` by ``g^2 T / N`` times the score: with that
    sampler and ``sde.N`` steps it is DPS step for step; other samplers and step counts keep its pull per unit time.
    It needs no SVD (any operator with ``forward``; no noise model beyond the residual's norm, so ``sigma_y`` is not
    used). The paper's code uses ``scale`` 0.3-1.0 (0.5 for inpainting, 0.3 for super-resolution and Gaussian
    deblurring, FFHQ 256 at sigma_y = 0.05); it is not exact for any prior (its pull does not vanish where
    ``p(y | x_t)`` is flat). Measured on the Gaussian image oracles at 1000 steps (``benchmarks/conditional.py
    --sections inverse``, n = 1000; whitened squared mean bias, 0 = exact): 0.32-5.6 noiseless, 2.7-6.8 at
    ``sigma_y = 0.1``, with variances off by up to 2.8x when noisy.

    Args:
        observation: ``y = A x + sigma_y e``.
        scale: the step size ``zeta`` (>= 0; 0 is the unconditional sampler).
    """

    method = "DPS"

    def __init__(self, observation: Observation, scale: float = 1.0):
        super().__init__(observation, scale)

    def correction(self, x_in, x0, t, alpha, std) -> torch.Tensor:
        sde = self._bound_sde()
        residual = self.observation.residual(x0).reshape(x0.shape[0], -1)
        sq = residual.square().sum(1)
        (grad_sq,) = torch.autograd.grad(sq.sum(), x_in)  # rows are independent: per-sample gradients
        # grad ||r|| = grad ||r||^2 / (2 ||r||), per sample (finite at r = 0)
        norm = sq.detach().sqrt().clamp_min(torch.finfo(sq.dtype).tiny)
        grad = grad_sq / append_dims(2 * norm, x_in.ndim)
        _, g = sde.sde(x_in.detach(), t)
        step = g**2 * (sde.T / sde.N)  # what one DDPM step of the paper's N = sde.N multiplies the score by
        return -self.scale * grad / append_dims(step, x_in.ndim)


class PiGDM(_LikelihoodGuidance):
    """Pseudoinverse-guided diffusion (PiGDM; Song, Vahdat, Mardani & Kautz, ICLR 2023, eqs. 5-8).

    ``p(x_0 | x_t) ~ N(x0_hat, r_t^2 I)`` with ``r_t^2 = sigma_t^2 / (1 + sigma_t^2)``, ``sigma_t = std / alpha``
    (data of unit variance), gives ``p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I)`` and the score correction

        ``scale * (d x0_hat / d x_t)^T A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat)``

    (a vector-Jacobian product through the network, the residual held constant), computed in the SVD's coordinates:
    ``A^T (r^2 A A^T + sigma_y^2)^{-1} = V diag(s / (r^2 s^2 + sigma_y^2)) U^T``. The paper's weight is 1 (eq. 7;
    its Algorithm 1 then takes DDIM steps). Exact for ``N(mu, I)`` data, where ``x_0 | x_t`` is ``N(x0_hat, r_t^2 I)``.
    Measured on the correlated Gaussian image oracles (500 predictor steps; as :class:`DPS`): whitened squared mean
    bias 0.07-1.5 noiseless, 0.69-2.0 at ``sigma_y = 0.1``; variances within 15 %.

    Args:
        observation: ``y = A x + sigma_y e``; the operator must have an SVD.
        scale: weight of the likelihood score (>= 0; 1 = the paper).
    """

    method = "PiGDM"
    needs_svd = True

    def __init__(self, observation: Observation, scale: float = 1.0):
        super().__init__(observation, scale)

    def bind(self, sde, x_T, generator) -> None:
        super().bind(sde, x_T, generator)
        self._spec = spectral(self.observation, x_T)

    def correction(self, x_in, x0, t, alpha, std) -> torch.Tensor:
        spec, sigma_y = self._spec, self.observation.sigma_y
        r2 = append_dims(std**2 / (alpha**2 + std**2), 2)  # r_t^2 = sigma_t^2 / (1 + sigma_t^2)
        u = spec.svd.U_adjoint(self.observation.residual(x0.detach()))  # U^T (y - A x0_hat)
        w = torch.where(spec.support, spec.s / torch.where(spec.support, r2 * spec.s**2 + sigma_y**2, 1) * u, 0)
        (vjp,) = torch.autograd.grad(x0, x_in, grad_outputs=spec.svd.V(w))  # eq. 8: (d x0_hat / d x_t)^T v
        return self.scale * vjp
