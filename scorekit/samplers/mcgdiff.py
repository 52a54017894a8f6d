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
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..sde import SDE
from .smc import (
    ParticleSystem,
    ancestral_coef,
    batch_times,
    check_no_projection,
    check_observation,
    check_smc_settings,
    check_x_T_particles,
    coefs,
    end_step,
    init_particles,
    iterate,
    log_normal,
    particle_randn,
    run_particle_sampler,
    uniform_grid,
)

DEFAULT_STEPS = 100
TINY = 1e-30


def mcgdiff_settings(*, observation=None, num_particles: int = 16, ess_threshold: float = 0.5,
                     return_particles: bool = False, x_T_particles=None, shape: tuple[int, ...] | None = None) -> dict:
    """Validate the options of ``mcgdiff`` before any work; returns the keyword arguments its loop runs with.

    Raises:
        ValueError: no observation, an operator without SVD, shapes that disagree, ``sigma_y < 0``,
            ``num_particles < 1``, ``ess_threshold`` outside ``(0, 1]``, ``x_T_particles`` not ``(B, K, *event)``.
    """
    out = check_smc_settings(num_particles, ess_threshold, return_particles)
    if observation is None:
        raise ValueError("sampler 'mcgdiff' needs observation= (an Observation(operator, y, sigma_y) whose operator "
                         "has an SVD)")
    check_observation(observation, shape, "mcgdiff", need_svd=True)
    check_x_T_particles(x_T_particles, shape, out["num_particles"])
    return dict(out, observation=observation, x_T_particles=x_T_particles)


def time_of_ratio(sde: SDE, ratio: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Times ``tau`` in ``[lo, hi]`` with ``std(tau) / alpha(tau) = ratio`` (increasing in ``t`` for every SDE), by
    bisection in float64 (60 halvings: the bracket shrinks below float64 resolution)."""
    a = torch.full_like(ratio, lo, dtype=torch.float64)
    b = torch.full_like(ratio, hi, dtype=torch.float64)
    for _ in range(60):
        mid = 0.5 * (a + b)
        alpha, std = sde.marginal_coef(mid)
        below = std / alpha < ratio
        a, b = torch.where(below, mid, a), torch.where(below, b, mid)
    return 0.5 * (a + b)


class Spectral:
    """Per-coordinate quantities of one run over the ``M`` observed spectral coordinates ``idx`` (``s_i > 0``; the
    other ``D - M`` only follow the kernel): the rescaled observation ``y^`` ``(B, 1, M)``, the noise ``sigma_i``,
    which are pinned / weak / fixed at the end, and the pinning times ``tau_i``."""

    def __init__(self, observation, sde: SDE, times: list[float], alphas: list[float], stds: list[float],
                 groups: int, dtype, device):
        svd = observation.operator.svd
        s = svd.s.to(dtype=torch.float64, device=device).reshape(-1)
        self.idx = torch.nonzero(s > 0).reshape(-1)
        s = s[self.idx]
        y_hat = svd.U_adjoint(observation.y.to(dtype=dtype, device=device)).to(torch.float64)[:, self.idx] / s
        self.y_hat = y_hat.expand(groups, -1)[:, None, :].to(dtype)  # (B, 1, M)
        sigma = float(observation.sigma_y) / s
        floor, ceiling = stds[-1] / alphas[-1], stds[0] / alphas[0]
        self.fixed = sigma <= floor  # below the chain's resolution: pinned at eps, returned as y^
        self.weak = sigma >= ceiling  # beyond the prior's noise: final weight only
        self.pinned = ~self.weak
        self.sigma = torch.where(self.pinned, sigma.clamp_min(floor), sigma)
        tau = time_of_ratio(sde, self.sigma.clamp(floor, ceiling), times[-1], times[0])
        self.tau = torch.where(self.fixed, times[-1], tau)
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


def mcgdiff(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, denoise, num_particles,
            ess_threshold, observation, return_particles=False, x_T_particles=None, record=None):
    """MCGdiff loop (module docstring), ``scorekit.sample``'s loop signature; returns ``(B, *event)`` (one particle
    per sample drawn by its final weight) or ``(B, K, *event)`` with ``return_particles``; ``record`` (a dict)
    receives the SMC facts of :func:`~.smc.smc_info`. ``callback(i, t, x)`` sees the particles ``(B * K, *event)``
    after step ``i``. NFE per particle: ``steps`` (+ 1 with ``denoise``: the final Tweedie estimate)."""
    check_no_projection(condition, "mcgdiff")
    mcgdiff_settings(observation=observation, num_particles=num_particles, ess_threshold=ess_threshold,
                     return_particles=return_particles, x_T_particles=x_T_particles, shape=tuple(x.shape))
    b, k, svd = x.shape[0], num_particles, observation.operator.svd
    times = uniform_grid(sde, steps, eps)
    alphas, stds = coefs(sde, times)
    spec = Spectral(observation, sde, times, alphas, stds, b, x.dtype, x.device)
    xt = init_particles(x, k, sde, generator, x_T_particles)
    n, d = xt.shape[0], math.prod(x.shape[1:])
    tb = batch_times(times, n, xt)
    system = ParticleSystem(b, k, ess_threshold, generator, xt.dtype, xt.device)
    c = svd.V_adjoint(xt).reshape(b, k, d)
    system.reweight(spec.log_potential(c[..., spec.idx], times[0], alphas[0], stds[0]).reshape(-1))  # p_T g_T
    for i in iterate(steps, progress):
        xt, c = system.resample(xt, c.reshape(n, d))
        x0 = (xt + stds[i] ** 2 * score_fn(xt, tb[i])) / alphas[i]  # Tweedie
        c0 = svd.V_adjoint(x0).reshape(b, k, d)
        mean, var, log_w = spec.step(c.reshape(b, k, d), c0, times[i], times[i + 1], (alphas[i], stds[i]),
                                     (alphas[i + 1], stds[i + 1]))
        c = spec.draw(mean, var, particle_randn((n, d), b, generator, xt.dtype, xt.device).reshape(b, k, d))
        system.reweight(log_w.reshape(-1))
        xs = svd.V(c.reshape(n, d))
        xt = end_step(callback, i, times[i + 1], xs)
        if xt is not xs:  # the callback replaced the particles: their spectral coordinates follow
            c = svd.V_adjoint(xt).reshape(b, k, d)
    if denoise:  # Tweedie at eps; fixed coordinates set to y^, weak ones weighed by their likelihood
        x0 = (xt + stds[-1] ** 2 * score_fn(xt, tb[-1])) / alphas[-1]
        c0, log_w = spec.finish(svd.V_adjoint(x0).reshape(b, k, d))
        xt = svd.V(c0.reshape(n, d))
    else:
        _, log_w = spec.finish(c.reshape(b, k, d) / alphas[-1])
    system.reweight(log_w.reshape(-1), fold=True)
    return system.finish(xt, return_particles, steps + int(denoise), record)


def mcgdiff_sample(score_fn: Callable, sde: SDE, shape: tuple[int, ...], *, observation, num_particles: int = 16,
                   ess_threshold: float = 0.5, steps: int = DEFAULT_STEPS, eps: float | None = None,
                   denoise: bool = True, return_particles: bool = False, x_T: torch.Tensor | None = None,
                   x_T_particles: torch.Tensor | None = None, generator=None, dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu", progress=False, callback=None) -> tuple[torch.Tensor, dict]:
    """Posterior samples by MCGdiff; the direct entry point (``scorekit.sample``'s conventions).

    Args:
        score_fn: ``score_fn(x, t) -> score`` (no gradient is taken).
        sde: the forward SDE (VP, sub-VP or VE).
        shape: ``(B, *event)``: ``B`` returned samples, each from its own ``num_particles`` particles.
        observation: an ``Observation(operator, y, sigma_y)`` whose operator has an SVD; ``y`` ``(B or 1, *out)``.
        num_particles: ``K >= 1``; ``K = 1`` is the proposal alone (no weights).
        ess_threshold: resample a group when its ESS < ``ess_threshold * K``; in ``(0, 1]`` (1: every step).
        steps: steps of the uniform grid from ``T`` to ``eps``; NFE per particle ``steps + 1`` with ``denoise``.
        eps: final time (default ``sde.sampling_eps``).
        denoise: finish with the Tweedie estimate at ``eps`` (one more NFE).
        return_particles: return all particles ``(B, K, *event)`` with ``info["log_weights"]`` ``(B, K)``.
        x_T, x_T_particles, generator, dtype, device, progress, callback: as in
            :func:`~scorekit.samplers.tds.tds_sample`.

    Returns:
        ``(x, info)`` with the SMC facts of :func:`~scorekit.samplers.smc.smc_info`.
    """
    settings = mcgdiff_settings(observation=observation, num_particles=num_particles, ess_threshold=ess_threshold,
                                return_particles=return_particles, x_T_particles=x_T_particles, shape=tuple(shape))
    return run_particle_sampler("mcgdiff", mcgdiff, settings, score_fn, sde, tuple(shape), steps=steps, eps=eps,
                                denoise=denoise, x_T=x_T, generator=generator, dtype=dtype, device=device,
                                progress=progress, callback=callback)


__all__ = ["mcgdiff", "mcgdiff_sample", "mcgdiff_settings", "time_of_ratio"]
