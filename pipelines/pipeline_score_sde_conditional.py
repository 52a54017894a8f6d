"""Controllable generation pipelines (Song et al. 2021, §5): class-conditional, inpainting and colorization.

Each is a :class:`ScoreSDEPipeline` that builds a scorekit condition from its inputs and hands it to the same
sampler, so every registered sampler works with every conditioner; inpainting and colorization are presets of
:class:`~scorekit.pipelines.ScoreSDERestorationPipeline` (an operator and an observation built from ``image``), so
they take every restoration method too. ``**kwargs`` of their ``__call__`` are exactly
the keyword arguments of :meth:`ScoreSDEPipeline.__call__` (the sampler settings among them), checked there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from diffusers.image_processor import VaeImageProcessor

from scorekit.conditioning import ClassifierGuidance, Compose, Gray, Mask
from scorekit.conditioning.guidance import as_labels
from scorekit.models import classifier_log_prob_fn
from scorekit.score import model_score_fn

from .image_inputs import images_to_unit
from .outputs import ScoreSDERestorationOutput
from .pipeline_score_sde import ScoreSDEPipeline, ScoreSDEPipelineOutput, labelled_unet, null_class_label
from .pipeline_score_sde_restoration import ScoreSDERestorationPipeline


class ScoreSDEClassConditionalPipeline(ScoreSDEPipeline):
    """Class-conditional sampling by classifier-free or classifier guidance.

    The kind of conditioning follows from the saved components (:attr:`conditioning`):

    - ``"classifier-free"``: the UNet has class embeddings (``unet.config.num_class_embeds = K + 1``, the last one the
      null label of label dropout, see :func:`null_class_label`); the score is
      ``s(x, t) + w (s(x, t, y) - s(x, t))`` with ``w = guidance_scale`` (1 = the plain conditional model, 0 = the
      unconditional one), one batched network call per step;
    - ``"classifier"``: an unconditional UNet and a noise-conditional ``classifier`` (``model_index.json`` records
      it); the score is ``s(x, t) + w grad_x log p_t(y | x)``.

    A class-conditional UNet that also holds a classifier adds the classifier term with ``classifier_scale``.

    Args:
        unet: the score network.
        scheduler: a scorekit scheduler (or a DDPM / DDIM / ScoreSdeVe one, converted).
        classifier: a noise-conditional :class:`~scorekit.models.TimeClassifierModel` ``(x_t, t) -> logits``, or
            None for a class-conditional UNet.
    """

    model_cpu_offload_seq = "classifier->unet"
    _optional_components = ["classifier"]

    def __init__(self, unet, scheduler, classifier=None):
        super().__init__(unet=unet, scheduler=scheduler)
        self.register_modules(classifier=classifier)

    @property
    def conditioning(self) -> str:
        """``"classifier-free"``, ``"classifier"`` or ``"none"`` (neither class embeddings nor a classifier)."""
        if null_class_label(self.unet) is not None:
            return "classifier-free"
        return "classifier" if getattr(self, "classifier", None) is not None else "none"

    @property
    def default_guidance_scale(self) -> float:
        """The guidance scale used when none is given: the model's recorded ``guidance_scale`` (its card's best,
        :attr:`model_defaults`), else 1 (the plain conditional score)."""
        return float(self.model_defaults.get("guidance_scale", 1.0))

    @torch.no_grad()
    def __call__(self, class_labels, guidance_scale: float | None = None, condition=None,
                 classifier_scale: float | None = None, **kwargs) -> ScoreSDEPipelineOutput:
        """Generate one image per entry of ``class_labels`` (an int, or a list / tensor of ints).

        Args:
            class_labels: class of each image; its length sets the batch size (an int draws ``batch_size`` images
                of that class).
            guidance_scale: ``w`` of classifier-free guidance, or of the classifier gradient for a classifier-guided
                pipeline (1 = the conditional score). ``None``: the model's recommendation
                (:attr:`default_guidance_scale`; 1.5 for ``scorekit/digits``).
            condition: another condition to combine with (e.g. :class:`~scorekit.Inpaint`).
            classifier_scale: weight of an extra classifier term on a class-conditional UNet (needs a classifier).
            **kwargs: everything :meth:`ScoreSDEPipeline.__call__` takes.

        Raises:
            ValueError: the pipeline has no way to condition, labels are out of range, or ``classifier_scale`` is
                given without a classifier or on a classifier-guided pipeline.
        """
        kind = self.conditioning
        if kind == "none":
            raise ValueError("this pipeline cannot condition on a class: its UNet has no class embeddings "
                             "(num_class_embeds=None) and it holds no classifier; train with --num_class_embeds or "
                             "add a classifier (scorekit train-classifier)")
        guidance_scale = self.default_guidance_scale if guidance_scale is None else guidance_scale
        _check_guidance_scale("guidance_scale", guidance_scale)
        if classifier_scale is not None and (kind != "classifier-free" or self.classifier is None):
            raise ValueError(f"classifier_scale is for a class-conditional UNet that also holds a classifier; this "
                             f"pipeline's conditioning is {kind!r} with classifier="
                             f"{type(self.classifier).__name__ if self.classifier is not None else None}")
        labels = torch.as_tensor(class_labels).reshape(-1) if not isinstance(class_labels, int) else class_labels
        if not isinstance(labels, int):
            kwargs.setdefault("batch_size", len(labels))
        if kind == "classifier":
            guidance = ClassifierGuidance(classifier_log_prob_fn(self.classifier, self.sde), labels, guidance_scale)
            condition = guidance if condition is None else Compose([guidance, condition])
            return super().__call__(condition=condition, **kwargs)
        labels = as_labels(labels, kwargs.get("batch_size", 1), null_class_label(self.unet)).to(self.device)
        if classifier_scale:
            extra = ClassifierGuidance(classifier_log_prob_fn(self.classifier, self.sde), labels, classifier_scale)
            condition = extra if condition is None else Compose([extra, condition])
        guided = cfg_score_fn(self.unet, self.sde, self.scheduler.config.prediction_type, labels,
                              null_class_label(self.unet), float(guidance_scale))
        return super().__call__(condition=condition, score_fn=guided, **kwargs)


def cfg_score_fn(unet, sde, parameterization: str, labels: torch.Tensor, null: int, scale: float):
    """Classifier-free guided ``score_fn(x, t) = s(x, t, null) + scale (s(x, t, y) - s(x, t, null))``.

    As in diffusers, the trivial scales cost one batch of ``B``: ``scale = 0`` is the unconditional score alone (the
    same call as :meth:`ScoreSDEPipeline.score_fn`, so the images equal the unconditional pipeline's bit for bit) and
    ``scale = 1`` the conditional one alone; otherwise conditional and unconditional halves go through the UNet as
    one batch of ``2 B``.
    """
    if scale == 0:
        return model_score_fn(labelled_unet(unet, null), sde, parameterization)
    if scale == 1:
        return model_score_fn(labelled_unet(unet, labels), sde, parameterization)
    both = model_score_fn(labelled_unet(unet, torch.cat([labels, torch.full_like(labels, null)])), sde,
                          parameterization)

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s_y, s_0 = both(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
        return s_0 + scale * (s_y - s_0)  # classifier-free guidance (Ho & Salimans 2022, in score form)

    return score_fn


def _check_guidance_scale(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (1 = the conditional score), got {value!r}")


class ScoreSDEInpaintPipeline(ScoreSDERestorationPipeline):
    """Inpainting: the known pixels of ``image`` are observed, the rest generated; a preset of
    :class:`~scorekit.pipelines.ScoreSDERestorationPipeline` with the :class:`~scorekit.conditioning.Mask` operator
    (by default the replacement method, Song et al. 2021).

    Mask convention as diffusers' inpainting pipelines: **white (1) = repaint**, black (0) = keep.
    """

    def __init__(self, unet, scheduler):
        super().__init__(unet=unet, scheduler=scheduler)
        self.mask_processor = VaeImageProcessor(vae_scale_factor=1, do_resize=False, do_normalize=False,
                                                do_convert_grayscale=True)

    @torch.no_grad()
    def __call__(self, image, mask_image, batch_size: int | None = None, method: str = "replacement",
                 noise_std: float | None = None, num_particles: int | None = None,
                 method_options: Mapping[str, Any] | None = None, **kwargs) -> ScoreSDERestorationOutput | tuple:
        """Inpaint ``image`` where ``mask_image`` is white.

        Args:
            image: PIL image(s), numpy ``(B, H, W, C)`` or torch ``(B, C, H, W)`` in [0, 1], of the model's size.
            mask_image: binary PIL / numpy / torch mask of the same height and width, one channel (or the same
                channels as the image); white (1) is repainted, black (0) kept. A batch of masks is one per sample
                (one per image, or with a single image one per sample, the image shared).
            batch_size: samples to draw; defaults to the number of images, or of masks with a single image (one
                image is shared by all samples).
            method, noise_std, num_particles, method_options: as :meth:`ScoreSDERestorationPipeline.__call__`
                (``noise_std`` in the model's data units: the known pixels' noise).
            **kwargs: everything :meth:`ScoreSDEPipeline.__call__` takes.
        """
        x = self.preprocess(image, name="image")
        self._check_image_size(x, "image")
        known = self._known_pixels(mask_image, x, batch_size)
        operator = Mask(known if known.shape[0] > 1 else known[0], tuple(x.shape[1:]))
        return self.restore(x, operator, noise_std, method, num_particles, batch_size, method_options,
                            kwargs.pop("sampler", None), kwargs, name="image")

    def _known_pixels(self, mask_image, x: torch.Tensor, batch_size: int | None) -> torch.Tensor:
        """``(1 or B, 1 or C, H, W)`` bool, True where ``mask_image`` is black (kept); checked against ``x`` and
        ``batch_size`` (several masks with one image: one mask per sample, the image shared)."""
        mask = images_to_unit(mask_image, self.mask_processor, "mask_image", channels=1).to(x.device)
        if mask.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"mask_image has {mask.shape[1]} channels; expected 1 or {x.shape[1]} (the image's)")
        if x.shape[0] > 1 and mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"mask_image has {mask.shape[0]} masks but image has {x.shape[0]} images; expected 1 "
                             f"mask or one per image")
        if x.shape[0] == 1 and mask.shape[0] > 1 and batch_size not in (None, mask.shape[0]):
            raise ValueError(f"mask_image has {mask.shape[0]} masks; expected 1 or batch_size={batch_size} (one per "
                             f"sample)")
        if tuple(mask.shape[2:]) != tuple(x.shape[2:]):
            raise ValueError(f"mask_image is {tuple(mask.shape[2:])} pixels but image is {tuple(x.shape[2:])}")
        soft = (mask > 1 / 255) & (mask < 254 / 255)
        if soft.any():
            raise ValueError(f"mask_image must be binary (black = keep, white = repaint), got values such as "
                             f"{mask[soft][:3].tolist()}; threshold it first")
        return mask < 0.5  # diffusers' convention: white = repaint

    def _check_image_size(self, x: torch.Tensor, name: str) -> None:
        want = tuple(self.sample_shape(1)[2:])
        if tuple(x.shape[2:]) != want:
            raise ValueError(f"{name} is {tuple(x.shape[2:])} pixels but the model's sample size is {want}")


class ScoreSDEColorizationPipeline(ScoreSDEInpaintPipeline):
    """Colorization: RGB samples whose channel mean equals the given gray image; a preset of
    :class:`~scorekit.pipelines.ScoreSDERestorationPipeline` with the :class:`~scorekit.conditioning.Gray` operator
    (by default the replacement method in the gray/chroma basis)."""

    @torch.no_grad()
    def __call__(self, image, batch_size: int | None = None, method: str = "replacement",
                 noise_std: float | None = None, num_particles: int | None = None,
                 method_options: Mapping[str, Any] | None = None, **kwargs) -> ScoreSDERestorationOutput | tuple:
        """Colorize ``image`` (gray, or RGB made gray as the mean of its channels).

        Args:
            image: PIL image(s) (any mode; converted to gray), numpy ``(B, H, W, C)`` or torch ``(B, C, H, W)`` in
                [0, 1] with 1 or 3 channels, of the model's size.
            batch_size: samples to draw; defaults to the number of images.
            method, noise_std, num_particles, method_options: as :meth:`ScoreSDERestorationPipeline.__call__`.
            **kwargs: everything :meth:`ScoreSDEPipeline.__call__` takes.
        """
        if self.unet.config.in_channels != 3:
            raise ValueError(f"colorization needs an RGB model (in_channels=3), got {self.unet.config.in_channels}")
        gray = self._gray(image)
        self._check_image_size(gray, "image")
        operator = Gray((3, *gray.shape[2:]))
        return self.restore(gray, operator, noise_std, method, num_particles, batch_size, method_options,
                            kwargs.pop("sampler", None), kwargs, name="image")

    def _gray(self, image) -> torch.Tensor:
        """The gray image (mean of R, G, B: what :class:`~scorekit.conditioning.Gray` observes) in the model's data
        range, ``(B, 1, H, W)``; PIL images of any mode are read by their value range (:mod:`scorekit.image_io`)."""
        x = images_to_unit(image, self.image_processor, "image")
        if x.shape[1] not in (1, 3):
            raise ValueError(f"image must have 1 (gray) or 3 (RGB) channels, got {x.shape[1]}")
        return self.to_model_range(x.mean(1, keepdim=True))
