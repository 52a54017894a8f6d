"""Shared config and conversions of scorekit's diffusers schedulers (layer 4 of docs/architecture.md).

The schedulers are thin ``SchedulerMixin, ConfigMixin`` classes over the sampling math in ``scorekit``: the SDE is
built from the config, ``timesteps`` are continuous times ``t`` in ``[eps, T]``, the network is fed
``model_timestep(t)`` and its raw output is turned into a score with the configured ``prediction_type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from ..numerics import compute_dtype
from ..samplers.grids import make_grid, steps_of_timesteps
from ..score import PREDICTION_TYPES, model_time_input, output_to_denoised, output_to_score
from ..sde import SDE, SDES, DiscreteVPSDE, get_sde
from ..utils import append_dims, batch_time, check_choice, check_positive
from .alpha_bars import alpha_bar_table
from .discrete import (
    DISCRETIZATIONS,
    VARIANCE_TYPES,
    alpha_bar_schedule,
    clip_denoised_score,
    diffusers_timesteps,
    smld_schedule,
)
from .foreign import SUPPORTED_FOREIGN, translate_foreign_config

DEFAULT_EPS = {"vp": 1e-3, "subvp": 1e-3, "ve": 1e-5}
DEFAULT_DATA_RANGE = {"vp": (-1.0, 1.0), "subvp": (-1.0, 1.0), "ve": (0.0, 1.0)}
ZERO_SNR_PREDICTIONS = ("sample", "v_prediction")  # the parameterizations that give x0 where alpha = 0


@dataclass
class ScoreSDESchedulerOutput(SchedulerOutput):
    """Output of a scorekit scheduler step.

    Args:
        prev_sample (`torch.Tensor` of shape `(batch_size, ...)`): the sample at the next (smaller) time.
        prev_sample_mean (`torch.Tensor` of shape `(batch_size, ...)`): its noise-free mean (the denoised output of
            the last step).
    """

    prev_sample_mean: torch.Tensor | None = None


class ScoreSDESchedulerBase(SchedulerMixin, ConfigMixin):
    """Common machinery of :class:`ScoreSDEPCScheduler` and :class:`ScoreSDEODEScheduler`."""

    _compatibles = list(SUPPORTED_FOREIGN)
    order = 1
    _ddim_rule = False  # the ODE scheduler's discrete steps are DDIM's (next label k - N // S, set_alpha_to_one)

    def _setup(self, sde_type, beta_min, beta_max, sigma_min, sigma_max, num_train_timesteps, sampling_eps,
               prediction_type, data_range, beta_schedule="linear", trained_betas=None, rescale_betas_zero_snr=False):
        check_choice("sde_type", sde_type, SDES)
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        eps = DEFAULT_EPS[sde_type] if sampling_eps is None else sampling_eps
        self.sde: SDE = build_sde(sde_type, beta_min, beta_max, sigma_min, sigma_max, num_train_timesteps, eps,
                                  beta_schedule, trained_betas, rescale_betas_zero_snr)
        if sde_type == "vp":  # diffusers' names of the betas, so that Foo.from_config(this.config) keeps the model's
            n = num_train_timesteps
            self.register_to_config(beta_start=beta_min / n, beta_end=beta_max / n)
        lo, hi = DEFAULT_DATA_RANGE[sde_type] if data_range is None else data_range
        if not hi > lo:
            raise ValueError(f"data_range must be (low, high) with high > low, got {data_range!r}")
        self.data_range = (float(lo), float(hi))
        self.init_noise_sigma = self.sde.prior_std()
        self.num_inference_steps = None
        self.timesteps = torch.empty(0)
        self._t_grid = torch.empty(0)
        self._next_grid = None
        self._table = None

    def _setup_discretization(self, discretization: str, variance_type: str, clip_sample: bool,
                              use_clipped_model_output: bool = True) -> None:
        check_choice("discretization", discretization, DISCRETIZATIONS)
        check_choice("variance_type", variance_type, VARIANCE_TYPES)
        for name, value in (("clip_sample", clip_sample), ("use_clipped_model_output", use_clipped_model_output)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")
        if getattr(self.sde, "zero_terminal_snr", False) and discretization != "discrete":
            raise ValueError("rescale_betas_zero_snr=True (alpha_bar(1) = 0) needs discretization='discrete': every "
                             "continuous sampler starts at t = 1, where beta(1) and std / alpha are infinite and "
                             "Tweedie's x0 = (x + std^2 score) / alpha is 0 / 0 (the prior N(0, I) is exact there, "
                             "but the score carries no information about x0)")

    @property
    def step_sde(self):
        """The SDE the steps use: the continuous ``sde``, or with ``discretization="discrete"`` the training
        discretization of the matching diffusers scheduler (see :mod:`scorekit.schedulers.discrete`)."""
        return self.sde if self._table is None else self._table

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """Instantiate from a config; DDPM, DDIM, DPM-Solver multistep and ScoreSdeVe configs are translated first
        (see :mod:`scorekit.schedulers.foreign`: every key that changes the math is honoured, refused by name, or
        reported by a warning when the conversion drops it; ``kwargs`` override the config)."""
        config = translate_foreign_config(config if config is not None else {}, kwargs, cls.__name__)
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    # --- time grid -------------------------------------------------------------------------------------------------
    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps=None):
        """Set the uniform grid of ``num_inference_steps`` steps from ``T`` down to ``sampling_eps``, or the user's
        ``timesteps`` (strictly decreasing times in ``[sampling_eps, T]``; a grid starting below ``T`` needs a start
        state drawn there, see :func:`scorekit.samplers.grids.start_state`).

        With ``discretization="discrete"`` the timesteps are diffusers': DDPM/DDIM integer labels with the config's
        ``timestep_spacing`` and ``steps_offset`` (VP, sub-VP) or ScoreSdeVe's ``linspace(1, sampling_eps, S)`` (VE);
        the last step lands on clean data (or on ``alpha_bar_0`` with DDIM's ``set_alpha_to_one=False``).
        """
        discrete = self.config.get("discretization", "continuous") == "discrete"
        if discrete and timesteps is not None:
            raise ValueError("timesteps= needs discretization='continuous' (the discrete mode follows diffusers' own "
                             "timesteps)")
        num_inference_steps = steps_of_timesteps(timesteps, num_inference_steps)
        check_positive("num_inference_steps", num_inference_steps, integer=True)
        self.num_inference_steps = num_inference_steps
        if discrete:
            self._t_grid = self._discrete_grid(num_inference_steps).to(device or "cpu")
        else:
            grid = make_grid(self.sde, num_inference_steps, self.sde.sampling_eps, "uniform", timesteps=timesteps)
            self._t_grid = grid.t.to(dtype=torch.float32, device=device or "cpu")
        self.timesteps = self._stage_times()

    def _discrete_grid(self, steps: int) -> torch.Tensor:
        c = self.config
        self._next_grid = None
        if c.sde_type == "ve":
            self._table = smld_schedule(self.sde, steps)
            times = torch.linspace(1, self.sde.sampling_eps, steps)
            return torch.cat([times, torch.tensor([-1.0])])  # -1: clean data
        n = c.num_train_timesteps
        if steps > n:
            raise ValueError(f"num_inference_steps={steps} exceeds num_train_timesteps={n} with "
                             f"discretization='discrete'")
        abar = alpha_bar_table(n, c.beta_min / n, c.beta_max / n, c.get("beta_schedule", "linear"),
                               c.get("trained_betas"), c.get("rescale_betas_zero_snr", False))
        final = 1.0 if c.get("set_alpha_to_one", True) or not self._ddim_rule else float(abar[0])
        self._table = alpha_bar_schedule(abar, c.get("variance_type", "fixed_large"), final)
        times = diffusers_timesteps(n, steps, c.get("timestep_spacing", "leading"), int(c.get("steps_offset", 0)))
        if float(abar[int(times[0])]) == 0:
            self._check_zero_snr_start(int(times[0]))
        if self._ddim_rule:  # DDIMScheduler.step lands on k - N // S (-1: the final alpha_bar)
            self._next_grid = (times - n // steps).clamp_min(-1.0)
        return torch.cat([times, torch.tensor([-1.0])])

    def _check_zero_snr_start(self, k: int) -> None:
        """The first timestep ``k`` has ``alpha_bar_k = 0`` (zero terminal SNR with "trailing" / "linspace"
        spacing): only a DDIM step from the model's own x0 (a sample / v model) is defined there."""
        prediction = self.config.prediction_type
        if not self._ddim_rule or prediction not in ZERO_SNR_PREDICTIONS:
            raise ValueError(f"the first timestep {k} has alpha_bar = 0 (rescale_betas_zero_snr=True with "
                             f"timestep_spacing={self.config.get('timestep_spacing')!r}): x0 there comes only from "
                             f"a model with prediction_type in {list(ZERO_SNR_PREDICTIONS)} (got {prediction!r}) via "
                             f"ScoreSDEODEScheduler(solver='ddim', discretization='discrete'), as DDIMScheduler "
                             f"steps; or use timestep_spacing='leading', which starts below it")

    def _stage_times(self) -> torch.Tensor:
        return self._t_grid[:-1]

    def next_timestep(self, timestep: float | torch.Tensor) -> torch.Tensor:
        """The grid time after ``timestep`` (the time a step from ``timestep`` lands on)."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        i = int(torch.argmin((self._t_grid[:-1] - torch.as_tensor(timestep, dtype=torch.float32).cpu()).abs()))
        return self._t_grid[i + 1] if self._next_grid is None else self._next_grid[i]

    # --- model interface -------------------------------------------------------------------------------------------
    def model_timestep(self, timestep: float | torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The float time tensor ``(B,)`` to feed the network at ``timestep``: ``t * (N - 1)`` or ``sigma(t)``."""
        t = batch_time(timestep, sample.shape[0], sample)
        if self._table is not None and self.config.sde_type != "ve":
            return t  # discrete VP: the time is the DDPM label itself
        return model_time_input(self.sde, t, self.config.prediction_type)

    def convert_model_output(self, model_output: torch.Tensor, timestep, sample: torch.Tensor) -> torch.Tensor:
        """Turn the raw network output at ``timestep`` into the score (``-eps / std`` for epsilon models)."""
        t = batch_time(timestep, sample.shape[0], sample)
        return output_to_score(model_output, t, self.sde, self.config.prediction_type, sample)

    def _step_inputs(self, model_output, timestep, sample):
        """``(score_fn, t)`` for one step: the model output as a constant score function and ``t`` of shape (B,).

        Numeric policy (:mod:`scorekit.numerics`): ``t``, the coefficients and the score are in the compute dtype
        (float32, float64 for float64 samples), whatever the sample's dtype; :meth:`_output` casts the step's result
        back to the sample's dtype.
        """
        dtype = compute_dtype(sample.dtype)
        t = batch_time(timestep, sample.shape[0], sample, dtype=dtype)
        x = sample.to(dtype)
        score = output_to_score(model_output.to(dtype), t, self.step_sde, self.config.prediction_type, x)
        if self.config.get("clip_sample", False) and self.config.get("use_clipped_model_output", True):
            score = clip_denoised_score(score, x, t, self.step_sde, self.data_range)
        return (lambda *_: score), t

    def _step_denoised(self, model_output: torch.Tensor, t: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The x0 of a discrete DDIM step, straight from the model output as diffusers computes it (Tweedie's
        ``(x + std^2 score) / alpha`` loses float32 digits where ``alpha`` is tiny, and is 0 / 0 at ``alpha = 0``),
        clipped to ``data_range`` with ``clip_sample`` (the epsilon is the clipped score's with
        ``use_clipped_model_output``, else the model's own: DDIMPipeline's default)."""
        c = self.config
        x0 = output_to_denoised(model_output.to(t.dtype), sample.to(t.dtype), t, self.step_sde, c.prediction_type)
        return x0.clamp(*self.data_range) if c.get("clip_sample", False) else x0

    @staticmethod
    def _output(x: torch.Tensor, x_mean: torch.Tensor, return_dict: bool, like: torch.Tensor | None = None):
        if like is not None:
            x, x_mean = x.to(like.dtype), x_mean.to(like.dtype)
        return ScoreSDESchedulerOutput(prev_sample=x, prev_sample_mean=x_mean) if return_dict else (x, x_mean)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def add_noise(self, original_samples, noise, timesteps) -> torch.Tensor:
        """Perturb data to continuous times ``timesteps`` (B,): ``alpha(t) x_0 + std(t) noise``."""
        t = batch_time(timesteps, original_samples.shape[0], original_samples)
        mean, std = self.sde.marginal_prob(original_samples, t)
        return mean + append_dims(std, noise.ndim) * noise

    def sample_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``scorekit.sample`` that reproduce this scheduler's sampler."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.config.num_train_timesteps


def build_sde(sde_type: str, beta_min: float, beta_max: float, sigma_min: float, sigma_max: float, n: int, eps: float,
              beta_schedule: str = "linear", trained_betas=None, rescale_betas_zero_snr: bool = False) -> SDE:
    """The SDE of a scheduler config: VP with linear betas is the continuous VP SDE (eq. 11); any other VP schedule
    (diffusers' ``beta_schedule``, ``trained_betas``, ``rescale_betas_zero_snr``) a :class:`DiscreteVPSDE` over its
    ``alpha_bar`` table; sub-VP and VE take only their own keys."""
    table = beta_schedule != "linear" or trained_betas is not None or rescale_betas_zero_snr
    if table and sde_type != "vp":
        raise ValueError(f"beta_schedule={beta_schedule!r}, trained_betas and rescale_betas_zero_snr=True describe a "
                         f"VP model's discrete schedule; sde_type={sde_type!r} takes only linear betas")
    if not table:
        kwargs = {"sigma_min": sigma_min, "sigma_max": sigma_max} if sde_type == "ve" else {
            "beta_min": beta_min, "beta_max": beta_max}
        return get_sde(sde_type, N=n, sampling_eps=eps, **kwargs)
    check_positive("num_train_timesteps", n, integer=True)
    abar = alpha_bar_table(n, beta_min / n, beta_max / n, beta_schedule, trained_betas, rescale_betas_zero_snr)
    name = "trained_betas" if trained_betas is not None else beta_schedule
    return DiscreteVPSDE(abar, schedule=name + (" zero-SNR" if rescale_betas_zero_snr else ""), sampling_eps=eps)
