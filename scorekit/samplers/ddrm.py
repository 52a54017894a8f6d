"""DDRM (Kawar, Elad, Ermon & Song, NeurIPS 2022): denoising diffusion restoration models, a loop of its own.

DDRM works in the SVD's coordinates of the variance-exploding state ``xbar_t = x_t / alpha`` (noise level
``sigma_t = std / alpha``): ``c = V^T xbar_t``, ``ybar_i = (U^T y)_i / s_i`` with noise ``sigma_i = sigma_y / s_i`` on
the observed coordinates (``s_i > 0``). Each step from ``sigma`` to ``sigma'`` takes the Tweedie estimate
``x0_hat = (x + std^2 score) / alpha`` (one score evaluation, no network gradient), ``c_hat = V^T x0_hat`` and
(eqs. 7-8 of the paper, ``eta``, ``eta_b`` in ``[0, 1]``):

- unobserved (``s_i = 0``): ``c'_i = c_hat_i + sqrt(1 - eta^2) sigma' (c_i - c_hat_i) / sigma + eta sigma' z``;
- observed, noisier than the step (``sigma' < sigma_i``):
  ``c'_i = c_hat_i + sqrt(1 - eta^2) sigma' (ybar_i - c_hat_i) / sigma_i + eta sigma' z``;
- observed, less noisy (``sigma' >= sigma_i``):
  ``c'_i = (1 - eta_b) c_hat_i + eta_b ybar_i + sqrt(sigma'^2 - eta_b^2 sigma_i^2) z``.

The start replaces the observed coordinates of ``x_T`` with ``ybar_i + sqrt(sigma_T^2 - sigma_i^2) z`` where
``sigma_T > sigma_i`` (the paper's initialization). With ``denoise`` a last step to ``sigma' = 0`` returns
``c_hat`` with the observation's weight (one more score evaluation, like the ODE / DDIM samplers' Tweedie step).

The observation and the settings come from the condition: ``scorekit.conditioning.DDRM(observation, eta, eta_b)``
(alone or inside a ``Compose``; other composed conditions can steer the score through ``wrap_score``; no projection
hook is called). DDRM is an approximation (for a Gaussian prior too: the ``eta`` noise does not preserve the
marginals); its bias on the Gaussian oracles is measured by ``benchmarks/conditional.py --section inverse``.
"""

from __future__ import annotations

import torch

from ..conditioning.inverse import DDRM, find_condition, spectral
from ..ddim import tweedie_denoise
from ..numerics import apply_callback
from ..utils import append_dims, randn
from .common import iterate


def ddrm(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, denoise):
    """DDRM sampling on the uniform time grid from ``T`` to ``eps`` (module doc); the signature of
    ``scorekit.sampling``'s loops.

    Args:
        x: ``(B, *in_shape)`` prior draw ``x_T`` in the compute dtype.
        condition: a bound :class:`~scorekit.conditioning.DDRM` (or a ``Compose`` holding one).
        steps: DDRM steps (the paper uses 20); ``denoise`` adds the final step to ``sigma = 0`` (one NFE).

    Returns:
        ``(B, *in_shape)`` samples.
    """
    cond = find_condition(condition, DDRM)
    if cond is None:
        raise ValueError(f"sampler='ddrm' needs condition=scorekit.conditioning.DDRM(observation, eta, eta_b), got "
                         f"{type(condition).__name__}")
    spec = spectral(cond.observation, x)
    ts = torch.linspace(sde.T, eps, steps + 1, dtype=torch.float64).to(dtype=x.dtype, device=x.device)
    tb = ts[:, None].expand(-1, x.shape[0]).contiguous()  # (steps + 1, B), built once
    alpha, std = sde.marginal_coef(tb)
    sigmas = append_dims(std / alpha, 3)  # (steps + 1, B, 1): VE noise levels
    # start: observed coordinates of xbar_T ~ N(ybar, sigma_T^2 - sigma_i^2) where sigma_T > sigma_i
    c = spec.svd.V_adjoint(x) / append_dims(alpha[0], 2)
    z = randn(tuple(c.shape), generator, c.dtype, c.device)
    start = spec.support & (sigmas[0] > spec.sigma)
    c = torch.where(start, spec.ybar + (sigmas[0] ** 2 - spec.sigma**2).clamp_min(0).sqrt() * z, c)
    x = spec.svd.V(c) * append_dims(alpha[0], x.ndim)
    for i in iterate(steps, progress):
        x = _step(x, tb[i], sigmas[i], sigmas[i + 1], alpha[i + 1], score_fn, sde, spec, cond, generator)
        x = apply_callback(callback, i, ts[i + 1], x)
    if denoise:
        x = _step(x, tb[-1], sigmas[-1], torch.zeros_like(sigmas[-1]), torch.ones_like(alpha[-1]), score_fn, sde,
                  spec, cond, generator)
    return x


def _step(x, t, sigma, sigma_next, alpha_next, score_fn, sde, spec, cond, generator):
    """One DDRM step from noise level ``sigma`` (time ``t``) to ``sigma_next`` (eqs. 7-8); returns ``x_{t_next}``."""
    eta, eta_b = cond.eta, cond.eta_b
    alpha = sde.marginal_coef(t)[0]
    c_hat = spec.svd.V_adjoint(tweedie_denoise(x, t, score_fn, sde))
    c = spec.svd.V_adjoint(x) / append_dims(alpha, 2)
    z = randn(tuple(c.shape), generator, c.dtype, c.device)
    keep = (1 - eta**2) ** 0.5 * sigma_next
    sig_obs = torch.where(spec.support, spec.sigma, 1)
    unobserved = c_hat + keep * (c - c_hat) / sigma + eta * sigma_next * z
    noisier = c_hat + keep * (spec.ybar - c_hat) / sig_obs + eta * sigma_next * z
    budget = (sigma_next**2 - (eta_b * torch.where(spec.support, spec.sigma, 0)) ** 2).clamp_min(0).sqrt()
    cleaner = (1 - eta_b) * c_hat + eta_b * spec.ybar + budget * z
    c_next = torch.where(~spec.support, unobserved, torch.where(sigma_next < spec.sigma, noisier, cleaner))
    return spec.svd.V(c_next) * append_dims(alpha_next, x.ndim)
