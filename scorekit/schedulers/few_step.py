"""``step()`` form of the few-step solvers for :class:`ScoreSDEODEScheduler` (diffusers loops, one model call per
``timesteps`` entry).

- ``"dpmsolver++"`` / ``"sde-dpmsolver++"``: ``timesteps`` are the grid times ``t_0 .. t_{n-1}`` and, with
  ``denoise``, ``t_n = eps`` once more, whose step returns the data prediction (the order-1 step to ``sigma = 0``,
  as diffusers' ``final_sigmas_type="zero"``); the solver keeps its previous data predictions.
- ``"edm-heun"``: stage times ``t_0, t_1, t_1, ..., t_{n-1}, t_{n-1}, t_n`` (an Euler stage then a correction, like
  diffusers' ``HeunDiscreteScheduler``), then ``t_n`` once more with ``denoise``.

Same ODE as ``scorekit.sample`` with the same settings; ``step`` returns ``(prev_sample, x0)`` as
``prev_sample`` / ``prev_sample_mean``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..numerics import compute_dtype
from ..samplers import FEW_STEP_SAMPLERS, make_grid
from ..samplers.base import step_order
from ..samplers.dpm_solver import multistep_update, sde_multistep_update
from ..score import output_to_score
from ..utils import append_dims, batch_time, randn_like

STEPPED = ("dpmsolver++", "sde-dpmsolver++", "edm-heun")  # the few-step solvers step() supports
PIPELINE_ONLY = tuple(s for s in FEW_STEP_SAMPLERS if s not in STEPPED)


def heun_stage_times(t: torch.Tensor) -> torch.Tensor:
    """Stage times of a two-stage (Heun) step() loop on the grid ``t``: ``t_0, t_1, t_1, ..., t_{n-1}, t_{n-1}, t_n``
    (an Euler stage, then the correction at the step's end time)."""
    return torch.cat([t[:1], t[1:-1].repeat_interleave(2), t[-1:]])


class FewStepSchedulerMixin:
    """Grid, state and ``step`` of the few-step solvers (expects ``self.sde``, ``self.config`` of the scheduler)."""

    def _few_step_set_timesteps(self, num_inference_steps: int | None, device, timesteps=None) -> None:
        c = self.config
        grid_name = c.time_grid or ("karras" if c.solver == "edm-heun" else "logsnr")
        self._grid = make_grid(self.sde, num_inference_steps, self.sde.sampling_eps, grid_name, c.rho, timesteps)
        t = self._grid.t.to(torch.float32)
        t = heun_stage_times(t) if c.solver == "edm-heun" else t[:-1]
        if c.denoise:
            t = torch.cat([t, self._grid.t[-1:].to(torch.float32)])
        self.num_inference_steps = self._grid.steps
        self.timesteps = t.to(device or "cpu")
        self._t_grid = self._grid.t.to(torch.float32)
        self._stage, self._history, self._edm_state = 0, [], None

    def _data_prediction(self, model_output, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        score = output_to_score(model_output.to(x.dtype), t, self.sde, self.config.prediction_type)
        alpha, std = self.sde.marginal_coef(t)
        return (x + append_dims(std**2, x.ndim) * score) / append_dims(alpha, x.ndim)

    def _few_step_step(self, model_output, sample, generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stage >= len(self.timesteps):
            raise ValueError(f"step() called {self._stage + 1} times but timesteps has {len(self.timesteps)} entries; "
                             f"call set_timesteps again to start a new run")
        x = sample.to(compute_dtype(sample.dtype))
        stage, grid = self._stage, self._grid
        self._stage += 1
        solver = self.config.solver
        n_stages = len(self.timesteps) - int(self.config.denoise)
        i = stage if solver != "edm-heun" else (stage + 1) // 2 if stage % 2 else stage // 2
        t = batch_time(float(grid.t[min(i, grid.steps)]), x.shape[0], x)
        x0 = self._data_prediction(model_output, t, x)
        if stage == n_stages:  # the final denoising step: x0(x, eps)
            return x0.to(sample.dtype), x0.to(sample.dtype)
        if solver == "edm-heun":
            return self._heun_stage(x, x0, stage, grid, sample.dtype)
        self._history = (self._history + [(float(grid.lam[i]), x0)])[-3:]
        k = step_order(self.config.order, i, grid.steps, self.config.denoise)
        if solver == "sde-dpmsolver++":
            x = sde_multistep_update(x, grid, i, self._history, k, randn_like(x, generator))
        else:
            x = multistep_update(x, grid, i, self._history, k)
        return x.to(sample.dtype), x0.to(sample.dtype)

    def _heun_stage(self, x, x0, stage: int, grid, dtype):
        """EDM Algorithm 2 without churn: Euler stage at ``t_i`` (even stages), trapezoid at ``t_{i+1}`` (odd)."""
        if stage % 2 == 0:
            i = stage // 2
            xs = x / float(grid.alpha[i])
            d = (xs - x0) / float(grid.sigma[i])
            self._edm_state = (xs, d, i)
            x_euler = xs + (float(grid.sigma[i + 1]) - float(grid.sigma[i])) * d
            return (float(grid.alpha[i + 1]) * x_euler).to(dtype), x0.to(dtype)
        xs, d, i = self._edm_state
        d_next = (x / float(grid.alpha[i + 1]) - x0) / float(grid.sigma[i + 1])
        xs = xs + (float(grid.sigma[i + 1]) - float(grid.sigma[i])) * 0.5 * (d + d_next)
        return (float(grid.alpha[i + 1]) * xs).to(dtype), x0.to(dtype)

    def _few_step_sample_kwargs(self) -> dict[str, Any]:
        c = self.config
        kwargs: dict[str, Any] = {"sampler": c.solver, "denoise": c.denoise}
        if c.solver != "edm-heun":
            kwargs["order"] = c.order
        if c.solver == "dpmsolver-adaptive":
            return {**kwargs, "rtol": c.rtol, "atol": c.atol}
        return {**kwargs, "time_grid": c.time_grid, "rho": c.rho}
