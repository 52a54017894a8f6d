"""The functional front door: ``x, info = scorekit.sample(score_fn, sde, shape, sampler=...)``.

Samplers: ``"pc"`` (predictor-corrector, Algorithm 1 of Song et al. 2021), ``"ode"`` (probability-flow ODE, eq. 13,
fixed-step or adaptive), ``"ddim"`` and ``"ald"`` (NCSN annealed Langevin dynamics, i.e. corrector-only PC with the
NCSN step size). ``info["nfe"]`` is the number of score evaluations the run truly cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch

from .conditioning.base import Condition
from .numerics import CountedScore, compute_dtype
from .samplers import FEW_STEP_DEFAULT_STEPS, FEW_STEP_SAMPLERS, check_timesteps, few_step_settings, steps_of_timesteps
from .samplers.ald import ald_sampler
from .samplers.base import StepHook
from .samplers.ddim import ddim_sampler
from .samplers.grids import time_grid
from .samplers.ode import ADAPTIVE_METHODS, FIXED_METHODS, ode_sampler
from .samplers.pc import PREDICTOR_ALIASES, pc_sampler, resolve_corrector, resolve_predictor
from .sde import SDE
from .utils import check_choice, check_positive

SAMPLERS = ("pc", "ode", "ddim", "ald", *FEW_STEP_SAMPLERS)
DEFAULT_STEPS = {"pc": 1000, "ode": 100, "ddim": 100, "ald": 100, **FEW_STEP_DEFAULT_STEPS}


def sample(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sde: SDE,
    shape: tuple[int, ...],
    sampler: str = "pc",
    *,
    steps: int | None = None,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_corrector_steps: int = 1,
    probability_flow: bool = False,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eta: float = 0.0,
    step_size: float = 2e-5,
    denoise: bool = True,
    eps: float | None = None,
    x_T: torch.Tensor | None = None,
    condition: Condition | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    progress: bool | Callable[[Iterable], Iterable] = False,
    callback: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
    order: int | None = None,
    time_grid: str | None = None,
    timesteps: Iterable[float] | torch.Tensor | None = None,
    rho: float = 7.0,
    s_churn: float = 0.0,
    s_noise: float = 1.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Draw samples from the reverse process of ``sde`` driven by ``score_fn``.

    Args:
        score_fn: ``score_fn(x, t) -> score``; ``x`` of ``shape``, ``t`` of shape ``(B,)``.
        sde: a :class:`~scorekit.sde.SDE` (VP, sub-VP or VE).
        shape: ``(B, ...)``, any number of dims (2-D toy data or ``(B, C, H, W)`` images).
        sampler: ``"pc"``, ``"ode"``, ``"ddim"``, ``"ald"``, or a few-step sampler: ``"dpmsolver++"``,
            ``"dpmsolver++-singlestep"``, ``"sde-dpmsolver++"``, ``"edm-heun"``, ``"dpmsolver-adaptive"``.
        steps: number of time steps (``"pc"``/``"ddim"``/fixed-step ``"ode"``) or noise levels (``"ald"``).
        predictor: ``"euler_maruyama"``, ``"reverse_diffusion"``, ``"ancestral_sampling"`` or ``"none"`` (``"pc"``).
        corrector: ``"langevin"``, ``"ald"`` or ``"none"`` (``"pc"``).
        snr: signal-to-noise ratio of the corrector (Algorithms 4-5), > 0.
        n_corrector_steps: corrector steps per time step (``"pc"``) or Langevin steps per level (``"ald"``).
        probability_flow: run the PC predictor on the probability-flow ODE instead of the reverse SDE.
        method: ODE solver for ``"ode"``: ``"euler"``, ``"heun"`` (fixed ``steps``), ``"dopri5"`` and the other
            torchdiffeq adaptive methods, or ``"scipy_RK45"`` (the paper's solver).
        rtol, atol: tolerances of the adaptive ODE solve.
        eta: DDIM stochasticity, >= 0 (0 = the PF-ODE's DDIM discretization).
        step_size: NCSN's ``eps`` for ``"ald"``: the step at level i is ``step_size * std_i^2 / std_L^2``.
        denoise: return the noise-free mean of the last step (PC, ALD; no extra NFE; with ``predictor="none"``
            the mean of the last corrector step) or apply Tweedie's formula at the final time (ODE, DDIM; one
            extra NFE).
        eps: final time; defaults to ``sde.sampling_eps``.
        x_T: start from this tensor instead of a prior draw.
        condition: a :class:`~scorekit.conditioning.Condition` (guidance, inpainting, colorization, composed).
        generator: the ``torch.Generator`` every random draw uses (on any device: draws are made on its device and
            moved), or a list of ``B`` generators, one per sample.
        dtype: the model's dtype: ``score_fn`` is called with ``x`` in it and the samples are returned in it. The
            prior draw, the time grid, the SDE coefficients and the solver state are in float32 (float64 when
            ``dtype`` is float64), whatever ``dtype`` is (the numeric policy of :mod:`scorekit.numerics`).
        progress: ``True`` for a tqdm bar, or a callable wrapping the step iterable (a pipeline's progress bar).
        callback: ``callback(i, t, x)`` after every step ``i`` of a fixed-step sampler, including the last; ``x`` is
            what the next step uses (after the last step: the output, i.e. the noise-free mean for PC / ALD with
            ``denoise``, or the input of the final Tweedie denoising for ODE / DDIM) and a returned tensor replaces
            it. Adaptive ODE solvers do not call it (see :mod:`scorekit.numerics`).
        order: solver order of the few-step samplers: ``"dpmsolver++"`` 1 (= DDIM), 2 (2M, default) or 3 (3M);
            ``"dpmsolver++-singlestep"`` 1, 2 (2S) or 3 (3S, default); ``"sde-dpmsolver++"`` 1 (= DDIM with
            eta = 1) or 2; ``"dpmsolver-adaptive"`` 2 (DPM-Solver-12) or 3 (-23, default). See ``scorekit.samplers``.
        time_grid: grid of the few-step samplers: ``"uniform"`` (in t), ``"logsnr"`` (uniform half-log-SNR, the
            DPM-Solver default) or ``"karras"`` (EDM's rho-schedule in sigma, the ``"edm-heun"`` default).
        timesteps: a user grid for the few-step samplers: strictly decreasing times in ``[eps, T]``; sets ``steps``.
        rho: exponent of the ``"karras"`` grid (EDM: 7).
        s_churn, s_noise, s_tmin, s_tmax: EDM's ``S_churn``, ``S_noise``, ``S_tmin``, ``S_tmax`` (``"edm-heun"``;
            ``s_tmin``/``s_tmax`` in units of ``sigma = std / alpha``); ``s_churn = 0`` is the deterministic Heun.

    Returns:
        ``(x, info)``: samples of ``shape`` (in ``dtype``) and a dict with ``nfe``, ``sampler``, ``callback_steps``
        (callback calls made) and the settings used.

    Raises:
        ValueError: on invalid arguments (before any work), or when a non-finite value appears: the message names
            the step, or the model when its output was non-finite first.
    """
    check_choice("sampler", sampler, SAMPLERS)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(i, t, x), got {type(callback).__name__}")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a scorekit SDE (VPSDE, SubVPSDE, VESDE), got {type(sde).__name__}")
    shape = _check_shape(shape)
    steps = steps_of_timesteps(timesteps, steps)
    steps = DEFAULT_STEPS[sampler] if steps is None else steps
    check_positive("steps", steps, integer=True)
    settings = _sampler_settings(sampler, predictor=predictor, corrector=corrector, snr=snr,
                                 n_corrector_steps=n_corrector_steps, probability_flow=probability_flow,
                                 method=method, rtol=rtol, atol=atol, eta=eta, step_size=step_size, order=order,
                                 time_grid=time_grid, timesteps=timesteps, rho=rho, s_churn=s_churn, s_noise=s_noise,
                                 s_tmin=s_tmin, s_tmax=s_tmax)
    eps = sde.sampling_eps if eps is None else eps
    check_positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be smaller than sde.T={sde.T}, got {eps}")
    if timesteps is not None:
        settings["timesteps"] = check_timesteps(timesteps, sde, eps)
    if x_T is not None and not isinstance(x_T, torch.Tensor):
        raise TypeError(f"x_T must be a torch.Tensor of shape {shape}, got {type(x_T).__name__}")
    state_dtype = compute_dtype(dtype)  # numeric policy: grid, coefficients and state in float32 / float64
    if x_T is None:
        x = sde.prior_sampling(shape, generator=generator, dtype=state_dtype, device=device)
    elif tuple(x_T.shape) != shape:
        raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={shape}")
    else:
        x = x_T.to(dtype=state_dtype, device=device)
    condition = condition if condition is not None else Condition()
    if not isinstance(condition, Condition):
        raise TypeError(f"condition must be a scorekit Condition, got {type(condition).__name__}")
    condition.bind(sde, x, generator)
    counted = CountedScore(score_fn, model_dtype=dtype)
    hook = StepHook(counted.guard.start(sampler, _host_times(sde, sampler, steps, eps, settings)), callback)
    run = partial(_SAMPLER_FNS[sampler], score_fn=condition.wrap_score(counted), sde=sde, eps=eps,
                  generator=generator, condition=condition, progress=progress, callback=hook)
    kwargs = dict(steps=steps, denoise=denoise, **settings)
    with torch.no_grad():  # no autograd graph across steps; guidance takes its gradient under enable_grad itself
        try:
            x = condition.finalize(run(x, **kwargs))
        except Exception:
            counted.guard.check()  # a non-finite score behind a solver failure is reported as such
            raise
    counted.guard.end_step(x, None)
    counted.guard.check()
    return x.to(dtype), {"nfe": counted.nfe, "sampler": sampler, "eps": eps, "callback_steps": hook.calls, **kwargs}


def _host_times(sde: SDE, sampler: str, steps: int, eps: float, settings: dict) -> list[float] | None:
    """The grid as host floats (for error messages only; built once per run); ``None`` for adaptive solves."""
    if sampler == "ode" and settings.get("method") not in FIXED_METHODS:
        return None
    if sampler == "ald":
        levels = torch.linspace(sde.T, eps, steps, dtype=torch.float64).tolist()
        return levels + levels[-1:]
    if sampler in ("pc", "ode", "ddim"):
        return time_grid(sde, steps, eps, torch.float64).tolist()
    return None


def _sampler_settings(sampler: str, *, predictor, corrector, snr, n_corrector_steps, probability_flow, method, rtol,
                      atol, eta, step_size, **few_step) -> dict[str, Any]:
    """Validate the chosen sampler's own arguments before any work; returns the settings it runs with."""
    if sampler in FEW_STEP_SAMPLERS:
        return few_step_settings(sampler, rtol=rtol, atol=atol, **few_step)
    given = [k for k in ("order", "time_grid", "timesteps") if few_step.get(k) is not None]
    if given:
        raise ValueError(f"{given[0]}= applies to the few-step samplers {list(FEW_STEP_SAMPLERS)}, not "
                         f"sampler={sampler!r}")
    if sampler == "ode":
        check_choice("method", method, FIXED_METHODS + ADAPTIVE_METHODS)
        check_positive("rtol", rtol)
        check_positive("atol", atol)
        return dict(method=method, rtol=rtol, atol=atol)
    if sampler == "ddim":
        check_positive("eta", eta, allow_zero=True)
        return dict(eta=eta)
    check_positive("n_corrector_steps", n_corrector_steps, integer=True)
    if sampler == "ald":
        check_positive("step_size", step_size)
        return dict(n_corrector_steps=n_corrector_steps, step_size=step_size)
    resolve_predictor(predictor)
    resolve_corrector(corrector)
    check_positive("snr", snr)
    if probability_flow and PREDICTOR_ALIASES.get(predictor, predictor) not in ("euler_maruyama", "reverse_diffusion"):
        raise ValueError(f"probability_flow=True needs predictor 'euler_maruyama' or 'reverse_diffusion', got "
                         f"{predictor!r}")
    return dict(predictor=predictor, corrector=corrector, snr=snr, n_corrector_steps=n_corrector_steps,
                probability_flow=probability_flow)


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ValueError(f"shape must be a tuple of ints (batch, ...), got {shape!r}")
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (batch, ...) with at least 2 positive dims, got {shape}")
    return shape


_SAMPLER_FNS = {"pc": pc_sampler, "ode": ode_sampler, "ddim": ddim_sampler, "ald": ald_sampler, **FEW_STEP_SAMPLERS}
