"""MCGdiff (Cardoso, Janati, Le Corff & Moulines, ICLR 2024, Algorithm 1 and its noisy extension, Sec. 3.2).

A particle filter for ``y = A x + sigma_y e`` that works in the singular basis of ``A = U diag(s) V^T`` and calls no
network gradient. In spectral coordinates ``c = V^T x`` an observed coordinate (``s_i > 0``) sees
``y^_i = (U^T y)_i / s_i = c0_i + sigma_i e_i`` with ``sigma_i = sigma_y / s_i``. Under the kernel
``c_t = alpha(t) c_0 + std(t) z`` this is exactly what ``c_{tau_i} / alpha(tau_i)`` is at the time ``tau_i`` where
``std / alpha = sigma_i``: the posterior is the prior chain with coordinate ``i`` pinned to
``c_{tau_i, i} = alpha(tau_i) y^_i`` (MCGdiff Sec. 3.2; noiseless: ``tau_i = 0``). Before ``tau_i`` the coordinate is
guided by the potential of that pin seen from time ``t``, ``g_t(c) = N(c; alpha_t y^_i, std_t^2 - alpha_t^2
sigma_i^2)`` (MCGdiff eq. 3.4 in scorekit's ``(alpha, std)``); after it, it evolves freely.

Each step ``t -> s`` (one NFE: the Tweedie estimate ``c0_hat``) draws every coordinate from the ancestral kernel
``q(c_s | c_t, c0_hat) = N(a c_t + b c0_hat, v)`` of :mod:`.smc`, and for an observed coordinate:

- ``tau_i <= s`` (guided): from the kernel times ``g_s`` (Gaussian product, Alg. 1 line 8), with the incremental
  log-weight ``log N(alpha_s y^_i; a c_t + b c0_hat, v + w_s) - log g_t(c_t)`` (Alg. 1 line 6);
- ``s < tau_i < t`` (pinned inside the step): the kernel is split at ``tau_i`` with the same ``c0_hat`` (the two
  ancestral steps compose to the one step, so the prior chain is unchanged); ``c_tau = alpha_tau y^_i``, then
  ``c_s`` from the step ``tau -> s``; log-weight ``log q(alpha_tau y^_i | c_t, c0_hat) - log g_t(c_t)``. The paper
  instead rounds ``tau_i`` to the grid (or adds it to the grid) and relaxes the pin by ``kappa``; this is exact on
  any grid without extra steps.

Where the paper assumes VP/DDPM (``alpha^2 + std^2 = 1``), this uses ``std / alpha`` throughout, so VP, sub-VP and VE
work. Two ends: ``sigma_i`` below what the chain resolves (``std(eps) / alpha(eps)``, e.g. noiseless) is pinned at
``eps`` and the returned coordinate is ``y^_i`` exactly (``A x = y`` when noiseless); ``sigma_i`` above
``std(T) / alpha(T)`` (an observation weaker than the prior's noise) cannot be pinned on ``[eps, T]``: it is not
guided and weighs the final particles by ``N(y^_i; c0_hat_i, sigma_i^2)`` instead. Every other weight is exact.

The observation is the condition's, :class:`scorekit.conditioning.MCGdiff` (an operator with an SVD): run it as
``scorekit.sample(score_fn, sde, shape, sampler="mcgdiff", condition=MCGdiff(observation), num_particles=K)`` on
``sample()``'s uniform time grid. NFE per particle: ``steps`` (+ 1 with ``denoise``: the final Tweedie estimate).
"""

from __future__ import annotations

import math

import torch

from ..conditioning.base import find_condition
from ..conditioning.inverse import MCGdiff, spectral
from ..utils import randn
from .base import RunContext
from .grids import Grid, t_of_sigma
from .options import MCGdiffOptions
from .smc import ParticleSystem, ancestral_coef, log_normal

TINY = 1e-30


class Pins:
    """Per-coordinate quantities of one run over the ``M`` observed spectral coordinates ``idx`` (``s_i > 0``; the
    other ``D - M`` only follow the kernel): the rescaled observation ``y^`` ``(B, 1, M)``, the noise ``sigma_i``,
    which are pinned / weak / fixed at the end, and the pinning times ``tau_i``.

    Args:
        problem: the :class:`~scorekit.conditioning.MCGdiff` condition. sde, grid: the run's. groups: ``x`` of one
            row per sample ``(B, ...)``, the dtype and device of the run.
    """

    def __init__(self, problem: MCGdiff, sde, grid: Grid, groups: torch.Tensor):
        obs, dtype = problem.observation, groups.dtype
        spec = spectral(obs, groups)  # ybar = U^T y / s on the support, as the other SVD methods read it
        s = obs.operator.svd.s.to(dtype=torch.float64, device=groups.device).reshape(-1)
        self.idx = torch.nonzero(s > 0).reshape(-1)
        self.y_hat = spec.ybar[:, self.idx][:, None, :]  # (B, 1, M)
        sigma = obs.sigma_y / s[self.idx]
        floor, ceiling = float(grid.sigma[-1]), float(grid.sigma[0])
        self.fixed = sigma <= floor  # below the chain's resolution: pinned at eps, returned as y^
        self.weak = sigma >= ceiling  # beyond the prior's noise: final weight only
        self.pinned = ~self.weak
        self.sigma = torch.where(self.pinned, sigma.clamp_min(floor), sigma)
        tau = t_of_sigma(sde, self.sigma.clamp(floor, ceiling), float(grid.t[-1]))
        self.tau = torch.where(self.fixed, float(grid.t[-1]), tau)
        self.alpha_tau, self.std_tau = (v.to(dtype) for v in sde.marginal_coef(self.tau))
        self.tau, self.sigma = self.tau.to(dtype), self.sigma.to(dtype)

    def potential_var(self, alpha: float, std: float) -> torch.Tensor:
        """``w_t = std_t^2 - alpha_t^2 sigma_i^2`` ``(M,)`` (0 at ``tau_i``; only meaningful where ``tau_i <= t``)."""
        return (std**2 - alpha**2 * self.sigma**2).clamp_min(0)

    def log_potential(self, c: torch.Tensor, t: float, alpha: float, std: float) -> torch.Tensor:
        """``sum_i log g_t(c_i)`` over the observed coordinates ``c`` ``(B, K, M)`` pinned after ``t``, ``(B, K)``."""
        live = self.pinned & (self.tau < t)
        var = self.potential_var(alpha, std).clamp_min(TINY)
        return torch.where(live, log_normal(c, alpha * self.y_hat, var), 0.0).sum(-1)

    def step(self, c, c0, t, s, coef_t, coef_s):
        """Mean ``(B, K, D)``, variance (``(M,)`` on ``idx``, the kernel's elsewhere) of ``c_s`` and the incremental
        log-weight ``(B, K)`` of step ``t -> s``."""
        (alpha_t, std_t), (alpha_s, std_s) = coef_t, coef_s
        a, b, v = ancestral_coef(alpha_t, std_t, alpha_s, std_s)
        mean = a * c + b * c0  # the ancestral kernel, every coordinate
        co, mu = c[..., self.idx], mean[..., self.idx]
        # guided (tau <= s): the kernel times g_s, Alg. 1 lines 6 and 8
        w = self.potential_var(alpha_s, std_s)
        target = alpha_s * self.y_hat
        gain = v / (v + w)
        mean_g, var_g = mu + gain * (target - mu), (1 - gain) * v
        log_g = log_normal(target, mu, v + w)
        # pinned inside the step (s < tau < t): t -> tau with c0_hat, pin, then tau -> s with the same c0_hat
        a1, b1, v1 = ancestral_coef(alpha_t, std_t, self.alpha_tau, self.std_tau)
        a2, b2, v2 = ancestral_coef(self.alpha_tau, self.std_tau, alpha_s, std_s)
        pin, c0o = self.alpha_tau * self.y_hat, c0[..., self.idx]
        log_p = log_normal(pin, a1 * co + b1 * c0o, v1.clamp_min(TINY))
        mean_p = a2 * pin + b2 * c0o
        guided = self.pinned & (self.tau <= s)
        inside = self.pinned & (self.tau > s) & (self.tau < t)
        mean_o = torch.where(guided, mean_g, torch.where(inside, mean_p, mu))
        var_o = torch.where(guided, var_g, torch.where(inside, v2, torch.full_like(v2, v)))
        log_w = torch.where(guided, log_g, torch.where(inside, log_p, 0.0)).sum(-1)
        return mean.index_copy(-1, self.idx, mean_o), (v, var_o), log_w - self.log_potential(co, t, alpha_t, std_t)

    def draw(self, mean: torch.Tensor, var, z: torch.Tensor) -> torch.Tensor:
        """``c_s = mean + sqrt(var) z`` with the kernel's variance off ``idx`` and the step's on it."""
        v, var_o = var
        c = mean + v**0.5 * z
        return c.index_copy(-1, self.idx, mean[..., self.idx] + var_o.sqrt() * z[..., self.idx])

    def finish(self, c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The returned coordinates ``(B, K, D)`` (``y^`` where fixed) and the final log-weight of the weak ones."""
        c0o = torch.where(self.fixed, self.y_hat, c0[..., self.idx])
        log_w = torch.where(self.weak, log_normal(self.y_hat, c0o, self.sigma.clamp_min(TINY) ** 2), 0.0).sum(-1)
        return c0.index_copy(-1, self.idx, c0o), log_w


def mcgdiff_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: MCGdiffOptions) -> torch.Tensor:
    """MCGdiff (module docstring) over the grid to ``eps``, then, with ``ctx.denoise``, the Tweedie estimate at
    ``eps`` (one NFE). ``x``: the ``(B * K, ...)`` particles at ``T``; returns ``(B, ...)`` (one particle per sample
    drawn by its final weight) or ``(B, K, ...)`` with ``return_particles``, and leaves the SMC facts in
    ``ctx.particle_info``. The callback sees the particles after step ``i``."""
    problem, k = find_condition(ctx.condition, MCGdiff), opts.num_particles
    n, d = x.shape[0], math.prod(x.shape[1:])
    b, svd = n // k, problem.observation.operator.svd
    times, alphas, stds = grid.t.tolist(), grid.alpha.tolist(), grid.std.tolist()
    pins = Pins(problem, ctx.sde, grid, x[::k])
    tb = ctx.batch_times(n)
    system = ParticleSystem(b, k, opts.ess_threshold, ctx.generator, x.dtype, x.device)
    c = svd.V_adjoint(x).reshape(b, k, d)
    system.reweight(pins.log_potential(c[..., pins.idx], times[0], alphas[0], stds[0]).reshape(-1))  # p_T g_T
    for i in ctx.iterate(grid.steps):
        x, c = system.resample(x, c.reshape(n, d))
        c0 = svd.V_adjoint(ctx.x0(x, tb[i], alphas[i], stds[i])).reshape(b, k, d)  # Tweedie
        mean, var, log_w = pins.step(c.reshape(b, k, d), c0, times[i], times[i + 1], (alphas[i], stds[i]),
                                     (alphas[i + 1], stds[i + 1]))
        c = pins.draw(mean, var, randn((n, d), ctx.generator, x.dtype, x.device).reshape(b, k, d))
        system.reweight(log_w.reshape(-1))
        xs = svd.V(c.reshape(n, d))
        x = ctx.end_step(i, xs)
        if x is not xs:  # the callback replaced the particles: their spectral coordinates follow
            c = svd.V_adjoint(x).reshape(b, k, d)
    if ctx.denoise:  # Tweedie at eps; fixed coordinates set to y^, weak ones weighed by their likelihood
        c0, log_w = pins.finish(svd.V_adjoint(ctx.x0(x, tb[-1], alphas[-1], stds[-1])).reshape(b, k, d))
        x = svd.V(c0.reshape(n, d))
    else:
        _, log_w = pins.finish(c.reshape(b, k, d) / alphas[-1])
    system.reweight(log_w.reshape(-1), fold=True)
    out, ctx.particle_info = system.finish(x, opts.return_particles)
    return out
