"""The functional front door: ``x, info = scorekit.sample(score_fn, sde, shape, sampler=..., **options)``.

It picks the sampler's :class:`~scorekit.samplers.registry.SamplerSpec`, validates its options (exactly the
sampler's own settings are accepted besides the common arguments), builds the time grid and the start state, wraps
the score (counting, dtype policy, finiteness guard, conditioning) and runs the sampler's loop. The samplers
themselves live in :mod:`scorekit.samplers`, one module per family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .conditioning.base import Condition, find_condition
from .numerics import CountedScore, compute_dtype
from .samplers.base import RunContext
from .samplers.grids import build_grid, start_state, steps_of_timesteps
from .samplers.options import SamplerOptions
from .samplers.registry import REGISTRY, SamplerSpec, get_spec, load_condition, load_loop
from .sde import SDE
from .utils import check_positive

COMMON_ARGUMENTS = ("steps", "denoise", "eps", "x_T", "condition", "generator", "dtype", "device", "progress",
                    "callback")


def __getattr__(name):  # SAMPLERS: the registered names, read live (a sampler registered later is included)
    if name == "SAMPLERS":
        return tuple(REGISTRY)
    raise AttributeError(f"module 'scorekit.sampling' has no attribute {name!r}")


def resolve_options(sampler: str | SamplerOptions, options: dict[str, Any]) -> tuple[SamplerSpec, SamplerOptions]:
    """The spec and validated options of ``sampler`` (a registered name with ``options``, or an options object).

    Raises:
        ValueError: an unknown sampler, a setting that is not the sampler's (naming it and listing the settings),
            or a value the sampler does not accept.
    """
    if isinstance(sampler, SamplerOptions):
        if options:
            raise ValueError(f"sampler is an options object ({type(sampler).__name__}); pass its settings there, "
                             f"not as keyword arguments {sorted(options)}")
        return get_spec(sampler.name), sampler
    spec = get_spec(sampler)
    return spec, spec.options.from_kwargs(options)


def sample(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sde: SDE,
    shape: tuple[int, ...],
    sampler: str | SamplerOptions = "pc",
    *,
    steps: int | None = None,
    denoise: bool = True,
    eps: float | None = None,
    x_T: torch.Tensor | None = None,
    condition: Condition | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    progress: bool | Callable[[Iterable], Iterable] = False,
    callback: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
    **options: Any,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Draw samples from the reverse process of ``sde`` driven by ``score_fn``.

    Args:
        score_fn: ``score_fn(x, t) -> score``; ``x`` of ``shape``, ``t`` of shape ``(B,)``.
        sde: a :class:`~scorekit.sde.SDE` (VP, sub-VP or VE).
        shape: ``(B, ...)``, any number of dims (2-D toy data or ``(B, C, H, W)`` images).
        sampler: a registered name (``scorekit.samplers.REGISTRY``: ``"pc"``, ``"ode"``, ``"ddim"``, ``"ald"``,
            ``"dpmsolver++"``, ``"dpmsolver++-singlestep"``, ``"sde-dpmsolver++"``, ``"edm-heun"``,
            ``"dpmsolver-adaptive"``, ``"ddrm"``, ``"tds"``, ``"mcgdiff"``) or an options object
            (``scorekit.samplers.options``), e.g. ``EDMHeunOptions(s_churn=10)``. ``"ddrm"``, ``"tds"`` and
            ``"mcgdiff"`` need ``condition=DDRM(observation)``, ``TDS(observation)``, ``MCGdiff(observation)``
            (``scorekit.conditioning``), and each such condition needs its sampler.
        steps: the number of intervals of the time grid from its first time to ``eps`` (``len(timesteps) - 1``
            for a user grid), the same for every grid sampler; what one interval costs is in the README's sampler
            table (``dpmsolver++-singlestep``: one evaluation, as diffusers' ``num_inference_steps``). ``"ald"``:
            the number of noise levels. Adaptive solvers choose their own steps and do not use it. ``None``: the
            sampler's ``default_steps``.
        denoise: finish with the noise-free output: Tweedie's denoising at the final time (one extra NFE) or, for PC
            and ALD, the last step's noise-free mean (no extra NFE).
        eps: final time; defaults to ``sde.sampling_eps``.
        x_T: the start state at the grid's first time, instead of a draw (see
            :func:`scorekit.samplers.grids.start_state`: the prior at ``T``, ``N(0, std(t_0)^2 I)`` below it); for a
            particle sampler ``shape`` (repeated for each of the ``K`` particles) or ``(B, K, ...)``.
        condition: a :class:`~scorekit.conditioning.Condition` (guidance, inpainting, colorization, an inverse
            problem's method, composed).
        generator: the ``torch.Generator`` every random draw uses (on any device: draws are made on its device and
            moved), or a list of ``B`` generators, one per sample: a sample then does not depend on its batch-mates
            (adaptive solvers excepted: their steps follow the whole batch's error).
        dtype: the model's dtype: ``score_fn`` is called with ``x`` in it and the samples are returned in it. The
            start draw, the time grid, the SDE coefficients and the solver state are in float32 (float64 when
            ``dtype`` is float64), whatever ``dtype`` is (the numeric policy of :mod:`scorekit.numerics`).
        progress: ``True`` for a tqdm bar, or a callable wrapping the step range (a pipeline's progress bar).
        callback: ``callback(i, t, x)`` after every step ``i``, including the last; ``t`` is the step's end time as
            a 0-dim tensor in the compute dtype; ``x`` is what the next step uses and a returned tensor replaces it
            (see :mod:`scorekit.numerics`). Adaptive torchdiffeq / scipy solves do not call it.
        **options: the settings of ``sampler`` (its options class; ``scorekit.samplers.options``): any other key is
            a ValueError naming the sampler and listing its settings.

    Returns:
        ``(x, info)``: samples of ``shape`` (in ``dtype``; ``(B, K, ...)`` for a particle sampler with
        ``return_particles=True``) and a dict with the same keys for every sampler: ``nfe`` (score evaluations the
        run truly cost: calls of ``score_fn``, each on the whole batch; for a particle sampler, whose batch is the
        ``B * K`` particles, that is the NFE per particle), ``sampler``, ``steps`` (grid intervals, or the accepted
        steps of an adaptive DPM-Solver; ``None`` for a torchdiffeq / scipy solve), ``eps``, ``denoise``,
        ``callback_steps`` (callback calls made), ``options`` (every setting of the sampler, as run) and
        ``particles``: ``None``, or for a particle sampler ``num_particles``, ``nfe_per_particle``,
        ``nfe_per_sample`` (``K * nfe``: the network evaluations one returned sample cost), the ESS trace ``ess``
        ``(steps + 1, B)``, ``resampled`` ``(steps, B)``, ``num_resampling`` ``(B,)`` and, with
        ``return_particles``, ``log_weights`` ``(B, K)``.

    Raises:
        ValueError: on invalid arguments (before any work), or when a non-finite value appears: the message names
            the step and its time, or the model when its output was non-finite first.
    """
    spec, opts = resolve_options(sampler, options)
    _check_common(sde, dtype, callback)
    shape = _check_shape(shape)
    steps = steps_of_timesteps(getattr(opts, "timesteps", None), steps)
    steps = spec.default_steps if steps is None else steps
    check_positive("steps", steps, integer=True)
    eps = check_eps(sde, eps)
    _check_x_T(x_T, shape, spec, opts)
    if condition is not None and not isinstance(condition, Condition):
        raise TypeError(f"condition must be a scorekit Condition, got {type(condition).__name__}")
    problem = check_sampler_condition(spec, condition)
    if problem is not None and hasattr(problem, "check_run"):
        problem.check_run(condition, shape, opts)  # the sampler's own problem against the B samples asked for
    condition = condition if condition is not None else Condition()
    grid = build_grid(spec.grid, opts, sde, steps, eps)
    state_dtype = compute_dtype(dtype)  # numeric policy: grid, coefficients and state in float32 / float64
    shape, generator, x_T = _particles(spec, opts, shape, generator, x_T)
    x = start_state(sde, sde.T if grid is None else float(grid.t[0]), x_T, shape, generator, state_dtype, device)
    condition.bind(sde, x, generator)
    counted = CountedScore(score_fn, model_dtype=dtype)
    ctx = RunContext(condition.wrap_score(counted), sde, eps, generator, condition, denoise,
                     counted.guard.start(*_guard_names(spec, opts, grid, sde, eps)), callback, progress,
                     None if grid is None else grid.t.to(dtype=state_dtype, device=x.device))
    with torch.no_grad():  # no autograd graph across steps; guidance takes its gradient under enable_grad itself
        try:
            x = condition.finalize(load_loop(spec)(x, ctx, grid, opts))
        except Exception:
            counted.guard.check()  # a non-finite score behind a solver failure is reported as such
            raise
    taken = steps if grid is not None else counted.guard.steps_taken
    counted.guard.end_step(x, None)
    counted.guard.check()
    info = {"nfe": counted.nfe, "sampler": spec.name, "steps": taken, "eps": eps, "denoise": denoise,
            "callback_steps": ctx.callback_steps, "options": opts.as_dict(),
            "particles": _particle_info(spec, opts, ctx, counted.nfe)}
    return x.to(dtype), info


def check_eps(sde: SDE, eps: float | None) -> float:
    """The final time: ``sde.sampling_eps`` when ``None``; a ValueError unless ``0 < eps < sde.T``."""
    eps = sde.sampling_eps if eps is None else eps
    check_positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be smaller than sde.T={sde.T}, got {eps}")
    return eps


def check_sampler_condition(spec: SamplerSpec, condition: Condition | None) -> Condition | None:
    """A sampler that reads its problem from a condition of its own (the registry's ``condition``: ``ddrm`` and
    ``DDRM``, ``tds`` and ``TDS``, ``mcgdiff`` and ``MCGdiff``) gets one, alone or in a ``Compose``; such a condition
    goes to that sampler only. Returns that condition (``None`` for a sampler without one).

    Raises:
        ValueError: naming the sampler and the condition, for either mismatch.
    """
    problem = None
    for other in REGISTRY.values():
        kind = load_condition(other)
        found = None if kind is None or condition is None else find_condition(condition, kind)
        if other is spec and kind is not None and found is None:
            got = "no condition" if condition is None else f"condition={type(condition).__name__}"
            raise ValueError(f"sampler={spec.name!r} needs condition={kind.__name__}(...) "
                             f"(scorekit.conditioning.{kind.__name__}, alone or in a Compose), got {got}")
        if other is not spec and found is not None:
            raise ValueError(f"condition={kind.__name__} runs as a sampler of its own: pass sampler={other.name!r}, "
                             f"not sampler={spec.name!r} (or give sampler={spec.name!r} another condition)")
        problem = found if other is spec else problem
    return problem


def _check_common(sde, dtype, callback) -> None:
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(i, t, x), got {type(callback).__name__}")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a scorekit SDE (VPSDE, SubVPSDE, VESDE), got {type(sde).__name__}")


def _check_x_T(x_T, shape: tuple[int, ...], spec: SamplerSpec, opts: SamplerOptions) -> None:
    """``x_T`` is ``None`` or a tensor of ``shape``; for a particle sampler also ``(B, K, ...)``, one per particle."""
    if x_T is None:
        return
    if not isinstance(x_T, torch.Tensor):
        raise TypeError(f"x_T must be a torch.Tensor of shape {shape}, got {type(x_T).__name__}")
    if tuple(x_T.shape) == shape:
        return
    if spec.particles is None:
        raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={shape}")
    per_particle = (shape[0], getattr(opts, spec.particles), *shape[1:])
    if tuple(x_T.shape) != per_particle:
        raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={shape}; sampler={spec.name!r} takes x_T of "
                         f"shape {shape} (repeated for each of the {spec.particles}={per_particle[1]} particles) or "
                         f"{per_particle} (one per particle)")


def _particles(spec: SamplerSpec, opts: SamplerOptions, shape, generator, x_T):
    """For a particle sampler, the run's shape ``(B * K, ...)``, a generator list repeated per particle and ``x_T``
    repeated per particle (or, given as ``(B, K, ...)``, one per particle); other samplers: unchanged."""
    if spec.particles is None:
        return shape, generator, x_T
    k = getattr(opts, spec.particles)
    if isinstance(generator, (list, tuple)):
        generator = [g for g in generator for _ in range(k)]
    if x_T is not None:
        x_T = x_T.repeat_interleave(k, dim=0) if tuple(x_T.shape) == shape else x_T.reshape(-1, *shape[1:])
    return (shape[0] * k, *shape[1:]), generator, x_T


def _particle_info(spec: SamplerSpec, opts: SamplerOptions, ctx: RunContext, nfe: int) -> dict[str, Any] | None:
    """``info["particles"]`` of a particle sampler (``None`` for the others): ``num_particles`` K,
    ``nfe_per_particle`` (= ``info["nfe"]``: each score call evaluates all ``B * K`` particles once),
    ``nfe_per_sample`` (``K * nfe``: the network evaluations one returned sample cost), then what the loop reports
    (``ctx.particle_info``: the ESS trace, the resampling steps, the log-weights of returned particles)."""
    if spec.particles is None:
        return None
    k = getattr(opts, spec.particles)
    return {"num_particles": k, "nfe_per_particle": nfe, "nfe_per_sample": k * nfe, **ctx.particle_info}


def _guard_names(spec: SamplerSpec, opts: SamplerOptions, grid, sde: SDE, eps: float):
    """What the finiteness guard's messages name: the sampler and the grid's host times (ALD: each level is a step),
    or for a solve that chooses its own steps, the solve and its interval."""
    if grid is not None:
        times = grid.t.tolist()
        return spec.name, times + times[-1:] if spec.grid == "levels" else times
    method = getattr(opts, "method", None)
    what = spec.name if method is None else f"adaptive PF-ODE solve ({method})"
    return f"{what} (from t={sde.T:.4g} to t={eps:.4g})", None


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ValueError(f"shape must be a tuple of ints (batch, ...), got {shape!r}")
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (batch, ...) with at least 2 positive dims, got {shape}")
    return tuple(shape)
