"""``step()`` form of the few-step solvers for :class:`ScoreSDEODEScheduler` (diffusers loops, one model call per
``timesteps`` entry), over the kernels ``scorekit.sample`` runs (:mod:`scorekit.samplers.dpm_solver`,
:mod:`scorekit.samplers.edm`).

- ``"dpmsolver++"`` / ``"sde-dpmsolver++"``: ``timesteps`` are the grid times ``t_0 .. t_{n-1}`` and, with
  ``denoise``, ``t_n = eps`` once more, whose step returns the data prediction (the order-1 step to ``sigma = 0``,
  as diffusers' ``final_sigmas_type="zero"``); the solver keeps its previous data predictions.
- ``"edm-heun"``: stage times ``t^_0, t_1, t^_1, t_2, ..., t^_{n-1}, t_n`` (an Euler stage at the churned time
  ``t^_i``, then a correction at ``t_{i+1}``, like diffusers' ``HeunDiscreteScheduler``; without churn ``t^_i = t_i``),
  then ``t_n`` once more with ``denoise``. With ``s_churn > 0`` a correction stage returns the state already churned
  to the next Euler stage's time (the churn noise is drawn from ``generator`` there).

Same ODE as ``scorekit.sample`` with the same settings; ``step`` returns ``(prev_sample, x0)`` as
``prev_sample`` / ``prev_sample_mean``.
"""

from __future__ import annotations

import torch

from ..numerics import compute_dtype
from ..samplers.dpm_solver import multistep_update, sde_multistep_update, step_order
from ..samplers.edm import churn, churn_grid, euler_stage, heun_correction
from ..samplers.grids import Grid, build_grid
from ..samplers.kernels import tweedie_x0
from ..score import output_to_score
from ..utils import batch_time, randn_like


def heun_stage_times(t: torch.Tensor, t_hat: torch.Tensor | None = None) -> torch.Tensor:
    """Stage times of a two-stage (Heun) step() loop on the grid ``t``: ``t^_0, t_1, t^_1, ..., t^_{n-1}, t_n`` (an
    Euler stage at ``t^_i``, default ``t_i``, then the correction at the step's end time)."""
    t_hat = t[:-1] if t_hat is None else t_hat
    return torch.stack([t_hat, t[1:]], dim=1).reshape(-1)


class FewStepSchedulerMixin:
    """Grid, state and ``step`` of the few-step solvers (expects ``self.sde``, ``self.config`` and
    ``self.options``, the validated sampler options, of the scheduler)."""

    def _few_step_set_timesteps(self, num_inference_steps: int | None, device, timesteps=None) -> None:
        opts = type(self.options)(**{**self.options.as_dict(), "timesteps": timesteps})
        self._grid = build_grid("fixed", opts, self.sde, num_inference_steps, self.sde.sampling_eps)
        self._hat = None
        t = self._grid.t
        if opts.name == "edm-heun":
            self._hat = churn_grid(self.sde, self._grid, self.sde.sampling_eps, opts.s_churn, opts.s_tmin,
                                   opts.s_tmax)
            t = heun_stage_times(t, self._hat.t)
        else:
            t = t[:-1]
        if self.config.denoise:
            t = torch.cat([t, self._grid.t[-1:]])
        self._stages = Grid.at(self.sde, t)  # alpha, std at every stage time (float64)
        self.num_inference_steps = self._grid.steps
        self.timesteps = t.to(torch.float32).to(device or "cpu")
        self._t_grid = self._grid.t.to(torch.float32)
        self._stage, self._history, self._edm_state = 0, [], None

    def _data_prediction(self, model_output, stage: int, x: torch.Tensor) -> torch.Tensor:
        """Tweedie's x0 at stage ``stage`` from the raw model output (the kernel ``scorekit.sample`` uses)."""
        g = self._stages
        t = batch_time(float(g.t[stage]), x.shape[0], x)
        score = output_to_score(model_output.to(x.dtype), t, self.sde, self.config.prediction_type, x)
        return tweedie_x0(x, score, float(g.alpha[stage]), float(g.std[stage]))

    def _few_step_step(self, model_output, sample, generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stage >= len(self.timesteps):
            raise ValueError(f"step() called {self._stage + 1} times but timesteps has {len(self.timesteps)} entries; "
                             f"call set_timesteps again to start a new run")
        x = sample.to(compute_dtype(sample.dtype))
        stage, grid, name = self._stage, self._grid, self.options.name
        self._stage += 1
        x0 = self._data_prediction(model_output, stage, x)
        if stage == len(self.timesteps) - int(self.config.denoise):  # the final denoising step: x0(x, eps)
            return x0.to(sample.dtype), x0.to(sample.dtype)
        if name == "edm-heun":
            return self._heun_stage(x, x0, stage, generator, sample.dtype)
        i = stage
        self._history = (self._history + [(float(grid.lam[i]), x0)])[-3:]
        k = step_order(self.options.order, i, grid.steps, self.config.denoise)
        if name == "sde-dpmsolver++":
            x = sde_multistep_update(x, grid, i, self._history, k, randn_like(x, generator))
        else:
            x = multistep_update(x, grid, i, self._history, k)
        return x.to(sample.dtype), x0.to(sample.dtype)

    def _heun_stage(self, x, x0, stage: int, generator, dtype):
        """EDM Algorithm 2: Euler stage at ``t^_i`` (even stages), trapezoid at ``t_{i+1}`` (odd), then the churn of
        step ``i + 1``."""
        grid, hat, i = self._grid, self._hat, stage // 2
        s_hat, s_next, a_next = float(hat.sigma[i]), float(grid.sigma[i + 1]), float(grid.alpha[i + 1])
        if stage % 2 == 0:
            xs = x / float(hat.alpha[i])
            d, x_euler = euler_stage(xs, x0, s_hat, s_next)
            self._edm_state = (xs, d)
            return (a_next * x_euler).to(dtype), x0.to(dtype)
        xs, d = self._edm_state
        xs = heun_correction(xs, d, x / a_next, x0, s_hat, s_next)
        if i + 1 < grid.steps and float(hat.sigma[i + 1]) > s_next:  # churn for the next step (line 5)
            xs = churn(xs, s_next, float(hat.sigma[i + 1]), self.options.s_noise, generator)
            return (float(hat.alpha[i + 1]) * xs).to(dtype), x0.to(dtype)
        return (a_next * xs).to(dtype), x0.to(dtype)
