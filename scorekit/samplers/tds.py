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
The last weight uses ``p~_eps(y | x_eps) = p(y | x0_hat(x_eps))`` and the returned particle is that ``x0_hat`` (the
final Tweedie denoising): as ``K`` grows the draw targets ``p_theta(x_0) p(y | x_0)`` with ``x_0 = x0_hat(x_eps)``.

Likelihoods: any differentiable ``log_likelihood(x0) -> (B * K,)`` (rows sample-major, see :mod:`.smc`), or a
linear-Gaussian ``observation`` ``(A, y, sigma_y)``, twisted as TDS does for inpainting: ``p~_t(y | x_t) =
N(y; A x0_hat, (sigma_y^2 + std_t^2 / alpha_t^2) I)`` (the Tweedie estimate's error taken as ``std_t / alpha_t``; the
twist only shapes the proposal, the weights keep the target exact). With ``sigma_y = 0`` the final target has the
noise ``std(eps) / alpha(eps)`` the chain itself resolves (1e-2 for VP at ``eps = 1e-3``).

Deviation from the paper: the paper writes the DDPM chain; here the same steps use scorekit's kernel
``x_t = alpha(t) x_0 + std(t) z`` so VP, sub-VP and VE work, on ``sample()``'s uniform time grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..sde import SDE
from ..utils import check_positive
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
    particle_randn,
    run_particle_sampler,
    uniform_grid,
)

DEFAULT_STEPS = 100


def tds_settings(*, num_particles: int = 16, ess_threshold: float = 0.5, observation=None,
                 log_likelihood: Callable | None = None, return_particles: bool = False, x_T_particles=None,
                 data_variance: float | None = None, shape: tuple[int, ...] | None = None) -> dict:
    """Validate the options of ``tds`` before any work; returns the keyword arguments its loop runs with.

    Raises:
        ValueError: ``num_particles < 1``, ``ess_threshold`` outside ``(0, 1]``, neither or both of
            ``observation`` / ``log_likelihood``, an observation that disagrees with ``shape`` or has
            ``sigma_y < 0``, ``x_T_particles`` not ``(B, K, *event)``, ``data_variance <= 0`` or given without an
            observation.
        TypeError: a ``log_likelihood`` that is not callable, or a malformed observation.
    """
    out = check_smc_settings(num_particles, ess_threshold, return_particles)
    if (observation is None) == (log_likelihood is None):
        raise ValueError("sampler 'tds' needs exactly one of observation= (an Observation(operator, y, sigma_y)) or "
                         "log_likelihood= (a differentiable log p(y | x0) -> (B * K,))")
    if log_likelihood is not None and not callable(log_likelihood):
        raise TypeError(f"log_likelihood must be callable as log_likelihood(x0) -> (B * K,), got "
                        f"{type(log_likelihood).__name__}")
    if observation is not None:
        check_observation(observation, shape, "tds", need_svd=False)
    check_x_T_particles(x_T_particles, shape, out["num_particles"])
    if data_variance is not None:
        check_positive("data_variance", data_variance)
        if observation is None:
            raise ValueError("data_variance shapes the twist of observation=; a log_likelihood= is used as given")
    return dict(out, observation=observation, log_likelihood=log_likelihood, x_T_particles=x_T_particles,
                data_variance=data_variance)


def gaussian_twist(observation, groups: int, particles: int, alphas: list[float], stds: list[float],
                   data_variance: float | None = None) -> Callable:
    """``log p~_t(y | x_t) = log N(y; A x0_hat, (sigma_y^2 + r_t^2) I)`` for grid point ``i``, ``r_t^2`` the
    variance of ``x0_hat``'s error: ``std_t^2 / alpha_t^2`` or, given ``data_variance`` ``tau^2``, ΠGDM's
    ``tau^2 std_t^2 / (std_t^2 + alpha_t^2 tau^2)``."""
    op, sigma_y = observation.operator, float(observation.sigma_y)
    y = observation.y.expand(groups, *observation.y.shape[1:])
    m = y[0].numel()

    def twist(x0: torch.Tensor, i: int) -> torch.Tensor:
        r2 = (stds[i] / alphas[i]) ** 2
        var = sigma_y**2 + (r2 if data_variance is None else data_variance * r2 / (r2 + data_variance))
        yk = y.to(x0).repeat_interleave(particles, 0)
        sq = (yk - op.forward(x0)).reshape(x0.shape[0], -1).square().sum(-1)
        return -0.5 * (sq / var + m * math.log(2 * math.pi * var))

    return twist


def twisted_eval(score_fn: Callable, x: torch.Tensor, t: torch.Tensor, alpha: float, std: float, twist: Callable,
                 i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x0_hat(x_t)``, ``log p~_t(y | x_t)`` ``(N,)`` and ``grad_{x_t} log p~_t`` at grid point ``i`` (one NFE)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        x0 = (xg + std**2 * score_fn(xg, t)) / alpha
        log_g = twist(x0, i)
        if log_g.shape != (x.shape[0],):
            raise ValueError(f"the log-likelihood must return one value per particle, shape ({x.shape[0]},), got "
                             f"{tuple(log_g.shape)}")
        (grad,) = torch.autograd.grad(log_g.sum(), xg)
    return x0.detach(), log_g.detach(), grad


def tds(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, denoise, num_particles,
        ess_threshold, observation=None, log_likelihood=None, return_particles=False, x_T_particles=None,
        data_variance=None, record=None):
    """TDS loop (module docstring), ``scorekit.sample``'s loop signature; returns ``(B, *event)`` (one particle per
    sample drawn by its final weight) or ``(B, K, *event)`` with ``return_particles``; ``record`` (a dict) receives
    the SMC facts of :func:`~.smc.smc_info`. ``callback(i, t, x)`` sees the particles ``(B * K, *event)`` after step
    ``i`` (before the next resampling); a replaced tensor is re-evaluated (one more NFE)."""
    check_no_projection(condition, "tds")
    tds_settings(num_particles=num_particles, ess_threshold=ess_threshold, observation=observation,
                 log_likelihood=log_likelihood, return_particles=return_particles, x_T_particles=x_T_particles,
                 data_variance=data_variance, shape=tuple(x.shape))
    b, k = x.shape[0], num_particles
    times = uniform_grid(sde, steps, eps)
    alphas, stds = coefs(sde, times)
    twist = (gaussian_twist(observation, b, k, alphas, stds, data_variance) if observation is not None
             else (lambda x0, i: log_likelihood(x0)))
    xt = init_particles(x, k, sde, generator, x_T_particles)
    tb = batch_times(times, xt.shape[0], xt)
    system = ParticleSystem(b, k, ess_threshold, generator, xt.dtype, xt.device)
    x0, log_g, grad = twisted_eval(score_fn, xt, tb[0], alphas[0], stds[0], twist, 0)
    system.reweight(log_g)  # line 2: w_T = p~_T(y | x_T)
    nfe = 1
    for i in iterate(steps, progress):
        xt, x0, log_g, grad = system.resample(xt, x0, log_g, grad)  # line 5
        a, b_, var = ancestral_coef(alphas[i], stds[i], alphas[i + 1], stds[i + 1])
        mean = a * xt + b_ * x0  # p_theta(x_s | x_t)
        shift = (b_ * stds[i] ** 2 / alphas[i]) * grad  # twisted score: the mean moves by (v / r) grad log p~_t
        noise = math.sqrt(var) * particle_randn(tuple(xt.shape), b, generator, xt.dtype, xt.device)
        xs = mean + shift + noise  # line 7
        x0, log_g_s, grad = twisted_eval(score_fn, xs, tb[i + 1], alphas[i + 1], stds[i + 1], twist, i + 1)
        nfe += 1
        # line 8: log p_theta(x_s | x_t) - log p~(x_s | x_t, y) = -(|shift|^2 + 2 shift . noise) / (2 var)
        log_ratio = -(shift * (shift + 2 * noise)).reshape(xs.shape[0], -1).sum(-1) / (2 * var)
        system.reweight(log_ratio + log_g_s - log_g)
        log_g = log_g_s
        xt = end_step(callback, i, times[i + 1], xs)
        if xt is not xs:  # the callback replaced the particles: their Tweedie estimate and twist are re-evaluated
            x0, log_g_new, grad = twisted_eval(score_fn, xt, tb[i + 1], alphas[i + 1], stds[i + 1], twist, i + 1)
            system.reweight(log_g_new - log_g)
            log_g, nfe = log_g_new, nfe + 1
    return system.finish(x0 if denoise else xt, return_particles, nfe, record)


def tds_sample(score_fn: Callable, sde: SDE, shape: tuple[int, ...], *, observation=None,
               log_likelihood: Callable | None = None, num_particles: int = 16, ess_threshold: float = 0.5,
               steps: int = DEFAULT_STEPS, eps: float | None = None, denoise: bool = True,
               return_particles: bool = False, x_T: torch.Tensor | None = None,
               x_T_particles: torch.Tensor | None = None, data_variance: float | None = None, generator=None,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", progress=False,
               callback=None) -> tuple[torch.Tensor, dict]:
    """Posterior samples by TDS; the direct entry point (``scorekit.sample``'s conventions).

    Args:
        score_fn: ``score_fn(x, t) -> score``, differentiable in ``x``.
        sde: the forward SDE (VP, sub-VP or VE).
        shape: ``(B, *event)``: ``B`` returned samples, each from its own ``num_particles`` particles.
        observation: an ``Observation(operator, y, sigma_y)``, ``y`` of shape ``(B or 1, *out_shape)``.
        log_likelihood: or any differentiable ``log p(y | x0)``: ``(B * K, *event) -> (B * K,)``, rows sample-major.
        num_particles: ``K >= 1``; ``K = 1`` is the twisted proposal alone (no weights).
        ess_threshold: resample a group when its ESS < ``ess_threshold * K``; in ``(0, 1]`` (1: every step).
        steps: steps of the uniform grid from ``T`` to ``eps``; NFE per particle is ``steps + 1``.
        eps: final time (default ``sde.sampling_eps``).
        denoise: return the Tweedie estimate at ``eps`` (no extra NFE: the last step computed it).
        return_particles: return all particles ``(B, K, *event)`` with ``info["log_weights"]`` ``(B, K)``.
        x_T: the first particle of each group, ``shape`` (the others are prior draws).
        x_T_particles: all starting particles ``(B, K, *event)`` (e.g. exact draws from ``p_T``).
        data_variance: ``tau^2`` of the twist's ΠGDM-style variance (``None``: TDS's ``std_t^2 / alpha_t^2``).
        generator: a ``torch.Generator`` or a list of ``B`` (one per sample).
        dtype: the model's dtype (state in float32, or float64 for a float64 model).
        device, progress, callback: as in ``scorekit.sample`` (the callback sees the ``(B * K, ...)`` particles).

    Returns:
        ``(x, info)``: ``info`` has ``nfe`` (score calls, each on all ``B * K`` particles), ``nfe_per_particle``,
        ``nfe_per_sample`` (= ``nfe_per_particle * K``), ``ess`` ``(steps + 1, B)``, ``resampled`` ``(steps, B)``,
        ``num_resampling`` ``(B,)`` and the settings.
    """
    settings = tds_settings(num_particles=num_particles, ess_threshold=ess_threshold, observation=observation,
                            log_likelihood=log_likelihood, return_particles=return_particles,
                            x_T_particles=x_T_particles, data_variance=data_variance, shape=tuple(shape))
    return run_particle_sampler("tds", tds, settings, score_fn, sde, tuple(shape), steps=steps, eps=eps,
                                denoise=denoise, x_T=x_T, generator=generator, dtype=dtype, device=device,
                                progress=progress, callback=callback)
