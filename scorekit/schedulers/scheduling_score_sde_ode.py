"""Probability-flow ODE scheduler for score SDEs (Song et al. 2021, eq. 13) in diffusers form."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401  (diffusers' loader looks it up here)

from ..ddim import ddim_step
from ..ode import ADAPTIVE_METHODS, pf_ode_drift
from ..utils import append_dims, batch_time, check_choice, check_positive
from .scheduling_score_sde_base import ScoreSDESchedulerBase, ScoreSDESchedulerOutput

STEP_SOLVERS = ("euler", "heun", "ddim")


class ScoreSDEODEScheduler(ScoreSDESchedulerBase):
    """Deterministic sampling through the probability-flow ODE: Euler, Heun or DDIM steps, or an adaptive solve.

    ``step`` supports the fixed-step solvers; Heun is second order and takes two model calls per step, so its
    ``timesteps`` repeat each inner time (like diffusers' ``HeunDiscreteScheduler``). Adaptive solvers
    (``solver="dopri5"`` and friends) run only through the pipeline / ``scorekit.sample``, which own the model.

    Args:
        sde_type, beta_min, beta_max, sigma_min, sigma_max, num_train_timesteps, sampling_eps, prediction_type,
            data_range: as in :class:`ScoreSDEPCScheduler`.
        solver: ``"euler"``, ``"heun"``, ``"ddim"``, or an adaptive method (``"dopri5"``, ``"scipy_RK45"``, ...).
        eta: DDIM stochasticity (0 = deterministic, the PF-ODE's DDIM discretization).
        rtol, atol: tolerances of an adaptive solve.
        denoise: finish with Tweedie's denoising step at ``sampling_eps`` (one extra model call).
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
        solver: str = "heun",
        eta: float = 0.0,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        denoise: bool = True,
    ):
        self._setup(sde_type, beta_min, beta_max, sigma_min, sigma_max, num_train_timesteps, sampling_eps,
                    prediction_type, data_range)
        check_choice("solver", solver, STEP_SOLVERS + ADAPTIVE_METHODS)
        check_positive("eta", eta, allow_zero=True)
        check_positive("rtol", rtol)
        check_positive("atol", atol)
        self._heun_state = None

    @property
    def order(self) -> int:
        return 2 if self.config.solver == "heun" else 1

    def _stage_times(self) -> torch.Tensor:
        if self.config.solver == "heun":
            # stage times t_0, t_1, t_1, t_2, t_2, ..., t_n: an Euler stage then a correction stage per step
            return torch.cat([self._t_grid[:1], self._t_grid[1:-1].repeat_interleave(2), self._t_grid[-1:]])
        return self._t_grid[:-1]

    def set_timesteps(self, num_inference_steps: int, device=None):
        if self.config.solver in ADAPTIVE_METHODS:
            raise ValueError(f"solver={self.config.solver!r} is adaptive and has no timesteps; use the pipeline or "
                             f"scorekit.sample, or choose one of {STEP_SOLVERS} for step()")
        super().set_timesteps(num_inference_steps, device)
        self._heun_state = None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> ScoreSDESchedulerOutput | tuple:
        """One solver stage given the raw model output at ``(sample, timestep)``; see the class docstring."""
        score_fn, t = self._step_inputs(model_output, timestep, sample)
        like, sample = sample, sample.to(t.dtype)  # the step runs in the compute dtype, its output in sample's
        if self._heun_state is not None:  # Heun correction stage (trapezoid of the two drifts)
            x0, d0, t0 = self._heun_state
            self._heun_state = None
            x = x0 + 0.5 * (d0 + pf_ode_drift(sample, t, score_fn, self.sde)) * append_dims(t - t0, x0.ndim)
            return self._output(x, x, return_dict, like)
        t_next = batch_time(self.next_timestep(timestep), sample.shape[0], sample)
        if self.config.solver == "ddim":
            return self._output(*ddim_step(sample, t, t_next, score_fn, self.sde, generator, eta=self.config.eta),
                                return_dict, like)
        d = pf_ode_drift(sample, t, score_fn, self.sde)
        x = sample + d * append_dims(t_next - t, sample.ndim)  # Euler step of eq. 13
        if self.config.solver == "heun":
            self._heun_state = (sample, d, t)
        return self._output(x, x, return_dict, like)

    def sample_kwargs(self) -> dict[str, Any]:
        c = self.config
        if c.solver == "ddim":
            return {"sampler": "ddim", "eta": c.eta, "denoise": c.denoise}
        return {"sampler": "ode", "method": c.solver, "rtol": c.rtol, "atol": c.atol, "denoise": c.denoise}
