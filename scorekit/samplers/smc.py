"""Sequential Monte Carlo machinery shared by the particle samplers (``tds``, ``mcgdiff``).

Layout: ``B`` returned samples, each with its own group of ``K`` particles, stored as one leading batch dimension of
``B * K`` rows, sample-major (row ``b * K + k`` is particle ``k`` of sample ``b``); weights as log-weights ``(B, K)``
normalized with ``logsumexp``. After each reweighting the effective sample size
``ESS = (sum_k w_k)^2 / sum_k w_k^2`` of every group is recorded, and a group whose ESS falls below
``ess_threshold * K`` is resampled by systematic resampling (Douc, Cappé & Moulines 2005; one uniform per group);
its log-weights are then reset to uniform. Resampling is applied per group with ``torch.where``, without a host
synchronisation. At the end one particle per group is drawn by its final weight (or all weighted particles are
returned).

Randomness: every draw comes from ``generator``, a ``torch.Generator`` or a list of ``B`` generators (group ``b``
draws only from ``generator[b]``, so a list run equals ``B`` single runs). With ``K = 1`` no resampling or selection
uniform is drawn: the run consumes exactly the draws of its proposal.

The base kernel of both samplers is the ancestral (DDPM posterior) step of the SDE's Gaussian kernel
``x_t = alpha(t) x_0 + std(t) z``: ``q(x_s | x_t, x_0) = N(a x_t + b x_0, var)`` for ``s < t``, evaluated at the
Tweedie estimate ``x_0 = (x_t + std_t^2 score) / alpha_t`` (Ho et al. 2020, eqs. 6-7; any VP, sub-VP or VE kernel).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..conditioning.base import Compose, Condition
from ..numerics import CountedScore, apply_callback, compute_dtype
from ..sde import SDE
from ..utils import check_count, check_positive, rand, randn

LOG_2PI = math.log(2 * math.pi)


# --- the base kernel -------------------------------------------------------------------------------------------------
def ancestral_coef(alpha_t, std_t, alpha_s, std_s):
    """``(a, b, var)`` of ``q(x_s | x_t, x_0) = N(a x_t + b x_0, var)``, ``s < t`` (floats or tensors).

    With ``r = alpha_t / alpha_s`` and the forward step variance ``v = std_t^2 - r^2 std_s^2``:
    ``a = r std_s^2 / std_t^2``, ``b = alpha_s v / std_t^2``, ``var = std_s^2 v / std_t^2`` (DDPM eq. 7, written for
    any ``(alpha, std)``; for VE ``alpha = 1`` it is SMLD's ancestral step).
    """
    r = alpha_t / alpha_s
    v = std_t**2 - (r * std_s) ** 2
    v = v.clamp_min(0) if isinstance(v, torch.Tensor) else max(v, 0.0)
    return r * std_s**2 / std_t**2, alpha_s * v / std_t**2, std_s**2 * v / std_t**2


def log_normal(x: torch.Tensor, mean, var) -> torch.Tensor:
    """Elementwise ``log N(x; mean, var)`` (``var > 0``, a float or a tensor broadcasting against ``x``)."""
    log_var = var.log() if isinstance(var, torch.Tensor) else math.log(var)
    return -0.5 * ((x - mean) ** 2 / var + log_var + LOG_2PI)


def uniform_grid(sde: SDE, steps: int, eps: float) -> list[float]:
    """``steps + 1`` times from ``T`` down to ``eps`` (the uniform grid of ``sample()``), as host floats."""
    return torch.linspace(sde.T, eps, steps + 1, dtype=torch.float64).tolist()


def coefs(sde: SDE, times: Sequence[float]) -> tuple[list[float], list[float]]:
    """``alpha(t)`` and ``std(t)`` at ``times`` as host floats (float64), computed once per run."""
    alpha, std = sde.marginal_coef(torch.tensor(list(times), dtype=torch.float64))
    return alpha.tolist(), std.tolist()


def iterate(n: int, progress) -> Sequence[int]:
    if callable(progress):
        return progress(range(n))
    if progress:
        from tqdm.auto import tqdm

        return tqdm(range(n))
    return range(n)


# --- particles -------------------------------------------------------------------------------------------------------
def particle_randn(shape: tuple[int, ...], groups: int, generator, dtype, device) -> torch.Tensor:
    """Standard normal ``(B * K, ...)``; with a list of ``B`` generators, group ``b``'s rows from ``generator[b]``."""
    if isinstance(generator, (list, tuple)):
        per = (shape[0] // groups, *shape[1:])
        return torch.cat([randn(per, g, dtype=dtype, device=device) for g in generator])
    return randn(shape, generator, dtype=dtype, device=device)


def group_rand(groups: int, generator, dtype, device) -> torch.Tensor:
    """One uniform per group, ``(B,)`` (row ``b`` from ``generator[b]`` for a list)."""
    return rand((groups,), generator, dtype=dtype, device=device)


def init_particles(x: torch.Tensor, num_particles: int, sde: SDE, generator, x_T_particles) -> torch.Tensor:
    """``(B * K, *event)`` starting particles: ``x_T_particles`` ``(B, K, *event)`` if given, else ``x`` as
    particle 0 of each group and ``K - 1`` more draws from the prior ``N(0, prior_std^2 I)``."""
    b, k = x.shape[0], num_particles
    if x_T_particles is not None:
        return x_T_particles.to(dtype=x.dtype, device=x.device).reshape(b * k, *x.shape[1:])
    if k == 1:
        return x
    more = particle_randn((b * (k - 1), *x.shape[1:]), b, generator, x.dtype, x.device) * sde.prior_std()
    return torch.cat([x[:, None], more.reshape(b, k - 1, *x.shape[1:])], 1).reshape(b * k, *x.shape[1:])


def ess(log_w: torch.Tensor) -> torch.Tensor:
    """Effective sample size ``(sum w)^2 / sum w^2`` per group, ``(B,)``, from log-weights ``(B, K)``."""
    return torch.exp(2 * torch.logsumexp(log_w, -1) - torch.logsumexp(2 * log_w, -1))


def systematic_indices(log_w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Systematic resampling: ancestor indices ``(B, K)`` of positions ``(u_b + k) / K`` in each group's weight CDF."""
    k = log_w.shape[-1]
    cdf = torch.softmax(log_w, -1).cumsum(-1)
    positions = (u[:, None] + torch.arange(k, dtype=u.dtype, device=u.device)) / k
    return torch.searchsorted(cdf.contiguous(), positions.to(cdf.dtype).contiguous()).clamp_max(k - 1)


def gather_groups(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``t`` ``(B * K, ...)`` picked per group by ``index`` ``(B, K')``; returns ``(B * K', ...)``."""
    b, k = index.shape
    flat = (index + torch.arange(b, device=index.device)[:, None] * (t.shape[0] // b)).reshape(-1)
    return t.index_select(0, flat)


class ParticleSystem:
    """Log-weights, adaptive resampling and the ESS record of ``B`` groups of ``K`` particles.

    Args:
        groups: ``B``. particles: ``K``. ess_threshold: resample a group when ``ESS < ess_threshold * K``.
        generator: the run's generator(s). dtype, device: of the log-weights.
    """

    def __init__(self, groups: int, particles: int, ess_threshold: float, generator, dtype, device):
        self.b, self.k, self.threshold, self.generator = groups, particles, ess_threshold, generator
        self.log_w = torch.zeros(groups, particles, dtype=dtype, device=device)
        self.ess_trace: list[torch.Tensor] = []
        self.resampled: list[torch.Tensor] = []

    def reweight(self, log_increment: torch.Tensor, fold: bool = False) -> None:
        """Add incremental log-weights ``(B * K,)`` and normalize each group with ``logsumexp``; record the ESS
        (``fold``: a further factor of the same step, which replaces that step's ESS record)."""
        log_w = self.log_w + log_increment.reshape(self.b, self.k)
        self.log_w = log_w - torch.logsumexp(log_w, -1, keepdim=True)
        if fold:
            self.ess_trace.pop()
        self.ess_trace.append(ess(self.log_w))

    def resample(self, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Systematically resample the groups whose ESS fell below the threshold (the others keep their particles
        and weights); returns the ``states`` ``(B * K, ...)`` with the chosen ancestors."""
        if self.k == 1:
            self.resampled.append(torch.zeros(self.b, dtype=torch.bool, device=self.log_w.device))
            return states
        low = self.ess_trace[-1] < self.threshold * self.k
        index = systematic_indices(self.log_w, group_rand(self.b, self.generator, self.log_w.dtype,
                                                          self.log_w.device))
        keep = torch.arange(self.k, device=index.device).expand(self.b, -1)
        index = torch.where(low[:, None], index, keep)
        self.log_w = torch.where(low[:, None], torch.full_like(self.log_w, -math.log(self.k)), self.log_w)
        self.resampled.append(low)
        return tuple(gather_groups(s, index) for s in states)

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """One particle per group drawn by its final weight (inverse CDF of one uniform): ``(B, ...)``."""
        if self.k == 1:
            return x
        u = group_rand(self.b, self.generator, self.log_w.dtype, self.log_w.device)
        cdf = torch.softmax(self.log_w, -1).cumsum(-1)
        index = torch.searchsorted(cdf, u[:, None].to(cdf.dtype)).clamp_max(self.k - 1)
        return gather_groups(x, index)

    def finish(self, x: torch.Tensor, return_particles: bool, nfe_per_particle: int, record: dict | None):
        """The returned tensor (``(B, ...)`` or ``(B, K, ...)``) and the SMC facts written into ``record``."""
        out = x.reshape(self.b, self.k, *x.shape[1:]) if return_particles else self.select(x)
        if record is not None:
            record.update(smc_info(self, nfe_per_particle, return_particles))
        return out


def smc_info(system: ParticleSystem, nfe_per_particle: int, return_particles: bool) -> dict:
    """``num_particles``; ``nfe_per_particle`` (score evaluations each particle received: the network is called once
    per step on all ``B * K`` particles, plus the final denoising); ``nfe_per_sample`` = ``nfe_per_particle * K``
    (network evaluations spent per returned sample, i.e. per group); ``ess`` ``(n, B)`` after each reweighting (``n``
    = steps + 1, the initial weighting first); ``resampled`` ``(steps, B)`` bool and ``num_resampling`` ``(B,)``;
    ``log_weights`` ``(B, K)`` (normalized) when the particles are returned."""
    resampled = torch.stack(system.resampled) if system.resampled else torch.zeros(0, system.b, dtype=torch.bool)
    info = {"num_particles": system.k, "nfe_per_particle": nfe_per_particle,
            "nfe_per_sample": nfe_per_particle * system.k, "ess": torch.stack(system.ess_trace),
            "resampled": resampled, "num_resampling": resampled.sum(0)}
    if return_particles:
        info["log_weights"] = system.log_w
    return info


# --- settings and hooks ----------------------------------------------------------------------------------------------
def check_smc_settings(num_particles, ess_threshold, return_particles) -> dict:
    """Validate the options every particle sampler shares; returns them."""
    num_particles = check_count("num_particles", num_particles)
    check_positive("ess_threshold", ess_threshold)
    if ess_threshold > 1:
        raise ValueError(f"ess_threshold must be in (0, 1] (resample when ESS < ess_threshold * num_particles), got "
                         f"{ess_threshold!r}")
    if not isinstance(return_particles, bool):
        raise ValueError(f"return_particles must be True or False, got {return_particles!r}")
    return dict(num_particles=num_particles, ess_threshold=float(ess_threshold), return_particles=return_particles)


def check_x_T_particles(x_T_particles, shape: tuple[int, ...] | None, num_particles: int) -> None:
    """``x_T_particles`` must be None or a tensor ``(B, K, *event)`` matching ``shape = (B, *event)`` and ``K``."""
    if x_T_particles is None:
        return
    if not isinstance(x_T_particles, torch.Tensor):
        raise TypeError(f"x_T_particles must be a torch.Tensor (B, num_particles, *event), got "
                        f"{type(x_T_particles).__name__}")
    want = None if shape is None else (shape[0], num_particles, *shape[1:])
    if (want is not None and tuple(x_T_particles.shape) != want) or x_T_particles.ndim < 3 or \
            x_T_particles.shape[1] != num_particles:
        raise ValueError(f"x_T_particles must have shape (B, num_particles, *event) = {want or '(B, K, ...)'}, got "
                         f"{tuple(x_T_particles.shape)}")


def check_no_projection(condition: Condition | None, sampler: str) -> None:
    """Particle samplers weight their own observation: a projection hook (replacement) would break the weights.
    Score wrappers (guidance) compose: they change the prior the particles target."""
    parts = condition.conditions if isinstance(condition, Compose) else [condition]
    for c in parts:
        if c is None:
            continue
        hooks = [h for h in ("project", "project_mean", "project_ode", "finalize")
                 if getattr(type(c), h) is not getattr(Condition, h)]
        if hooks:
            raise ValueError(f"sampler={sampler!r} conditions through its own observation= and weights; a condition "
                             f"with projection hooks ({type(c).__name__}.{hooks[0]}) cannot be combined with it")


def end_step(callback: Callable | None, i: int, t: float, x: torch.Tensor) -> torch.Tensor:
    """The callback rule after step ``i`` on the particles ``(B * K, ...)``; returns what the next step uses."""
    return x if callback is None else apply_callback(callback, i, torch.tensor(t, dtype=x.dtype), x)


def batch_times(times: Sequence[float], n: int, like: torch.Tensor) -> torch.Tensor:
    """``(len(times), n)`` time rows built once per run (row ``i`` is the score's ``t`` at grid point ``i``)."""
    return torch.tensor(list(times), dtype=like.dtype, device=like.device)[:, None].expand(-1, n).contiguous()


def check_observation(observation, shape: tuple[int, ...] | None, sampler: str, need_svd: bool) -> float:
    """Validate an ``Observation(operator, y, sigma_y)`` against ``shape = (B, *event)``; returns ``sigma_y``.

    Raises:
        TypeError: not an observation (``operator``, ``y``, ``sigma_y``) or an operator without ``forward``.
        ValueError: ``sigma_y < 0``; ``operator.in_shape`` unlike the event shape; ``y`` not ``(B or 1, *out_shape)``;
            an operator without an SVD when ``need_svd``; a per-sample operator (``batch_size`` set).
    """
    if not all(hasattr(observation, k) for k in ("operator", "y", "sigma_y")):
        raise TypeError(f"observation must be an Observation(operator, y, sigma_y), got {type(observation).__name__}")
    op, y, sigma_y = observation.operator, observation.y, observation.sigma_y
    if not all(hasattr(op, k) for k in ("forward", "in_shape", "out_shape")):
        raise TypeError(f"observation.operator must be a LinearOperator (forward, in_shape, out_shape), got "
                        f"{type(op).__name__}")
    sigma_y = float(sigma_y) if isinstance(sigma_y, torch.Tensor) and sigma_y.numel() == 1 else sigma_y
    check_positive("observation.sigma_y", sigma_y, allow_zero=True)
    if getattr(op, "batch_size", None) is not None:
        raise ValueError(f"sampler={sampler!r} runs B * K particles through the operator; a per-sample operator "
                         f"(batch_size={op.batch_size}) cannot take them: use one operator for every sample")
    if need_svd and getattr(op, "svd", None) is None:
        raise ValueError(f"sampler={sampler!r} works in the operator's singular basis, but observation.operator "
                         f"({type(op).__name__}) has no SVD (svd is None); use an operator with one, or sampler 'tds'")
    if shape is not None and tuple(op.in_shape) != tuple(shape[1:]):
        raise ValueError(f"observation.operator.in_shape {tuple(op.in_shape)} disagrees with the sample's event shape "
                         f"{tuple(shape[1:])} (shape={tuple(shape)})")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"observation.y must be a torch.Tensor (B or 1, *out_shape), got {type(y).__name__}")
    batch = None if shape is None else shape[0]
    if tuple(y.shape[1:]) != tuple(op.out_shape) or y.ndim < 1 or (batch is not None and y.shape[0] not in (1, batch)):
        want = f"({'B' if batch is None else batch} or 1, *{tuple(op.out_shape)})"
        raise ValueError(f"observation.y must have shape {want}, got {tuple(y.shape)}")
    return float(sigma_y)


def run_particle_sampler(name: str, loop: Callable, settings: dict, score_fn: Callable, sde: SDE,
                         shape: tuple[int, ...], *, steps: int, eps: float | None, denoise: bool, x_T, generator,
                         dtype: torch.dtype, device, progress, callback) -> tuple[torch.Tensor, dict]:
    """What ``scorekit.sample`` does around a loop, for the particle samplers' direct entry points: checks, the prior
    draw, counted score calls in the model's dtype, the finiteness guard, the callback rule; returns ``(x, info)``."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a scorekit SDE (VPSDE, SubVPSDE, VESDE), got {type(sde).__name__}")
    check_count("steps", steps)
    eps = sde.sampling_eps if eps is None else eps
    check_positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be smaller than sde.T={sde.T}, got {eps}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(i, t, x), got {type(callback).__name__}")
    state_dtype = compute_dtype(dtype)
    if x_T is None:
        x = sde.prior_sampling(shape, generator=generator, dtype=state_dtype, device=device)
    elif not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != tuple(shape):
        raise ValueError(f"x_T must be a tensor of shape {tuple(shape)}, got "
                         f"{tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__}")
    else:
        x = x_T.to(dtype=state_dtype, device=device)
    counted = CountedScore(score_fn, model_dtype=dtype)
    guard = counted.guard.start(name, uniform_grid(sde, steps, eps))

    def hook(i, t, x_):
        guard.end_step(x_, i)
        return apply_callback(callback, i, t, x_)

    record: dict = {}
    with torch.no_grad():
        try:
            x = loop(x, score_fn=counted, sde=sde, eps=eps, generator=generator, condition=None, progress=progress,
                     callback=hook, steps=steps, denoise=denoise, record=record, **settings)
        except Exception:
            guard.check()  # a non-finite score behind a failure is reported as such
            raise
    guard.end_step(x, None)
    guard.check()
    return x.to(dtype), {"nfe": counted.nfe, "sampler": name, "steps": steps, "eps": eps, "denoise": denoise,
                         **settings, **record}
