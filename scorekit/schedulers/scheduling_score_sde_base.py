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
from ..score import PARAMETERIZATIONS, model_time_input, output_to_score
from ..sde import SDE, SDES, get_sde
from ..utils import append_dims, batch_time, check_choice, check_positive
from .discrete import (
    DISCRETIZATIONS,
    VARIANCE_TYPES,
    clip_denoised_score,
    ddpm_schedule,
    leading_timesteps,
    smld_schedule,
)

DEFAULT_EPS = {"vp": 1e-3, "subvp": 1e-3, "ve": 1e-5}
DEFAULT_DATA_RANGE = {"vp": (-1.0, 1.0), "subvp": (-1.0, 1.0), "ve": (0.0, 1.0)}
SUPPORTED_FOREIGN = ("DDPMScheduler", "DDIMScheduler", "ScoreSdeVeScheduler", "ScoreSdeVpScheduler")


@dataclass
class ScoreSDESchedulerOutput(SchedulerOutput):
    """Output of a scorekit scheduler step.

    Args:
        prev_sample (`torch.Tensor` of shape `(batch_size, ...)`): the sample at the next (smaller) time.
        prev_sample_mean (`torch.Tensor` of shape `(batch_size, ...)`): its noise-free mean (the denoised output of
            the last step).
    """

    prev_sample_mean: torch.Tensor | None = None


def translate_foreign_config(config: dict[str, Any]) -> dict[str, Any]:
    """Map a DDPM / DDIM / ScoreSdeVe / ScoreSdeVp scheduler config onto scorekit's keys (others pass through).

    DDPM linear betas over N steps are the VP SDE's discrete betas with ``beta_min = N * beta_start`` and
    ``beta_max = N * beta_end`` (exact: 1e-4, 0.02, 1000 -> 0.1, 20).
    """
    config = dict(config)
    name = config.get("_class_name") or _guess_class_name(config)
    if name in SUPPORTED_FOREIGN:
        config.pop("_use_default_values", None)  # those defaults were the foreign class's, not ours
    if name in ("DDPMScheduler", "DDIMScheduler"):
        if config.get("beta_schedule", "linear") != "linear" or config.get("trained_betas") is not None:
            raise ValueError(f"only linear-beta {name} configs map to a VP SDE; got beta_schedule="
                             f"{config.get('beta_schedule')!r}, trained_betas={config.get('trained_betas')!r}")
        prediction = config.get("prediction_type", "epsilon")
        if prediction != "epsilon":
            raise ValueError(f"{name} prediction_type={prediction!r} is not supported; expected 'epsilon'")
        n = int(config.get("num_train_timesteps", 1000))
        variance = config.get("variance_type", "fixed_large")
        if variance not in VARIANCE_TYPES:
            raise ValueError(f"{name} variance_type={variance!r} cannot be converted; expected one of "
                             f"{VARIANCE_TYPES}")
        config.update(sde_type="vp", num_train_timesteps=n, beta_min=n * float(config.get("beta_start", 1e-4)),
                      beta_max=n * float(config.get("beta_end", 0.02)), prediction_type="epsilon",
                      data_range=[-1.0, 1.0], variance_type=variance)
        config.setdefault("sampling_eps", 1e-3)
        # diffusers clips x0 by default; the paper does not: pass clip_sample=True to from_config to match diffusers
        config.update(clip_sample=False, _diffusers_clip_sample=config.get("clip_sample", True))
    elif name == "ScoreSdeVeScheduler":
        config.update(sde_type="ve", prediction_type="sigma", data_range=[0.0, 1.0])
        if "correct_steps" in config:
            config.setdefault("n_corrector_steps", config["correct_steps"])
    elif name == "ScoreSdeVpScheduler":
        config.update(sde_type="vp", prediction_type="epsilon", data_range=[-1.0, 1.0])
    return config


def _guess_class_name(config: dict[str, Any]) -> str | None:
    # `scheduler.config` carries no `_class_name` (only the saved JSON does): recognise the foreign keys instead.
    if "sde_type" in config:
        return None
    if "beta_start" in config:
        return "DDPMScheduler"
    if "correct_steps" in config or "sigma_max" in config:
        return "ScoreSdeVeScheduler"
    if "beta_min" in config:
        return "ScoreSdeVpScheduler"
    return None


class ScoreSDESchedulerBase(SchedulerMixin, ConfigMixin):
    """Common machinery of :class:`ScoreSDEPCScheduler` and :class:`ScoreSDEODEScheduler`."""

    _compatibles = list(SUPPORTED_FOREIGN)
    order = 1

    def _setup(self, sde_type, beta_min, beta_max, sigma_min, sigma_max, num_train_timesteps, sampling_eps,
               prediction_type, data_range):
        check_choice("sde_type", sde_type, SDES)
        check_choice("prediction_type", prediction_type, PARAMETERIZATIONS)
        eps = DEFAULT_EPS[sde_type] if sampling_eps is None else sampling_eps
        kwargs = {"N": num_train_timesteps, "sampling_eps": eps}
        if sde_type == "ve":
            kwargs.update(sigma_min=sigma_min, sigma_max=sigma_max)
        else:
            kwargs.update(beta_min=beta_min, beta_max=beta_max)
        self.sde: SDE = get_sde(sde_type, **kwargs)
        lo, hi = DEFAULT_DATA_RANGE[sde_type] if data_range is None else data_range
        if not hi > lo:
            raise ValueError(f"data_range must be (low, high) with high > low, got {data_range!r}")
        self.data_range = (float(lo), float(hi))
        self.init_noise_sigma = self.sde.prior_std()
        self.num_inference_steps = None
        self.timesteps = torch.empty(0)
        self._t_grid = torch.empty(0)
        self._table = None

    def _setup_discretization(self, discretization: str, variance_type: str, clip_sample: bool) -> None:
        check_choice("discretization", discretization, DISCRETIZATIONS)
        check_choice("variance_type", variance_type, VARIANCE_TYPES)
        if not isinstance(clip_sample, bool):
            raise TypeError(f"clip_sample must be a bool, got {clip_sample!r}")

    @property
    def step_sde(self):
        """The SDE the steps use: the continuous ``sde``, or with ``discretization="discrete"`` the training
        discretization of the matching diffusers scheduler (see :mod:`scorekit.schedulers.discrete`)."""
        return self.sde if self._table is None else self._table

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """Instantiate from a config; DDPM, DDIM and ScoreSdeVe configs are translated first."""
        config = translate_foreign_config(config if config is not None else {})
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    # --- time grid -------------------------------------------------------------------------------------------------
    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps=None):
        """Set the uniform grid of ``num_inference_steps`` steps from ``T`` down to ``sampling_eps``, or the user's
        ``timesteps`` (strictly decreasing times in ``[sampling_eps, T]``; a grid starting below ``T`` needs a start
        state drawn there, see :func:`scorekit.samplers.grids.start_state`).

        With ``discretization="discrete"`` the timesteps are diffusers': DDPM/DDIM integer labels with ``"leading"``
        spacing (VP, sub-VP) or ScoreSdeVe's ``linspace(1, sampling_eps, S)`` (VE); the last step lands on clean data.
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
        if c.sde_type == "ve":
            self._table = smld_schedule(self.sde, steps)
            times = torch.linspace(1, self.sde.sampling_eps, steps)
        else:
            if c.get("timestep_spacing", "leading") != "leading":
                raise ValueError(f"discretization='discrete' follows diffusers' 'leading' timestep_spacing; the "
                                 f"config has timestep_spacing={c.timestep_spacing!r}")
            if steps > c.num_train_timesteps:
                raise ValueError(f"num_inference_steps={steps} exceeds num_train_timesteps={c.num_train_timesteps} "
                                 f"with discretization='discrete'")
            self._table = ddpm_schedule(c.beta_min, c.beta_max, c.num_train_timesteps,
                                         c.get("variance_type", "fixed_large"))
            times = leading_timesteps(c.num_train_timesteps, steps, int(c.get("steps_offset", 0)))
        return torch.cat([times, torch.tensor([-1.0])])  # -1: clean data

    def _stage_times(self) -> torch.Tensor:
        return self._t_grid[:-1]

    def next_timestep(self, timestep: float | torch.Tensor) -> torch.Tensor:
        """The grid time after ``timestep`` (the time a step from ``timestep`` lands on)."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        i = int(torch.argmin((self._t_grid[:-1] - torch.as_tensor(timestep, dtype=torch.float32).cpu()).abs()))
        return self._t_grid[i + 1]

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
        return output_to_score(model_output, t, self.sde, self.config.prediction_type)

    def _step_inputs(self, model_output, timestep, sample):
        """``(score_fn, t)`` for one step: the model output as a constant score function and ``t`` of shape (B,).

        Numeric policy (:mod:`scorekit.numerics`): ``t``, the coefficients and the score are in the compute dtype
        (float32, float64 for float64 samples), whatever the sample's dtype; :meth:`_output` casts the step's result
        back to the sample's dtype.
        """
        dtype = compute_dtype(sample.dtype)
        t = batch_time(timestep, sample.shape[0], sample, dtype=dtype)
        score = output_to_score(model_output.to(dtype), t, self.step_sde, self.config.prediction_type)
        if self.config.get("clip_sample", False):
            score = clip_denoised_score(score, sample.to(dtype), t, self.step_sde, self.data_range)
        return (lambda *_: score), t

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
