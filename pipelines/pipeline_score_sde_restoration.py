"""``ScoreSDERestorationPipeline``: one entry point for linear inverse problems ``y = A x + sigma_y e``.

It takes an ``operator`` (:mod:`scorekit.conditioning.operators`: ``Mask``, ``Gray``, ``Downsample``, ``Blur``,
``Matrix`` or your own), the ``observation`` ``y``, its ``noise_std`` and a ``method`` (the table
:data:`scorekit.restoration_methods.METHODS`), builds the method's condition and runs it with the sampler the method
needs (``ddrm``, ``tds``, ``mcgdiff``) or any other (``replacement``, ``dps``, ``pigdm``; each with a default that
suits it). The inpainting and colorization pipelines are presets over it (:mod:`.pipeline_score_sde_conditional`).

Everything is checked before the first network evaluation: the operator against the model's samples, ``y`` against
the operator, ``noise_std``, ``num_particles``, a method that needs an SVD against an operator without one, and the
sampler against the method.
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch
from diffusers.utils import logging

from scorekit.conditioning.linear import LinearOperator, Observation
from scorekit.restoration_methods import MethodSpec, get_method, method_of_sampler
from scorekit.samplers.options import SamplerOptions
from scorekit.samplers.registry import get_spec
from scorekit.utils import check_count

from .image_inputs import images_to_unit
from .model_defaults import replacement_sampler
from .outputs import ScoreSDERestorationOutput
from .pipeline_score_sde import SAMPLER_SETTINGS, ScoreSDEPipeline

logger = logging.get_logger(__name__)


class ScoreSDERestorationPipeline(ScoreSDEPipeline):
    """Posterior sampling for ``y = A x + sigma_y e`` with an unconditional score model (a class-conditional UNet
    through its null label, :meth:`ScoreSDEPipeline.score_fn`).

    Loads like the others: ``ScoreSDERestorationPipeline.from_pretrained("scorekit/photos")``, or
    ``ScoreSDERestorationPipeline(unet=pipe.unet, scheduler=pipe.scheduler)``.

    Example:
        ``op = Downsample((3, 16, 16), 2)``;
        ``out = pipe(observation=low_res, operator=op, method="mcgdiff", num_particles=8)`` with ``low_res`` a PIL
        image of 8x8 pixels (or numpy / a list of them, in [0, 1]), or a tensor ``(B, 3, 8, 8)`` in the model's range.
    """

    returns_particles = True

    def clips_denoised(self) -> bool:
        """Restoration always clamps the denoised estimate to the data range, whatever the scheduler's
        ``clip_sample`` (which governs plain sampling): through an unclipped estimate the likelihood gradients of
        DPS, PiGDM and TDS carry the network's Jacobian divided by ``alpha(t)`` and diverge on a model whose estimate
        leaves the range early (``scorekit/digits-unconditional``: non-finite at t ~ 0.93 of a 100-step PiGDM run),
        and ``benchmarks/quality.py`` measures every method this way."""
        return True

    @torch.no_grad()
    def __call__(self, observation, operator: LinearOperator | None = None, noise_std: float | None = None,
                 method: str = "replacement", num_particles: int | None = None, batch_size: int | None = None,
                 method_options: Mapping[str, Any] | None = None, sampler: str | SamplerOptions | None = None,
                 **kwargs: Any) -> ScoreSDERestorationOutput | tuple:
        """Restore: draw ``batch_size`` samples of ``p(x | y)``.

        Args:
            observation: ``y``: a tensor ``(B or 1, *operator.out_shape)`` (or ``out_shape``) in the model's data
                range (``y = A x`` for ``x`` in the model's range, e.g. [-1, 1]); or images in [0, 1] (PIL, numpy
                ``(B, H, W, C)``, or a list of them) when ``operator.out_shape`` is an image ``(C, H, W)``, mapped
                to the model's range as ``y = lo A 1 + (hi - lo) y_01`` (exact for any linear ``A``: a gray,
                low-resolution or blurred image as seen in [0, 1]); or a :class:`~scorekit.conditioning.Observation`
                (then without ``operator`` and ``noise_std``). A batch of 1 is shared by every sample.
            operator: the :class:`~scorekit.conditioning.LinearOperator` ``A``, built for the model's samples
                (``in_shape == (C, H, W)`` of the UNet).
            noise_std: ``sigma_y >= 0``, the observation's noise standard deviation in the model's data units (the
                shipped models' [-1, 1]: 0.02 is 1 % of the image range); ``None`` or 0: noiseless.
            method: ``"replacement"``, ``"dps"``, ``"pigdm"``, ``"ddrm"``, ``"tds"`` or ``"mcgdiff"``
                (:data:`scorekit.restoration_methods.METHODS`).
            num_particles: ``K``, particles per returned sample of ``tds`` / ``mcgdiff`` (>= 1; ``None``: the
                sampler's default, 16); refused with the other methods.
            batch_size: samples to draw; defaults to the observation's batch.
            method_options: the method's own settings, passed to its condition: ``scale`` (DPS, PiGDM), ``eta`` /
                ``eta_b`` (DDRM), ``data_variance`` (TDS); any other key is a ValueError naming the method's.
            sampler: a sampler name or options object for ``replacement``, ``dps`` and ``pigdm`` (``None``: the
                method's default: the model's own made stochastic for replacement, ancestral sampling for DPS, DDIM
                with ``eta = 1`` for PiGDM); ``ddrm``, ``tds`` and ``mcgdiff`` run as their own samplers (naming
                another is a ValueError). The PF-ODE solver's own ``method`` goes in ``sampler_options``.
            **kwargs: everything :meth:`ScoreSDEPipeline.__call__` takes (``num_inference_steps``, ``generator``,
                ``output_type``, ``return_dict``, ``callback_on_step_end``, ``latents``, the sampler settings, and
                ``return_particles=True`` for a particle method: all ``K`` particles of each sample come back, with
                their log-weights in ``particles``).

        Returns:
            :class:`~scorekit.pipelines.ScoreSDERestorationOutput` (images, ``nfe``, ``nfe_per_sample``, ``sampler``,
            ``particles``), or ``(images, nfe)`` without ``return_dict``.

        Raises:
            ValueError / TypeError: before any network evaluation, naming the argument: an unknown method, an
                operator that does not fit the model's samples, ``y`` of the wrong shape, ``noise_std < 0``,
                ``num_particles < 1`` or given to a method without particles, a method that needs an SVD given an
                operator without one, a sampler the method cannot run with, an unknown ``method_options`` key.
        """
        return self.restore(observation, operator, noise_std, method, num_particles, batch_size, method_options,
                            sampler, kwargs)

    def restore(self, observation, operator, noise_std, method, num_particles, batch_size, method_options, sampler,
                kwargs: dict[str, Any], name: str = "observation"):
        """:meth:`__call__` with the observation's argument ``name`` for the error messages (the presets call it with
        their own inputs: ``image``)."""
        spec = get_method(method)
        if "condition" in kwargs:
            raise ValueError(f"{type(self).__name__} builds its condition from method= and the observation; for a "
                             f"condition of your own use ScoreSDEPipeline(unet=pipe.unet, scheduler=pipe.scheduler)")
        if num_particles is not None:
            check_count("num_particles", num_particles)
        obs = self.observation(observation, operator, noise_std, name)
        if batch_size is None:
            batch_size = obs.y.shape[0] if obs.operator.batch_size is None else obs.operator.batch_size
        check_count("batch_size", batch_size)
        check_batch(obs, batch_size, name)
        condition = build_condition(spec, obs, method_options)
        sampler, settings = self.method_sampler(spec, sampler, num_particles, kwargs)
        return ScoreSDEPipeline.__call__(self, batch_size=batch_size, condition=condition, sampler=sampler,
                                         **settings, **kwargs)

    # --- the observation -------------------------------------------------------------------------------------------
    def observation(self, observation, operator, noise_std, name: str = "observation") -> Observation:
        """``y = A x + sigma_y e`` in the model's range from :meth:`__call__`'s arguments (checked, see there)."""
        if isinstance(observation, Observation):
            if operator is not None or noise_std is not None:
                raise ValueError(f"{name} is an Observation(operator, y, sigma_y), which holds the operator and the "
                                 f"noise: pass operator= and noise_std= only with a y tensor or images")
            self.check_operator(observation.operator)
            return observation
        self.check_operator(operator)
        noise_std = check_noise_std(noise_std)
        if isinstance(observation, torch.Tensor):
            y = observation if observation.is_floating_point() else observation.float()
        else:
            y = self.unit_observation(observation, operator, name)
        check_observation_shape(y, operator, name)
        return Observation(operator, y.to(self.device), noise_std)

    def check_operator(self, operator) -> None:
        """A ValueError naming ``operator`` unless it is a LinearOperator built for the model's samples."""
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a scorekit LinearOperator (Mask, Gray, Downsample, Blur, Matrix, ...), "
                            f"got {type(operator).__name__}")
        event = tuple(self.sample_shape(1)[1:])
        if tuple(operator.in_shape) != event:
            raise ValueError(f"operator.in_shape = {tuple(operator.in_shape)} but the model's samples are {event} "
                             f"(unet in_channels, sample_size); build the operator for {event}")

    def unit_observation(self, images, operator: LinearOperator, name: str) -> torch.Tensor:
        """Images in [0, 1] (PIL, numpy, lists) -> ``y`` in the model's range, ``lo A 1 + (hi - lo) y_01``."""
        out = tuple(operator.out_shape)
        if len(out) != 3:
            raise ValueError(f"{name} given as images needs an operator whose output is an image (C, H, W), but "
                             f"operator.out_shape = {out}; pass y as a tensor in the model's range")
        y = images_to_unit(images, self.image_processor, name)
        if y.shape[1] != out[0] and {y.shape[1], out[0]} == {1, 3}:  # gray <-> RGB; RGB made gray as Gray does
            y = y.mean(1, keepdim=True) if out[0] == 1 else y.expand(-1, 3, -1, -1)
        check_observation_shape(y, operator, name)
        lo, hi = self.scheduler.data_range
        ones = torch.ones(1, *operator.in_shape, dtype=torch.float64)
        return (lo * operator.forward(ones) + (hi - lo) * y.double()).float()

    # --- the sampler -----------------------------------------------------------------------------------------------
    def method_sampler(self, spec: MethodSpec, sampler, num_particles: int | None,
                       kwargs: dict[str, Any]) -> tuple[str | SamplerOptions | None, dict[str, Any]]:
        """The sampler and the extra settings ``method`` runs with (see :meth:`__call__`'s ``sampler``)."""
        named = sampler.name if isinstance(sampler, SamplerOptions) else sampler
        if named is not None:
            get_spec(named)
            own = method_of_sampler(named)
            if spec.sampler is not None and named != spec.sampler:
                raise ValueError(f"method={spec.name!r} runs as its own sampler {spec.sampler!r}; sampler={named!r} "
                                 f"cannot run it (leave sampler unset)")
            if spec.sampler is None and own is not None:
                raise ValueError(f"sampler={named!r} is the sampler of method={own.name!r}; pass method={own.name!r} "
                                 f"(method={spec.name!r} runs with any other sampler)")
        if num_particles is not None and not spec.particles:
            raise ValueError(f"num_particles={num_particles} is for the particle methods 'tds' and 'mcgdiff'; "
                             f"method={spec.name!r} draws one chain per sample")
        settings = {} if num_particles is None else {"num_particles": num_particles}
        if named is None:
            defaults = dict(spec.defaults)
            if spec.needs_noise and self.scheduler.config.get("discretization", "continuous") != "discrete":
                defaults = {"sampler": replacement_sampler(self.scheduler)}
            sampler = defaults.pop("sampler", None)
            settings.update({k: v for k, v in defaults.items() if kwargs.get(k) is None})
        if spec.needs_noise:
            self.warn_deterministic(sampler, {**settings, **kwargs})
        return sampler, settings

    def warn_deterministic(self, sampler, kwargs: dict[str, Any]) -> None:
        """Warn when replacement runs with a deterministic sampler (biased against the exact conditional)."""
        if self.scheduler.config.get("discretization", "continuous") == "discrete":
            return  # the discrete loop refuses conditions by name
        overrides = {k: v for k, v in kwargs.items() if k in SAMPLER_SETTINGS and v is not None and k != "denoise"}
        opts = self.sampler_options(sampler, {**overrides, **(kwargs.get("sampler_options") or {})})
        if opts.deterministic:  # the registry's options know (DDIM with eta = 0, EDM without churn, ...)
            logger.warning("replacement conditioning with a deterministic sampler (%s) is biased against the exact "
                           "conditional (benchmarks/conditional.py); a stochastic one (sde-dpmsolver++, or pc with a "
                           "Langevin corrector) is recommended", opts.name)

    # --- the result ------------------------------------------------------------------------------------------------
    def output(self, x: torch.Tensor, info: dict[str, Any], output_type: str, return_dict: bool):
        """Images (``(B, K, ...)`` particles flattened sample-major), NFE per run and per returned sample, the
        sampler and the particle facts."""
        particles = info["particles"]
        if x.ndim == len(self.sample_shape(1)) + 1:
            x = x.flatten(0, 1)
        images = self.postprocess(x, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, info["nfe"]
        per_sample = info["nfe"] if particles is None else particles["nfe_per_sample"]
        return ScoreSDERestorationOutput(images=images, nfe=info["nfe"], nfe_per_sample=per_sample,
                                         sampler=info["sampler"], particles=particles)


def check_noise_std(noise_std) -> float:
    """``noise_std`` (a number or a one-element tensor) as a float ``>= 0`` (``None``: 0), else a ValueError naming
    it."""
    if noise_std is None:
        return 0.0
    if isinstance(noise_std, torch.Tensor) and noise_std.numel() == 1 and not noise_std.is_complex():
        noise_std = noise_std.item()
    if isinstance(noise_std, bool) or not isinstance(noise_std, numbers.Real) or not math.isfinite(noise_std) \
            or noise_std < 0:
        raise ValueError(f"noise_std must be a finite number >= 0 (the observation's noise standard deviation in the "
                         f"model's data units; 0 = noiseless), got {noise_std!r}")
    return float(noise_std)


def check_observation_shape(y: torch.Tensor, operator: LinearOperator, name: str) -> None:
    """A ValueError naming ``name`` unless ``y`` is ``(B, *operator.out_shape)`` or ``out_shape``."""
    out = tuple(operator.out_shape)
    if tuple(y.shape) == out or (y.ndim == len(out) + 1 and tuple(y.shape[1:]) == out):
        return
    raise ValueError(f"{name} has shape {tuple(y.shape)} but operator.out_shape = {out}; expected (B or 1, "
                     f"{', '.join(map(str, out))})")


def check_batch(obs: Observation, batch_size: int, name: str) -> None:
    """A ValueError naming ``name`` / ``batch_size`` unless the observation's batch fits ``batch_size`` samples."""
    if obs.y.shape[0] not in (1, batch_size):
        raise ValueError(f"{name} has a batch of {obs.y.shape[0]} but batch_size={batch_size}; give one observation "
                         f"per sample or a single one (shared by every sample)")
    if obs.operator.batch_size not in (None, batch_size):
        raise ValueError(f"the operator is per-sample with batch_size {obs.operator.batch_size} but batch_size="
                         f"{batch_size}")


def build_condition(spec: MethodSpec, obs: Observation, options: Mapping[str, Any] | None):
    """``spec``'s condition over ``obs`` with ``options``; a method that needs an SVD given an operator without one,
    or an option the method does not have, is a ValueError naming it."""
    module, _, name = spec.condition.partition(":")
    cls = getattr(importlib.import_module(module), name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"method_options {unknown} are not settings of method={spec.name!r}; its settings are "
                         f"{list(spec.options) or 'none'}")
    if cls.needs_svd and obs.operator.svd is None:
        raise ValueError(f"method={spec.name!r} needs an operator with an SVD, but operator="
                         f"{type(obs.operator).__name__} has none (svd is None); use method 'dps' or 'tds', or an "
                         f"operator with an SVD (Mask, Gray, Downsample, Blur, Matrix)")
    return cls(obs, **options)
