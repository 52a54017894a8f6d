"""The twisted diffusion sampler (TDS; Wu, Trippe, Naesseth, Blei & Cunningham, NeurIPS 2023, Algorithm 1).

Sequential Monte Carlo over the reverse chain ``p_theta(x_s | x_t)`` (the ancestral step of :mod:`.smc`), with
``K`` particles per returned sample, twisted by ``p~_t(y | x_t) = p(y | x0_hat(x_t))``, the likelihood at the Tweedie
estimate ``x0_hat = (x_t + std_t^2 score(x_t)) / alpha_t`` (TDS eq. 8). For ``t = T, ..., eps``:

- line 2: ``x_T^k ~ p(x_T)``, weight ``w_T^k = p~_T(y | x_T^k)``;
- line 5: resample when the ESS is low (systematic, per group; :class:`~.smc.ParticleSystem`);
- line 7: propose ``x_s ~ p~(x_s | x_t, y)``: the ancestral step with the twisted score
  ``score + grad_{x_t} log p~_t(y | x_t)``, i.e. its mean shifted by ``(v / r) grad log p~_t`` (TDS eq. 9);
- line 8: weight ``w_s = p_theta(x_s | x_t) p~_s(y | x_s) / (p~(x_s | x_t, y) p~_t(y | x_t))`` (TDS eq. 10).

The gradient comes from autograd through the score (one network evaluation with its vector-Jacobian product per
particle and step), under a local ``torch.enable_grad()`` so the sampler runs inside ``torch.no_grad`` pipelines.
The last weight uses ``p~_eps(y | x_eps) = p(y | x0_hat(x_eps))`` and, with ``denoise``, the returned particle is
that ``x0_hat`` (the final Tweedie denoising, no extra NFE: the last step computed it): as ``K`` grows the draw
targets ``p_theta(x_0) p(y | x_0)`` with ``x_0 = x0_hat(x_eps)``. NFE per particle: ``steps + 1``.

The problem is the condition's, :class:`scorekit.conditioning.TDS`: any differentiable ``log_likelihood(x0) ->
(B * K,)`` (rows sample-major, see :mod:`.smc`), or a linear-Gaussian ``observation`` ``(A, y, sigma_y)``, twisted as
TDS does for inpainting: ``p~_t(y | x_t) = N(y; A x0_hat, (sigma_y^2 + r_t^2) I)`` with ``r_t = std_t / alpha_t``
(the Tweedie estimate's error; the twist only shapes the proposal, the weights keep the target exact), or ΠGDM's
``r_t^2 = tau^2 r^2 / (r^2 + tau^2)`` given ``data_variance = tau^2``. With ``sigma_y = 0`` the final target has the
noise ``std(eps) / alpha(eps)`` the chain itself resolves (1e-2 for VP at ``eps = 1e-3``).

Run it as ``scorekit.sample(score_fn, sde, shape, sampler="tds", condition=TDS(observation), num_particles=K)``.
Deviation from the paper: the paper writes the DDPM chain; here the same steps use scorekit's kernel
``x_t = alpha(t) x_0 + std(t) z`` so VP, sub-VP and VE work, on ``sample()``'s uniform time grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..conditioning.base import find_condition
from ..conditioning.inverse import TDS
from ..utils import randn
from .base import RunContext
from .grids import Grid
from .kernels import tweedie_x0
from .options import TDSOptions
from .smc import ParticleSystem, ancestral_coef, log_normal


def gaussian_twist(problem: TDS, groups: int, particles: int, alphas: list[float], stds: list[float],
                   like: torch.Tensor) -> Callable:
    """``log p~_t(y | x_t) = log N(y; A x0_hat, (sigma_y^2 + r_t^2) I)`` at grid point ``i``, ``r_t^2`` the variance
    of ``x0_hat``'s error: ``std_t^2 / alpha_t^2`` or, given ``problem.data_variance`` ``tau^2``, ΠGDM's
    ``tau^2 r^2 / (r^2 + tau^2)``; ``y`` is laid out once per run for the ``B * K`` particles."""
    obs, tau2 = problem.observation, problem.data_variance
    op, sigma_y = obs.operator, obs.sigma_y
    y = obs.y.to(like).expand(groups, *op.out_shape).repeat_interleave(particles, 0)

    def twist(x0: torch.Tensor, i: int) -> torch.Tensor:
        r2 = (stds[i] / alphas[i]) ** 2
        var = sigma_y**2 + (r2 if tau2 is None else tau2 * r2 / (r2 + tau2))
        return log_normal(y, op.forward(x0), var).reshape(x0.shape[0], -1).sum(-1)

    return twist


def twisted_eval(score_fn: Callable, x: torch.Tensor, t: torch.Tensor, alpha: float, std: float, twist: Callable,
                 i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x0_hat(x_t)``, ``log p~_t(y | x_t)`` ``(N,)`` and ``grad_{x_t} log p~_t`` at grid point ``i`` (one NFE)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0 = tweedie_x0(xg, score_fn(xg, t), alpha, std)
        log_g = twist(x0, i)
        if log_g.shape != (x.shape[0],):
            raise ValueError(f"the log-likelihood must return one value per particle, shape ({x.shape[0]},), got "
                             f"{tuple(log_g.shape)}")
        (grad,) = torch.autograd.grad(log_g.sum(), xg)
    return x0.detach(), log_g.detach(), grad


def tds_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: TDSOptions) -> torch.Tensor:
    """TDS (module docstring) over the grid to ``eps``. ``x``: the ``(B * K, ...)`` particles at ``T``; returns
    ``(B, ...)`` (one particle per sample drawn by its final weight) or ``(B, K, ...)`` with ``return_particles``,
    and leaves the SMC facts in ``ctx.particle_info``. The callback sees the particles after step ``i`` (before the
    next resampling); a replaced tensor is re-evaluated (one more NFE)."""
    problem, k = find_condition(ctx.condition, TDS), opts.num_particles
    b, score_fn = x.shape[0] // k, ctx.score_fn
    alphas, stds = grid.alpha.tolist(), grid.std.tolist()
    twist = (gaussian_twist(problem, b, k, alphas, stds, x) if problem.observation is not None
             else (lambda x0, i: problem.log_likelihood(x0)))
    tb = ctx.batch_times(x.shape[0])
    system = ParticleSystem(b, k, opts.ess_threshold, ctx.generator, x.dtype, x.device)
    x0, log_g, grad = twisted_eval(score_fn, x, tb[0], alphas[0], stds[0], twist, 0)
    system.reweight(log_g)  # line 2: w_T = p~_T(y | x_T)
    for i in ctx.iterate(grid.steps):
        x, x0, log_g, grad = system.resample(x, x0, log_g, grad)  # line 5
        a, b_, var = ancestral_coef(alphas[i], stds[i], alphas[i + 1], stds[i + 1])
        mean = a * x + b_ * x0  # p_theta(x_s | x_t)
        shift = (b_ * stds[i] ** 2 / alphas[i]) * grad  # twisted score: the mean moves by (v / r) grad log p~_t
        noise = math.sqrt(var) * randn(tuple(x.shape), ctx.generator, x.dtype, x.device)
        xs = mean + shift + noise  # line 7
        x0, log_g_s, grad = twisted_eval(score_fn, xs, tb[i + 1], alphas[i + 1], stds[i + 1], twist, i + 1)
        # line 8: log p_theta(x_s | x_t) - log p~(x_s | x_t, y) = -(|shift|^2 + 2 shift . noise) / (2 var)
        log_ratio = -(shift * (shift + 2 * noise)).reshape(xs.shape[0], -1).sum(-1) / (2 * var)
        system.reweight(log_ratio + log_g_s - log_g)
        log_g = log_g_s
        x = ctx.end_step(i, xs)
        if x is not xs:  # the callback replaced the particles: their Tweedie estimate and twist are re-evaluated
            x0, log_g_new, grad = twisted_eval(score_fn, x, tb[i + 1], alphas[i + 1], stds[i + 1], twist, i + 1)
            system.reweight(log_g_new - log_g)
            log_g = log_g_new
    out, ctx.particle_info = system.finish(x0 if ctx.denoise else x, opts.return_particles)
    return out
