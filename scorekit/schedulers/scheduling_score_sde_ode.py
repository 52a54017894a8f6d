"""Probability-flow ODE scheduler for score SDEs (Song et al. 2021, eq. 13) in diffusers form."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401  (diffusers' loader looks it up here)

from ..samplers.ddim import ddim_step
from ..samplers.kernels import pf_ode_drift
from ..samplers.ode import euler_update, heun_update
from ..samplers.options import ADAPTIVE_METHODS, FIXED_METHODS, ODEOptions, SamplerOptions
from ..samplers.registry import REGISTRY, get_spec
from ..utils import batch_time, check_choice
from .few_step import FewStepSchedulerMixin, heun_stage_times
from .scheduling_score_sde_base import ScoreSDESchedulerBase, ScoreSDESchedulerOutput


def ode_solvers() -> tuple[str, ...]:
    """The ``solver`` values: the PF-ODE methods and every registered sampler this scheduler configures."""
    named = [n for n, spec in REGISTRY.items() if spec.scheduler == "ScoreSDEODEScheduler" and n != "ode"]
    return (*FIXED_METHODS, *ADAPTIVE_METHODS, *named)


def solver_options(config) -> SamplerOptions:
    """The validated sampler options a scheduler config selects (``solver`` plus the settings it has)."""
    if config["solver"] in FIXED_METHODS + ADAPTIVE_METHODS:
        return ODEOptions(method=config["solver"], rtol=config["rtol"], atol=config["atol"])
    cls = get_spec(config["solver"]).options
    return cls(**{k: config[k] for k in cls.option_names() if k in config and k != "timesteps"})


def __getattr__(name):  # SOLVERS: every value of ``solver``, read live from the registry
    if name == "SOLVERS":
        return ode_solvers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ScoreSDEODEScheduler(FewStepSchedulerMixin, ScoreSDESchedulerBase):
    """Sampling through the probability-flow ODE: DPM-Solver++ (the default: 2M on the half-log-SNR grid), its SDE
    variant, EDM Heun, Euler, Heun or DDIM steps, or an adaptive solve.

    ``step`` supports the samplers the registry marks ``has_step`` (``scorekit.samplers.registry``); Heun is second
    order and takes two model calls per step, so its ``timesteps`` repeat each inner time (like diffusers'
    ``HeunDiscreteScheduler``). Adaptive solvers (``solver="dopri5"`` and friends), the singlestep DPM-Solver++ and
    the adaptive exponential integrator run only through the pipeline / ``scorekit.sample``, which own the model.
    The few-step solvers' ``step`` is described in :mod:`scorekit.schedulers.few_step`. Every setting is validated
    by the sampler's options class (``self.options``), the one ``scorekit.sample`` uses.

    Args:
        sde_type, beta_min, beta_max, sigma_min, sigma_max, num_train_timesteps, sampling_eps, prediction_type,
            data_range: as in :class:`ScoreSDEPCScheduler`.
        solver: ``"dpmsolver++"``, ``"sde-dpmsolver++"``, ``"edm-heun"``, ``"dpmsolver++-singlestep"``,
            ``"dpmsolver-adaptive"`` (see ``scorekit.samplers``), ``"euler"``, ``"heun"``, ``"ddim"``, or an adaptive
            method (``"dopri5"``, ``"scipy_RK45"``, ...).
        order: order of the DPM-Solver++ family (``scorekit.sample``'s ``order``).
        time_grid: ``"uniform"``, ``"logsnr"`` or ``"karras"`` for the few-step solvers; ``None``: the solver's own
            default (``"logsnr"``; ``"karras"`` for EDM Heun).
        rho: exponent of the ``"karras"`` grid.
        s_churn, s_noise, s_tmin, s_tmax: EDM's churn settings (``"edm-heun"``; ``s_churn = 0``: no churn).
        eta: DDIM stochasticity (0 = deterministic, the PF-ODE's DDIM discretization).
        rtol, atol: tolerances of an adaptive solve.
        denoise: finish with Tweedie's denoising step at ``sampling_eps`` (one extra model call).
        discretization: ``"continuous"`` or ``"discrete"`` (DDIM on DDPM's integer timesteps with the config's
            ``timestep_spacing``, ``steps_offset`` and ``set_alpha_to_one``: ``DDIMPipeline``'s steps; only
            ``solver="ddim"``).
        clip_sample: clip the denoised estimate to ``data_range`` in each step (off: the paper does not clip).
        beta_schedule, trained_betas, rescale_betas_zero_snr: a VP model's discrete schedule, as in
            :class:`ScoreSDEPCScheduler`.
        use_clipped_model_output: with ``clip_sample``, step with the score of the clipped x0 (``True``: diffusers'
            DDIM with ``use_clipped_model_output=True``, and every other solver), or (``False``, DDIM on the discrete
            timesteps only) keep the model's own epsilon for the direction term, as ``DDIMPipeline`` does by default.
    """

    @register_to_config
    def __init__(
        self,
        sde_type: str = "vp",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        num_train_timesteps: int = 1000,
        sampling_eps: float | None = None,
        prediction_type: str = "epsilon",
        data_range: tuple[float, float] | None = None,
        solver: str = "dpmsolver++",
        eta: float = 0.0,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        denoise: bool = True,
        order: int = 2,
        time_grid: str | None = None,
        rho: float = 7.0,
        discretization: str = "continuous",
        clip_sample: bool = False,
        beta_schedule: str = "linear",
        trained_betas: list[float] | None = None,
        rescale_betas_zero_snr: bool = False,
        use_clipped_model_output: bool = True,
        s_churn: float = 0.0,
        s_noise: float = 1.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
    ):
        self._setup(sde_type, beta_min, beta_max, sigma_min, sigma_max, num_train_timesteps, sampling_eps,
                    prediction_type, data_range, beta_schedule, trained_betas, rescale_betas_zero_snr)
        check_choice("solver", solver, ode_solvers())
        self.options = solver_options(self.config)
        self._setup_discretization(discretization, "fixed_large", clip_sample, use_clipped_model_output)
        if discretization == "discrete" and solver != "ddim":
            raise ValueError(f"discretization='discrete' needs solver='ddim', got solver={solver!r}")
        if clip_sample and not use_clipped_model_output and discretization != "discrete":
            raise ValueError("use_clipped_model_output=False (x0 clipped, the model's own epsilon kept: diffusers' "
                             "DDIMPipeline default) is a DDIM step on diffusers' timesteps: use solver='ddim', "
                             "discretization='discrete'; the continuous samplers clip through the score "
                             "(use_clipped_model_output=True)")
        self._heun_state = None

    _ddim_rule = True

    @property
    def order(self) -> int:
        return 2 if self.config.solver in ("heun", "edm-heun") else 1

    @property
    def spec(self):
        """The registry entry of the configured sampler."""
        return get_spec(self.options.name)

    def _stage_times(self) -> torch.Tensor:
        if self.config.solver == "heun":  # an Euler stage then a correction stage per step
            return heun_stage_times(self._t_grid)
        return self._t_grid[:-1]

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps=None):
        """Set the grid: ``num_inference_steps`` steps on the configured grid, or the user's ``timesteps``
        (strictly decreasing times in ``[sampling_eps, T]``)."""
        if not self.spec.has_step or self.options.adaptive:
            steppable = [s for s in ode_solvers() if s in FIXED_METHODS or (s in REGISTRY and REGISTRY[s].has_step)]
            raise ValueError(f"solver={self.config.solver!r} has no step() form (it is adaptive, or singlestep); use "
                             f"the pipeline or scorekit.sample, or one of {steppable} for step()")
        if self.options.name in ("ode", "ddim"):
            return super().set_timesteps(num_inference_steps, device, timesteps)
        return self._few_step_set_timesteps(num_inference_steps, device, timesteps)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> ScoreSDESchedulerOutput | tuple:
        """One solver stage given the raw model output at ``(sample, timestep)``; see the class docstring."""
        if self.options.name not in ("ode", "ddim"):
            return self._output(*self._few_step_step(model_output, sample, generator), return_dict, sample)
        score_fn, t = self._step_inputs(model_output, timestep, sample)
        like, sample = sample, sample.to(t.dtype)  # the step runs in the compute dtype, its output in sample's
        if self._heun_state is not None:  # Heun correction stage (trapezoid of the two drifts)
            x0, d0, t0 = self._heun_state
            self._heun_state = None
            x = heun_update(x0, d0, pf_ode_drift(sample, t, score_fn, self.sde), t0, t)
            return self._output(x, x, return_dict, like)
        t_next = batch_time(self.next_timestep(timestep), sample.shape[0], sample)
        if self.config.solver == "ddim":
            if self._table is None:
                return self._output(*ddim_step(sample, t, t_next, score_fn, self.step_sde, generator,
                                               eta=self.config.eta), return_dict, like)
            x0 = self._step_denoised(model_output, t, sample)  # diffusers' x0 (Tweedie's is 0 / 0 at alpha = 0)
            x, _ = ddim_step(sample, t, t_next, score_fn, self.step_sde, generator, eta=self.config.eta, x0=x0)
            # DDIMPipeline returns the last step's sample: it is not clean data with "trailing" spacing or
            # set_alpha_to_one=False (they end on alpha_bar_0)
            return self._output(x, x, return_dict, like)
        d = pf_ode_drift(sample, t, score_fn, self.sde)
        x = euler_update(sample, d, t, t_next)  # Euler step of eq. 13
        if self.config.solver == "heun":
            self._heun_state = (sample, d, t)
        return self._output(x, x, return_dict, like)

    def sample_kwargs(self) -> dict[str, Any]:
        return {"sampler": self.options.name, "denoise": self.config.denoise,
                **{k: v for k, v in self.options.as_dict().items() if v is not None}}
