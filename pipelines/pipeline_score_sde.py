"""``ScoreSDEPipeline``: unconditional sampling of a score SDE model, the front door of scorekit."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor

from scorekit.models.shipped import is_shipped_name, shipped_model_path
from scorekit.numerics import compute_dtype
from scorekit.samplers.options import SamplerOptions
from scorekit.samplers.registry import get_spec
from scorekit.sampling import resolve_options, sample
from scorekit.schedulers import ScoreSDEODEScheduler, ScoreSDEPCScheduler, ScoreSDESchedulerBase
from scorekit.schedulers.discrete import clip_denoised_score
from scorekit.schedulers.foreign import SCOREKIT_EQUIVALENT
from scorekit.schedulers.loop import scheduler_loop
from scorekit.schedulers.scheduling_score_sde_ode import SOLVERS
from scorekit.schedulers.stock import from_stock_config
from scorekit.score import model_score_fn
from scorekit.utils import check_choice, check_count

from .hub_loading import check_components, check_weight_format, download_repo, write_stock_layout
from .image_inputs import images_to_unit
from .likelihood_mixin import LikelihoodMixin
from .model_defaults import check_model_defaults, read_model_defaults, write_model_defaults
from .outputs import ScoreSDEPipelineOutput

OUTPUT_TYPES = ("pil", "np", "pt")
# The sampler settings ScoreSDEPipeline.__call__ takes as keyword arguments: every option of every built-in sampler
# (tests/test_registry.py checks this against the registry); a plug-in sampler's go in `sampler_options`.
SAMPLER_SETTINGS = ("denoise", "timesteps", "predictor", "corrector", "snr", "n_corrector_steps", "probability_flow",
                    "snr_norm", "step_size", "method", "rtol", "atol", "eta", "order", "time_grid", "rho", "s_churn",
                    "s_noise", "s_tmin", "s_tmax", "num_particles", "ess_threshold", "return_particles")
# settings of the scheduler that describe the checkpoint, kept when `sampler=` picks another sampler that has them
MODEL_SETTINGS = ("snr",)


def as_score_sde_scheduler(scheduler) -> ScoreSDESchedulerBase:
    """Return ``scheduler`` if it is a scorekit scheduler; convert a diffusers one to the scorekit scheduler that runs
    the same sampler on the same model: ``DDPMScheduler`` / ``ScoreSdeVeScheduler`` -> the PC scheduler,
    ``DDIMScheduler`` -> DDIM and ``DPMSolverMultistepScheduler`` -> DPM-Solver++ (:class:`ScoreSDEODEScheduler`).

    Raises:
        TypeError: a scheduler class scorekit has no equivalent of (the message names those it has).
    """
    if isinstance(scheduler, ScoreSDESchedulerBase):
        return scheduler
    restored = from_stock_config(getattr(scheduler, "config", {}))  # a scorekit save in the stock layout
    if restored is not None:
        return restored
    name = type(scheduler).__name__
    target = SCOREKIT_EQUIVALENT.get(name)
    if target is None:
        raise TypeError(f"scheduler {name} has no scorekit equivalent; use a ScoreSDEPCScheduler or "
                        f"ScoreSDEODEScheduler (solvers {list(SOLVERS)}), or one of {sorted(SCOREKIT_EQUIVALENT)}, "
                        f"which convert to them (e.g. DPMSolverMultistepScheduler.from_config(pipe.scheduler.config))")
    cls = ScoreSDEODEScheduler if target == ScoreSDEODEScheduler.__name__ else ScoreSDEPCScheduler
    return cls.from_config({**scheduler.config, "_class_name": name})


class ScoreSDEPipeline(LikelihoodMixin, DiffusionPipeline):
    """Sample images from a score SDE model with the predictor-corrector or probability-flow ODE sampler.

    Args:
        unet: a ``UNet2DModel`` (or any model called as ``unet(x, timestep).sample``) under the scheduler's
            ``prediction_type``.
        scheduler: a :class:`ScoreSDEPCScheduler` or :class:`ScoreSDEODEScheduler`; a ``DDPMScheduler``,
            ``DDIMScheduler``, ``DPMSolverMultistepScheduler`` or ``ScoreSdeVeScheduler`` is converted to the scorekit
            scheduler with the same SDE and sampler (:func:`as_score_sde_scheduler`), also when assigned later:
            ``pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)`` (diffusers' idiom).
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents"]
    returns_particles = False  # whether return_particles=True is honoured (ScoreSDERestorationPipeline)

    def __init__(self, unet, scheduler):
        super().__init__()
        scheduler = as_score_sde_scheduler(scheduler)
        check_components(unet, scheduler)
        self.register_modules(unet=unet, scheduler=scheduler)
        self.image_processor = VaeImageProcessor(vae_scale_factor=1, do_resize=False, do_normalize=False)

    def __setattr__(self, name: str, value):
        if name == "scheduler" and value is not None:  # the scheduler-swap idiom: convert, or say what works
            value = as_score_sde_scheduler(value)
        super().__setattr__(name, value)

    @property
    def model_defaults(self) -> dict[str, Any]:
        """What the model recommends (its default guidance scale, the levels and range of its data), as recorded in
        its folder's ``model_index.json`` (see :mod:`scorekit.pipelines.model_defaults`); ``{}`` for a pipeline
        built from components. Assign a dict to set it (it is saved by :meth:`save_pretrained`)."""
        if "_model_defaults" not in self.__dict__:  # loaded by diffusers' own DiffusionPipeline.from_pretrained
            self.__dict__["_model_defaults"] = read_model_defaults(self.config.get("_name_or_path"))
        return self.__dict__["_model_defaults"]

    @model_defaults.setter
    def model_defaults(self, defaults: dict[str, Any]) -> None:
        check_model_defaults(defaults)
        self.__dict__["_model_defaults"] = dict(defaults)

    # --- loading ---------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, allow_pickle: bool = False,
                        **kwargs):
        """Load from a folder, a shipped short name (``"scorekit/digits"``, see :mod:`scorekit.models.shipped`) or a
        Hub repo id; also reads flat repos (``config.json`` and ``scheduler_config.json``
        beside ``model_index.json``, as google/ddpm-cifar10-32 and google/ncsnpp-* are laid out).

        A Hub id is downloaded first (``revision``, ``cache_dir``, ``token``, ``local_files_only`` go to
        ``huggingface_hub.snapshot_download``) and loaded as a local folder, which avoids diffusers' lookup of custom
        scheduler code in the repo (diffusers issue #5553). ``torch_dtype``, ``variant``, ``use_safetensors`` and
        components (``unet=``, ``scheduler=``, e.g. ``ScoreSDEPCScheduler.from_config(..., discretization=
        "discrete")``) go to diffusers' loader.

        Args:
            pretrained_model_name_or_path: a local folder or a Hub repo id ``"user/repo"``.
            allow_pickle: also accept pickled ``.bin`` weights (read with ``weights_only=True``); by default only
                ``.safetensors`` are downloaded and loaded, and a model folder without them raises ValueError.

        Raises:
            ValueError: no safetensors weights (without ``allow_pickle``), a scheduler that cannot be converted, or a
                UNet whose config does not fit the scheduler's parameterization.
        """
        path = str(pretrained_model_name_or_path)
        if is_shipped_name(path):  # "scorekit/digits": a checkpoint bundled with the package, never downloaded
            path = shipped_model_path(path)
        if not os.path.isdir(path):
            path = download_repo(path, kwargs, allow_pickle)
        for key in ("cache_dir", "revision", "token", "local_files_only"):
            kwargs.pop(key, None)  # a local folder: nothing to fetch
        check_weight_format(path, kwargs, allow_pickle)
        if os.path.isfile(os.path.join(path, "config.json")) and not os.path.isdir(os.path.join(path, "unet")):
            pipe = cls._from_flat_folder(path, **kwargs)
        else:
            pipe = super().from_pretrained(path, **kwargs)
        pipe.model_defaults = read_model_defaults(path)
        return pipe

    @classmethod
    def _from_flat_folder(cls, path: str, **kwargs):
        from diffusers import UNet2DModel

        model_kwargs = {k: kwargs.pop(k) for k in ("torch_dtype", "variant", "use_safetensors") if k in kwargs}
        unet = kwargs.pop("unet", None) or UNet2DModel.from_pretrained(path, **model_kwargs)
        scheduler = kwargs.pop("scheduler", None) or _load_flat_scheduler(path)
        return cls(unet=unet, scheduler=scheduler, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True,
                        variant: str | None = None, stock_layout: bool = True, **kwargs) -> None:
        """Save as a pipeline folder; by default in the stock diffusers layout where one fits (see
        :mod:`scorekit.schedulers.stock`): a VP epsilon model opens in ``DDPMPipeline`` / ``DDIMPipeline``, a VE
        sigma model with ``UNet2DModel`` + ``ScoreSdeVeScheduler``; scorekit restores its own scheduler on load.

        Args:
            save_directory: the folder to write.
            safe_serialization: write ``.safetensors`` (default) rather than pickled ``.bin``.
            variant: weight file variant, e.g. ``"fp16"``.
            stock_layout: write the stock scheduler config when one fits (``False``: scorekit's classes).
            **kwargs: passed to ``DiffusionPipeline.save_pretrained`` (use :func:`scorekit.hub.push_to_hub` to
                push, so that the model card and the stock layout go up together).
        """
        if kwargs.pop("push_to_hub", False):
            raise ValueError("save_pretrained(push_to_hub=True) is not supported; call scorekit.hub.push_to_hub(pipe, "
                             "repo_id) (it saves, writes the model card and uploads)")
        super().save_pretrained(save_directory, safe_serialization=safe_serialization, variant=variant, **kwargs)
        if stock_layout:
            write_stock_layout(str(save_directory), self.scheduler)
        write_model_defaults(str(save_directory), self.model_defaults)

    def push_to_hub(self, repo_id: str, **kwargs):
        """diffusers' ``push_to_hub`` (save, diffusers' model card, upload), with a failed request raised as
        :class:`scorekit.hub.HubError` naming the Hub, as :func:`scorekit.hub.push_to_hub` does (which writes
        scorekit's model card instead)."""
        from scorekit.hub import hub_errors

        with hub_errors(f"pushing {type(self).__name__} to {repo_id}"):
            return super().push_to_hub(repo_id, **kwargs)

    # --- model interface -------------------------------------------------------------------------------------------
    @property
    def sde(self):
        """The :class:`~scorekit.sde.SDE` the scheduler's config defines."""
        return self.scheduler.sde

    def clips_denoised(self) -> bool:
        """Whether sampling clamps the denoised estimate to the data range: the scheduler's ``clip_sample``."""
        return bool(self.scheduler.config.get("clip_sample", False))

    def score_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The network as a ``score_fn(x, t)`` under the scheduler's parameterization (the unconditional score
        ``s(x, t, null)`` of a class-conditional UNet, see :func:`null_class_label`)."""
        return model_score_fn(labelled_unet(self.unet, null_class_label(self.unet)), self.sde,
                              self.scheduler.config.prediction_type)

    def sampling_score_fn(self, score_fn: Callable | None = None) -> Callable:
        """``score_fn`` (default :meth:`score_fn`) as the samplers use it: when :meth:`clips_denoised` (the
        scheduler's ``clip_sample``), the score whose Tweedie estimate ``x0 = (x + std^2 score) / alpha`` is clamped
        to ``data_range`` (diffusers' ``clip_sample``; see :func:`scorekit.schedulers.discrete.clip_denoised_score`).
        Likelihoods and encoding use the unclipped :meth:`score_fn`, the model's own probability-flow ODE."""
        score_fn = self.score_fn() if score_fn is None else score_fn
        if not self.clips_denoised():
            return score_fn
        sde, data_range = self.sde, tuple(self.scheduler.data_range)

        def clipped_score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            dtype = compute_dtype(x.dtype)  # clip in float32 even for a float16 model (numerics policy)
            score = clip_denoised_score(score_fn(x, t).to(dtype), x.to(dtype), t.to(dtype), sde, data_range)
            return score.to(x.dtype)

        return clipped_score_fn

    def sample_shape(self, batch_size: int) -> tuple[int, ...]:
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        return (batch_size, self.unet.config.in_channels, *size)

    def preprocess(self, images, height: int | None = None, width: int | None = None,
                   dtype: torch.dtype | None = None, name: str = "images") -> torch.Tensor:
        """Images -> tensor ``(B, C, H, W)`` in the model's range (in ``dtype``, default the UNet's).

        PIL images of any mode are read by their value range (16-bit gray as 0..65535; see
        :mod:`scorekit.image_io`) and converted to the model's channel count; numpy ``(B, H, W, C)`` and torch
        ``(B, C, H, W)`` inputs are floats in [0, 1] (or ``uint8`` / ``uint16`` / bool, scaled by their range).
        ``height`` and ``width`` are accepted for diffusers' signature; images are never resized.
        """
        return self.to_model_range(self.unit_images(images, name), dtype)

    def unit_images(self, images, name: str = "images") -> torch.Tensor:
        """Images (as :meth:`preprocess` takes them) as float32 ``(B, C, H, W)`` in [0, 1] with the model's
        channels."""
        channels = self.unet.config.in_channels
        x = images_to_unit(images, self.image_processor, name, channels=channels)
        if x.shape[1] != channels:
            raise ValueError(f"{name} have {x.shape[1]} channels but the model takes in_channels={channels}")
        return x

    def to_model_range(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Images in [0, 1] -> the model's data range (``scheduler.data_range``), on its device, in ``dtype``
        (default the UNet's)."""
        lo, hi = self.scheduler.data_range
        return (lo + (hi - lo) * x).to(device=self.device, dtype=dtype or self.unet.dtype)

    def postprocess(self, x: torch.Tensor, output_type: str = "pil"):
        """Tensor in the model's data range -> ``output_type`` ("pil", "np" or "pt") in [0, 1]."""
        check_choice("output_type", output_type, OUTPUT_TYPES)
        lo, hi = self.scheduler.data_range
        x = ((x - lo) / (hi - lo)).clamp(0, 1).float().cpu()
        return self.image_processor.postprocess(x, output_type=output_type, do_denormalize=[False] * x.shape[0])

    # --- sampling --------------------------------------------------------------------------------------------------
    def check_inputs(self, batch_size, num_inference_steps, output_type, sampler, generator, latents):
        check_count("batch_size", batch_size)
        if num_inference_steps is not None:
            check_count("num_inference_steps", num_inference_steps)
        check_choice("output_type", output_type, OUTPUT_TYPES)
        if sampler is not None and not isinstance(sampler, SamplerOptions):
            get_spec(sampler)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"generator is a list of {len(generator)} but batch_size={batch_size}")
        if latents is not None and tuple(latents.shape) != self.sample_shape(batch_size):
            raise ValueError(f"latents has shape {tuple(latents.shape)}, expected {self.sample_shape(batch_size)}")

    def sampler_kwargs(self, sampler: str | SamplerOptions | None, overrides: dict[str, Any]) -> dict[str, Any]:
        """``scorekit.sample`` keyword arguments: the scheduler's sampler and settings, or ``sampler`` (a name: its
        defaults, with the checkpoint's :data:`MODEL_SETTINGS` it shares; an options object: exactly that), then the
        explicit ``overrides``."""
        kwargs = self.scheduler.sample_kwargs()
        if isinstance(sampler, SamplerOptions):
            extra = sorted(k for k in overrides if k != "denoise")
            if extra:
                raise ValueError(f"sampler is an options object ({type(sampler).__name__}); set {extra} there")
            return {"sampler": sampler, "denoise": overrides.get("denoise", kwargs["denoise"])}
        if sampler is not None and sampler != kwargs["sampler"]:
            names = get_spec(sampler).options.option_names()
            kept = {k: v for k, v in kwargs.items() if k in MODEL_SETTINGS and k in names}
            kwargs = {"sampler": sampler, "denoise": kwargs["denoise"], **kept}
        return {**kwargs, **overrides}

    def sampler_options(self, sampler: str | SamplerOptions | None, overrides: dict[str, Any]) -> SamplerOptions:
        """The validated options a call with ``sampler`` and ``overrides`` runs with (see :meth:`sampler_kwargs`)."""
        kwargs = {k: v for k, v in self.sampler_kwargs(sampler, overrides).items() if k != "denoise"}
        return resolve_options(kwargs.pop("sampler"), kwargs)[1]

    def _step_callback(self, callback_on_step_end, tensor_inputs):
        if callback_on_step_end is None:
            return None
        bad = [k for k in tensor_inputs if k not in self._callback_tensor_inputs]
        if bad:
            raise ValueError(f"callback_on_step_end_tensor_inputs {bad} not in {self._callback_tensor_inputs}")

        def callback(i, t, x):
            out = callback_on_step_end(self, i, t, {"latents": x}) or {}
            return out.get("latents", x)

        return callback

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        sampler: str | None = None,
        latents: torch.Tensor | None = None,
        condition=None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        *,
        denoise: bool | None = None,
        timesteps: Sequence[float] | None = None,
        predictor: str | None = None,
        corrector: str | None = None,
        snr: float | None = None,
        n_corrector_steps: int | None = None,
        probability_flow: bool | None = None,
        snr_norm: str | None = None,
        step_size: float | None = None,
        method: str | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        eta: float | None = None,
        order: int | None = None,
        time_grid: str | None = None,
        rho: float | None = None,
        s_churn: float | None = None,
        s_noise: float | None = None,
        s_tmin: float | None = None,
        s_tmax: float | None = None,
        num_particles: int | None = None,
        ess_threshold: float | None = None,
        return_particles: bool | None = None,
        sampler_options: Mapping[str, Any] | None = None,
        **other_arguments: Any,
    ) -> ScoreSDEPipelineOutput | tuple:
        """Generate ``batch_size`` images.

        Args:
            batch_size: number of images.
            num_inference_steps: ``steps`` of ``scorekit.sample``: the intervals of the time grid (``"ald"``: its
                noise levels; adaptive solvers choose their own); ``None`` uses the sampler's default (the
                registry's ``default_steps``: 1000 for PC, 19 for DPM-Solver++, ...).
            generator: a ``torch.Generator`` or a list of ``batch_size`` of them (one per image: an image is then the
                same alone as in a batch, adaptive solvers excepted).
            output_type: ``"pil"``, ``"np"`` (``(B, H, W, C)`` in [0, 1]) or ``"pt"`` (``(B, C, H, W)``).
            return_dict: return a :class:`ScoreSDEPipelineOutput` rather than ``(images, nfe)``.
            sampler: a registered sampler name (``scorekit.samplers.REGISTRY``) or an options object
                (``scorekit.samplers.options``); ``None`` follows the scheduler.
            latents: start from this ``x_T`` instead of a prior draw.
            condition: a ``scorekit`` condition (inpainting, colorization, guidance, an inverse problem's method)
                applied by the sampler; ``DDRM(observation)``, ``TDS(observation)`` and ``MCGdiff(observation)`` run
                with their own sampler only (``sampler="ddrm"``, ``"tds"``, ``"mcgdiff"``).
            callback_on_step_end: ``fn(pipe, step_index, t, callback_kwargs) -> dict`` after each step; may return
                a new ``"latents"``.
            callback_on_step_end_tensor_inputs: tensors passed in ``callback_kwargs`` (only ``"latents"``).
            score_fn: the score to sample, ``score_fn(x, t)`` (e.g. a classifier-free guided one); ``None`` is the
                network's :meth:`score_fn`.
            denoise, timesteps, predictor, corrector, snr, n_corrector_steps, probability_flow, snr_norm, step_size,
                method, rtol, atol, eta, order, time_grid, rho, s_churn, s_noise, s_tmin, s_tmax, num_particles,
                ess_threshold: sampler settings (``None``: the scheduler's, or the chosen sampler's default), each
                documented on its sampler's options class in ``scorekit.samplers.options``. A setting the sampler
                does not have is a ValueError naming the sampler and its settings. ``num_particles`` and
                ``ess_threshold`` are the particle samplers' (``sampler="tds"`` with ``condition=TDS(observation)``,
                ``sampler="mcgdiff"`` with ``condition=MCGdiff(observation)``): an image then costs ``K`` times the
                NFE the output reports (``nfe``: score calls, each on all ``K`` particles of every image).
            return_particles: a particle sampler's setting: ``ScoreSDERestorationPipeline`` returns the ``K``
                weighted particles of each sample with it, the other pipelines (one image per sample) refuse it, as
                ``scorekit.sample(..., return_particles=True)`` returns them.
            sampler_options: further settings as a mapping (a plug-in sampler's own), merged with the above.
            **other_arguments: refused: an argument of another pipeline (``guidance_scale``, ``class_labels``,
                ``image``, ``mask_image``) is a ValueError naming the pipeline that takes it; anything else a
                TypeError, as for any unexpected keyword.
        """
        given = locals()  # the keyword settings above, by name
        given = {k: given[k] for k in SAMPLER_SETTINGS}
        sampler_overrides = {**{k: v for k, v in given.items() if v is not None}, **dict(sampler_options or {})}
        self.check_inputs(batch_size, num_inference_steps, output_type, sampler, generator, latents)
        check_pipeline_arguments(type(self).__name__, other_arguments, sampler_overrides)
        if sampler_overrides.get("return_particles") and not self.returns_particles:
            raise ValueError("return_particles=True is for ScoreSDERestorationPipeline and scorekit.sample, which "
                             "return the K weighted particles with their log-weights; this pipeline returns one image "
                             "per sample")
        if self.scheduler.config.get("discretization", "continuous") == "discrete":
            unsupported = {"sampler": sampler, "condition": condition, "callback_on_step_end": callback_on_step_end,
                           "score_fn": score_fn, **sampler_overrides}
            return self._call_discrete(batch_size, num_inference_steps, generator, output_type, return_dict, latents,
                                       {k: v for k, v in unsupported.items() if v is not None})
        kwargs = self.sampler_kwargs(sampler, sampler_overrides)
        x, info = sample(
            self.sampling_score_fn(score_fn), self.sde, self.sample_shape(batch_size), steps=num_inference_steps,
            x_T=latents, generator=generator, dtype=self.unet.dtype, device=self.device, condition=condition,
            progress=lambda steps: self.progress_bar(steps),
            callback=self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs or ["latents"]),
            **kwargs,
        )
        return self.output(x, info, output_type, return_dict)

    def output(self, x: torch.Tensor, info: dict[str, Any], output_type: str, return_dict: bool):
        """The call's result from ``scorekit.sample``'s ``(x, info)``: a :class:`ScoreSDEPipelineOutput`, or
        ``(images, nfe)`` without ``return_dict`` (subclasses report more)."""
        images = self.postprocess(x, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, info["nfe"]
        return ScoreSDEPipelineOutput(images=images, nfe=info["nfe"])

    def _call_discrete(self, batch_size, steps, generator, output_type, return_dict, latents, unsupported):
        """``discretization="discrete"``: run the scheduler step by step as diffusers' pipelines do (same draws)."""
        if unsupported:
            raise ValueError(f"the scheduler has discretization='discrete', which runs its own diffusers-style loop; "
                             f"{sorted(unsupported)} are not supported with it (use discretization='continuous')")
        shape = self.sample_shape(batch_size)
        x = latents if latents is not None else self.sde.prior_sampling(shape, generator, self.unet.dtype, self.device)
        x, nfe = scheduler_loop(self.unet, self.scheduler, x.to(self.device, self.unet.dtype),
                                steps or self.scheduler.config.num_train_timesteps, generator,
                                progress=lambda ts: self.progress_bar(ts))
        images = self.postprocess(x, output_type)
        self.maybe_free_model_hooks()
        return ScoreSDEPipelineOutput(images=images, nfe=nfe) if return_dict else (images, nfe)


# arguments of the other pipelines, refused by name when they land in **sampler_overrides of the wrong one
OTHER_PIPELINES_ARGS = {
    "class_labels": "ScoreSDEClassConditionalPipeline", "guidance_scale": "ScoreSDEClassConditionalPipeline",
    "classifier_scale": "ScoreSDEClassConditionalPipeline", "image": "ScoreSDEInpaintPipeline or "
    "ScoreSDEColorizationPipeline", "mask_image": "ScoreSDEInpaintPipeline",
    **dict.fromkeys(("observation", "operator", "noise_std", "method_options"), "ScoreSDERestorationPipeline"),
}


def check_pipeline_arguments(pipeline: str, kwargs: Mapping[str, Any],
                             settings: Mapping[str, Any] | None = None) -> None:
    """Refuse an argument of another pipeline (``guidance_scale=`` on the unconditional one, ...) by name, pointing
    to the pipeline that takes it, before it reaches the sampler as an unknown setting; any other unexpected keyword
    in ``kwargs`` is a TypeError (``settings``: the sampler settings given, checked by the sampler itself)."""
    for name in [*kwargs, *(settings or {})]:
        if name in OTHER_PIPELINES_ARGS:
            other = OTHER_PIPELINES_ARGS[name]
            first = other.split(" ")[0]
            raise ValueError(f"{pipeline} does not take {name}=; {name} is an argument of {other}: load the model "
                             f"with {first}.from_pretrained(...), or reuse this pipeline's components with "
                             f"{first}(unet=pipe.unet, scheduler=pipe.scheduler)")
    if kwargs:
        raise TypeError(f"{pipeline}.__call__() got an unexpected keyword argument {next(iter(kwargs))!r} (a plug-in "
                        f"sampler's settings go in sampler_options=)")


def null_class_label(unet) -> int | None:
    """The "no class" label of a class-conditional UNet trained with label dropout, or None for an unconditional one.

    scorekit's trainer builds ``UNet2DModel(num_class_embeds=K + 1)`` for K classes: labels ``0..K-1`` are the
    classes and ``K`` (the last embedding) is the null label that gives the unconditional score.
    """
    n = getattr(getattr(unet, "config", None), "num_class_embeds", None)
    return None if n is None else int(n) - 1


def labelled_unet(unet, labels: int | torch.Tensor | None) -> Callable:
    """``unet(x, timestep)`` with ``class_labels`` fixed (an int for every sample, or a ``(B,)`` tensor)."""
    if labels is None:
        return unet

    def model(x: torch.Tensor, timestep: torch.Tensor):
        y = labels if isinstance(labels, torch.Tensor) else torch.full((x.shape[0],), labels, dtype=torch.long)
        return unet(x, timestep, class_labels=y.to(x.device))

    return model


def _load_flat_scheduler(path: str):
    """Load the scheduler of a flat repo from ``scheduler_config.json`` by the class name it records."""
    import diffusers

    config_file = os.path.join(path, "scheduler_config.json")
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"{path} has config.json at its root but no scheduler_config.json")
    with open(config_file) as f:
        name = json.load(f).get("_class_name")
    known = {c.__name__: c for c in (ScoreSDEPCScheduler, ScoreSDEODEScheduler)}
    scheduler_cls = known.get(name) or getattr(diffusers, name or "", None)
    if scheduler_cls is None:
        raise ValueError(f"{config_file}: unknown scheduler class {name!r}")
    return scheduler_cls.from_pretrained(path)
