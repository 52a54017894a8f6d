"""DDRM (Kawar, Elad, Ermon & Song, NeurIPS 2022): denoising diffusion restoration models, a sampler of its own.

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
hook is called). ``scorekit.sample(score_fn, sde, shape, sampler="ddrm", condition=DDRM(observation))`` runs it on
the uniform grid of ``steps`` intervals (the paper's 20 by default); ``sample()`` refuses ``sampler="ddrm"`` without
a DDRM condition, and a DDRM condition with another sampler, before any work. DDRM is an approximation (for a
Gaussian prior too: the ``eta`` noise does not preserve the marginals); measured on the Gaussian image oracles
(``benchmarks/conditional.py --sections inverse``, n = 1000, whitened squared mean bias, 0 = exact): 0.43-5.7
noiseless and 0.27-11.8 at ``sigma_y = 0.1`` with the paper's 20 steps, 0.04-1.1 and 0.05-0.92 with 200; variances
too small (0.44-0.85 of the exact ones).
"""

from __future__ import annotations

import torch

from ..conditioning.base import find_condition
from ..conditioning.inverse import DDRM, spectral
from ..utils import append_dims, randn
from .base import RunContext
from .grids import Grid
from .kernels import tweedie_x0
from .options import DDRMOptions


def ddrm_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: DDRMOptions) -> torch.Tensor:
    """DDRM sampling over the grid to ``eps`` (module doc), then, with ``ctx.denoise``, the step to ``sigma = 0`` (one
    NFE). ``x``: ``(B, *in_shape)`` prior draw; ``ctx.condition`` holds the bound DDRM condition (``sample()``
    checks it is there)."""
    sde, generator = ctx.sde, ctx.generator
    cond = find_condition(ctx.condition, DDRM)
    spec = spectral(cond.observation, x)
    tb = ctx.batch_times(x.shape[0])  # (steps + 1, B), built once
    alpha, std = sde.marginal_coef(tb)
    sigmas = append_dims(std / alpha, 3)  # (steps + 1, B, 1): VE noise levels
    # start: observed coordinates of xbar_T ~ N(ybar, sigma_T^2 - sigma_i^2) where sigma_T > sigma_i
    c = spec.svd.V_adjoint(x) / append_dims(alpha[0], 2)
    z = randn(tuple(c.shape), generator, c.dtype, c.device)
    start = spec.support & (sigmas[0] > spec.sigma)
    c = torch.where(start, spec.ybar + (sigmas[0] ** 2 - spec.sigma**2).clamp_min(0).sqrt() * z, c)
    x = spec.svd.V(c) * append_dims(alpha[0], x.ndim)
    for i in ctx.iterate(grid.steps):
        x_step, c = _step(x, c, tb[i], (alpha[i], std[i]), sigmas[i], sigmas[i + 1], alpha[i + 1], ctx.score_fn,
                          spec, cond, generator)
        x = ctx.end_step(i, x_step)
        c = c if x is x_step else None  # a callback that replaced x: its coordinates are recomputed
    if ctx.denoise:
        x, _ = _step(x, c, tb[-1], (alpha[-1], std[-1]), sigmas[-1], torch.zeros_like(sigmas[-1]),
                     torch.ones_like(alpha[-1]), ctx.score_fn, spec, cond, generator)
    return x


def _step(x, c, t, coef, sigma, sigma_next, alpha_next, score_fn, spec, cond, generator):
    """One DDRM step from noise level ``sigma`` (time ``t``, kernel ``coef = (alpha, std)`` ``(B,)``) to
    ``sigma_next`` (eqs. 7-8). ``c``: ``V^T x / alpha`` when the caller has it (the previous step's), else ``None``.
    Returns ``x_{t_next}`` and its ``V^T x_{t_next} / alpha_next``."""
    eta, eta_b = cond.eta, cond.eta_b
    alpha, std = coef
    c_hat = spec.svd.V_adjoint(tweedie_x0(x, score_fn(x, t), append_dims(alpha, x.ndim), append_dims(std, x.ndim)))
    c = spec.svd.V_adjoint(x) / append_dims(alpha, 2) if c is None else c
    z = randn(tuple(c.shape), generator, c.dtype, c.device)
    keep = (1 - eta**2) ** 0.5 * sigma_next
    sig_obs = torch.where(spec.support, spec.sigma, 1)
    unobserved = c_hat + keep * (c - c_hat) / sigma + eta * sigma_next * z
    noisier = c_hat + keep * (spec.ybar - c_hat) / sig_obs + eta * sigma_next * z
    budget = (sigma_next**2 - (eta_b * torch.where(spec.support, spec.sigma, 0)) ** 2).clamp_min(0).sqrt()
    cleaner = (1 - eta_b) * c_hat + eta_b * spec.ybar + budget * z
    c_next = torch.where(~spec.support, unobserved, torch.where(sigma_next < spec.sigma, noisier, cleaner))
    return spec.svd.V(c_next) * append_dims(alpha_next, x.ndim), c_next
