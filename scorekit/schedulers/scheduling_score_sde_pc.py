"""Predictor-corrector scheduler for score SDEs (Song et al. 2021, Algorithm 1) in diffusers form."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: F401  (diffusers' loader looks it up here)

from ..samplers.options import PCOptions
from ..samplers.pc import CORRECTORS, PREDICTORS
from ..utils import batch_time
from .scheduling_score_sde_base import ScoreSDESchedulerBase, ScoreSDESchedulerOutput


class ScoreSDEPCScheduler(ScoreSDESchedulerBase):
    """PC sampling of a VP, sub-VP or VE SDE: ``step`` is the predictor, ``step_correct`` the corrector.

    A diffusers loop calls, for each ``t`` in ``timesteps``: ``n_corrector_steps`` times the model and
    ``step_correct``, then the model and ``step``. Same seed, same bytes as ``scorekit.sample(sampler="pc")``: both
    run the predictor and corrector functions of :mod:`scorekit.samplers.pc`, with the settings validated by
    :class:`~scorekit.samplers.options.PCOptions` (``self.options``).

    Args:
        sde_type: ``"vp"``, ``"subvp"`` or ``"ve"``.
        beta_min, beta_max: linear beta schedule of VP / sub-VP (eq. 11).
        sigma_min, sigma_max: geometric noise levels of VE (eq. 9).
        num_train_timesteps: N of the training discretization (time label ``t * (N - 1)``).
        sampling_eps: smallest sampling time; ``None`` picks 1e-3 (VP, sub-VP) or 1e-5 (VE).
        prediction_type: ``"epsilon"`` (DDPM noise), ``"score"`` or ``"sigma"`` (NCSN++: fed sigma, returns score).
        data_range: ``(low, high)`` of the data the model was trained on; ``None``: [-1, 1] (VP) or [0, 1] (VE).
        predictor: ``"reverse_diffusion"``, ``"euler_maruyama"``, ``"ancestral_sampling"`` or ``"none"``.
        corrector: ``"langevin"``, ``"ald"`` or ``"none"``.
        snr: corrector signal-to-noise ratio (0.16 for CIFAR-10, 0.075 at 256 px).
        n_corrector_steps: corrector steps per time step.
        denoise: return the noise-free mean of the last predictor step.
        probability_flow: run the predictor on the probability-flow ODE (eq. 13; ``euler_maruyama`` or
            ``reverse_diffusion``).
        snr_norm: the Langevin step's norms: ``"sample"`` (each image's own: an image does not depend on its
            batch-mates), ``"batch"`` (their batch means: the paper's Algorithm 4 and diffusers' ScoreSdeVe) or
            ``"auto"`` (see :mod:`scorekit.samplers.pc`); ``None``: ``"batch"`` with ``discretization="discrete"``
            (parity with ``ScoreSdeVePipeline``), else ``"auto"``.
        discretization: ``"continuous"`` (default: exact steps of the SDE on the uniform grid from ``T`` to ``eps``)
            or ``"discrete"`` (the checkpoint's training discretization and diffusers' timesteps, for step-for-step
            parity with ``DDPMPipeline`` / ``ScoreSdeVePipeline``; see :mod:`scorekit.schedulers.discrete`).
        variance_type: noise of the ancestral VP step: ``"fixed_large"`` (``beta``, the paper's) or
            ``"fixed_small"`` (the posterior variance, as google/ddpm-ema-celebahq-256's config asks).
        clip_sample: clip the denoised estimate to ``data_range`` inside each step as diffusers does by default;
            off by default (the paper does not clip).
        beta_schedule: ``"linear"`` (the VP SDE of eq. 11 with ``beta_min``, ``beta_max``), or diffusers'
            ``"scaled_linear"``, ``"squaredcos_cap_v2"``, ``"sigmoid"``, ``"laplace"`` over ``num_train_timesteps``
            with ``beta_start = beta_min / N``, ``beta_end = beta_max / N``: a :class:`~scorekit.sde.DiscreteVPSDE`.
        trained_betas: the VP model's own ``N`` betas (a :class:`~scorekit.sde.DiscreteVPSDE`).
        rescale_betas_zero_snr: rescale the VP schedule to ``alpha_bar(1) = 0`` (Lin et al. 2024); needs
            ``discretization="discrete"`` (see :class:`~scorekit.sde.DiscreteVPSDE`).
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
        predictor: str = "reverse_diffusion",
        corrector: str = "langevin",
        snr: float = 0.16,
        n_corrector_steps: int = 1,
        denoise: bool = True,
        discretization: str = "continuous",
        variance_type: str = "fixed_large",
        clip_sample: bool = False,
        beta_schedule: str = "linear",
        trained_betas: list[float] | None = None,
        rescale_betas_zero_snr: bool = False,
        probability_flow: bool = False,
        snr_norm: str | None = None,
    ):
        self._setup(sde_type, beta_min, beta_max, sigma_min, sigma_max, num_train_timesteps, sampling_eps,
                    prediction_type, data_range, beta_schedule, trained_betas, rescale_betas_zero_snr)
        snr_norm = snr_norm or ("batch" if discretization == "discrete" else "auto")
        self.options = PCOptions(predictor=predictor, corrector=corrector, snr=snr,
                                 n_corrector_steps=n_corrector_steps, probability_flow=probability_flow,
                                 snr_norm=snr_norm)
        self._predictor = PREDICTORS[self.options.predictor_name]
        self._corrector = CORRECTORS[self.options.corrector_name]
        self._setup_discretization(discretization, variance_type, clip_sample)
        if discretization == "discrete" and predictor in ("euler_maruyama", "euler", "em"):
            raise ValueError("predictor='euler_maruyama' needs discretization='continuous' (it integrates the SDE's "
                             "drift, which the discrete table does not have)")

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> ScoreSDESchedulerOutput | tuple:
        """Predictor step from ``timestep`` to the next grid time, given the raw model output at ``timestep``.

        Args:
            model_output (`torch.Tensor` of shape `(batch_size, ...)`): network output at ``(sample, timestep)``.
            timestep: a value of ``self.timesteps`` (continuous time).
            sample (`torch.Tensor` of shape `(batch_size, ...)`): current sample ``x_t``.
            generator: random generator for the step noise.
            return_dict: return a ``ScoreSDESchedulerOutput`` instead of a tuple.
        """
        score_fn, t = self._step_inputs(model_output, timestep, sample)
        t_next = batch_time(self.next_timestep(timestep), sample.shape[0], t)
        x = sample.to(t.dtype)
        pf = {"probability_flow": True} if self.options.probability_flow else {}
        return self._output(*self._predictor(x, t, t_next, score_fn, self.step_sde, generator, **pf), return_dict,
                            sample)

    def step_correct(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> ScoreSDESchedulerOutput | tuple:
        """One corrector (Langevin) step at ``timestep`` given the raw model output at ``(sample, timestep)``."""
        score_fn, t = self._step_inputs(model_output, timestep, sample)
        x, x_mean = self._corrector(sample.to(t.dtype), t, score_fn, self.step_sde, generator, snr=self.options.snr,
                                    n_steps=1, snr_norm=self.options.snr_norm)
        return self._output(x, x_mean, return_dict, sample)

    def sample_kwargs(self) -> dict[str, Any]:
        return {"sampler": "pc", "denoise": self.config.denoise,
                **{k: v for k, v in self.options.as_dict().items() if v is not None}}
