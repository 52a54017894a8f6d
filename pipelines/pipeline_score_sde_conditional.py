"""Controllable generation pipelines (Song et al. 2021, §5): class-conditional, inpainting and colorization.

Each is a :class:`ScoreSDEPipeline` that builds a scorekit condition from its inputs and hands it to the same
sampler, so every sampler (PC, PF-ODE, DDIM, ALD) works with every conditioner.
"""

from __future__ import annotations

import PIL.Image
import torch
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import logging

from scorekit.conditioning import ClassifierGuidance, Colorize, Compose, Inpaint
from scorekit.models import classifier_log_prob_fn
from scorekit.samplers import DETERMINISTIC_SAMPLERS

from .pipeline_score_sde import ScoreSDEPipeline, ScoreSDEPipelineOutput

logger = logging.get_logger(__name__)


class ScoreSDEClassConditionalPipeline(ScoreSDEPipeline):
    """Class-conditional sampling by classifier guidance: ``score + guidance_scale * grad_x log p_t(y | x)``.

    Args:
        unet: the unconditional score network.
        scheduler: a scorekit scheduler (or a DDPM / DDIM / ScoreSdeVe one, converted).
        classifier: a noise-conditional :class:`~scorekit.models.TimeClassifierModel` ``(x_t, t) -> logits``.
    """

    model_cpu_offload_seq = "classifier->unet"

    def __init__(self, unet, scheduler, classifier):
        super().__init__(unet=unet, scheduler=scheduler)
        self.register_modules(classifier=classifier)

    @torch.no_grad()
    def __call__(self, class_labels, guidance_scale: float = 1.0, condition=None, **kwargs) -> ScoreSDEPipelineOutput:
        """Generate one image per entry of ``class_labels`` (an int, or a list / tensor of ints).

        Args:
            class_labels: class of each image; its length sets the batch size (an int draws ``batch_size`` images
                of that class).
            guidance_scale: weight of the classifier gradient, >= 0 (1 = the paper's conditional score).
            condition: another condition to combine with (e.g. :class:`~scorekit.Inpaint`).
            **kwargs: everything :meth:`ScoreSDEPipeline.__call__` takes.
        """
        labels = torch.as_tensor(class_labels).reshape(-1) if not isinstance(class_labels, int) else class_labels
        if not isinstance(labels, int):
            kwargs.setdefault("batch_size", len(labels))
        guidance = ClassifierGuidance(classifier_log_prob_fn(self.classifier, self.sde), labels, guidance_scale)
        condition = guidance if condition is None else Compose([guidance, condition])
        return super().__call__(condition=condition, **kwargs)


class ScoreSDEInpaintPipeline(ScoreSDEPipeline):
    """Inpainting by the replacement method: the known pixels of ``image`` are kept, the rest generated.

    Mask convention as diffusers' inpainting pipelines: **white (1) = repaint**, black (0) = keep.
    """

    def __init__(self, unet, scheduler):
        super().__init__(unet=unet, scheduler=scheduler)
        self.mask_processor = VaeImageProcessor(vae_scale_factor=1, do_resize=False, do_normalize=False,
                                                do_convert_grayscale=True)

    @torch.no_grad()
    def __call__(self, image, mask_image, batch_size: int | None = None, **kwargs) -> ScoreSDEPipelineOutput:
        """Inpaint ``image`` where ``mask_image`` is white.

        Args:
            image: PIL image(s), numpy ``(B, H, W, C)`` or torch ``(B, C, H, W)`` in [0, 1], of the model's size.
            mask_image: binary PIL / numpy / torch mask of the same height and width, one channel (or the same
                channels as the image); white (1) is repainted, black (0) kept.
            batch_size: samples to draw; defaults to the number of images (one image is shared by all samples).
            **kwargs: everything :meth:`ScoreSDEPipeline.__call__` takes.
        """
        x = self.preprocess(image)
        self._check_image_size(x, "image")
        mask = self.mask_processor.preprocess(mask_image, height=x.shape[2], width=x.shape[3]).to(x.device)
        if mask.shape[1] not in (1, x.shape[1]) or mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"mask_image has shape {tuple(mask.shape)}; expected (1 or {x.shape[0]}, 1 or "
                             f"{x.shape[1]}, {x.shape[2]}, {x.shape[3]})")
        if tuple(mask.shape[2:]) != tuple(x.shape[2:]):
            raise ValueError(f"mask_image is {tuple(mask.shape[2:])} pixels but image is {tuple(x.shape[2:])}")
        soft = (mask > 1 / 255) & (mask < 254 / 255)
        if soft.any():
            raise ValueError(f"mask_image must be binary (black = keep, white = repaint), got values such as "
                             f"{mask[soft][:3].tolist()}; threshold it first")
        known = mask < 0.5  # diffusers' convention: white = repaint
        self._warn_if_deterministic(kwargs)
        batch_size = x.shape[0] if batch_size is None else batch_size
        return super().__call__(batch_size=batch_size, condition=Inpaint(x, known), **kwargs)

    def _warn_if_deterministic(self, kwargs) -> None:
        overrides = {k: v for k, v in kwargs.items() if k in ("eta", "s_churn")}
        settings = self.sampler_kwargs(kwargs.get("sampler"), overrides)
        name = settings["sampler"]
        if name in ("ode", *DETERMINISTIC_SAMPLERS) or (name == "ddim" and settings.get("eta", 0) == 0) or (
                name == "edm-heun" and settings.get("s_churn", 0) == 0):
            logger.warning("replacement conditioning with a deterministic sampler (%s) is biased against the exact "
                           "conditional (benchmarks/conditional.py); sampler='pc' with a Langevin corrector is "
                           "recommended", settings["sampler"])

    def _check_image_size(self, x: torch.Tensor, name: str) -> None:
        want = tuple(self.sample_shape(1)[2:])
        if tuple(x.shape[2:]) != want:
            raise ValueError(f"{name} is {tuple(x.shape[2:])} pixels but the model's sample size is {want}")


class ScoreSDEColorizationPipeline(ScoreSDEInpaintPipeline):
    """Colorization: RGB samples whose channel mean equals the given gray image (replacement in the gray/chroma
    basis)."""

    @torch.no_grad()
    def __call__(self, image, batch_size: int | None = None, **kwargs) -> ScoreSDEPipelineOutput:
        """Colorize ``image`` (gray, or RGB made gray as the mean of its channels).

        Args:
            image: PIL image(s) (any mode; converted to gray), numpy ``(B, H, W, C)`` or torch ``(B, C, H, W)`` in
                [0, 1] with 1 or 3 channels, of the model's size.
            batch_size: samples to draw; defaults to the number of images.
            **kwargs: everything :meth:`ScoreSDEPipeline.__call__` takes.
        """
        if self.unet.config.in_channels != 3:
            raise ValueError(f"colorization needs an RGB model (in_channels=3), got {self.unet.config.in_channels}")
        gray = self._gray([image] if isinstance(image, PIL.Image.Image) else image)
        self._warn_if_deterministic(kwargs)
        self._check_image_size(gray, "image")
        batch_size = gray.shape[0] if batch_size is None else batch_size
        return ScoreSDEPipeline.__call__(self, batch_size=batch_size, condition=Colorize(gray), **kwargs)

    def _gray(self, image) -> torch.Tensor:
        """The gray image (mean of R, G, B) in the model's data range, ``(B, 1, H, W)``."""
        # gray = mean of R, G, B (what Colorize fixes); a gray PIL image has three equal channels after convert
        x = self.image_processor.preprocess([im.convert("RGB") for im in image] if _is_pil(image) else image)
        if x.shape[1] not in (1, 3):
            raise ValueError(f"image must have 1 (gray) or 3 (RGB) channels, got {x.shape[1]}")
        return self.to_model_range(x.mean(1, keepdim=True))


def _is_pil(image) -> bool:
    return isinstance(image, list) and bool(image) and isinstance(image[0], PIL.Image.Image)
