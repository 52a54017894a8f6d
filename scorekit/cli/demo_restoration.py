"""Restoration tasks of ``scorekit demo`` and ``benchmarks/quality.py``: held-out images observed through a linear
operator, ``y = A x + sigma_y e`` in the model's range ([-1, 1]), restored by an inverse-problem method of
:mod:`scorekit.conditioning`, beside the task's trivial baseline.

Tasks (:data:`TASKS`): digits inpainting (bottom half), digits 2x super-resolution (4x4 -> 8x8 average pooling),
photo inpainting (centre 8x8), photo colorization (the gray channel), photo deblurring (circular Gaussian blur,
sigma = 1 px, 5x5 taps, with noise sigma_y = 0.02 in the model's [-1, 1] units, i.e. 0.01 of the [0, 1] range).
Methods (:data:`METHODS`): replacement with PC + Langevin or predictor-only, DPS, PiGDM, DDRM, and the particle
samplers TDS and MCGdiff (K = :data:`NUM_PARTICLES` particles per returned sample).

Every restoration runs through :class:`~scorekit.pipelines.ScoreSDERestorationPipeline`, as users run it (which
clips the denoised estimate to the data range at each score evaluation; see its ``clips_denoised``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from scorekit.conditioning import (
    Blur,
    Downsample,
    Gray,
    Mask,
    Observation,
    gaussian_kernel,
)

from .common import mark_hole
from .restore import DEFAULT_NOISE
from .restore import TASKS as CLI_TASKS

# the deblurring task of scorekit restore's defaults (one place): Gaussian kernel sigma 1 px, 5x5 taps, sigma_y 0.02
BLUR_SIGMA, BLUR_TAPS = CLI_TASKS["deblur"][1]["blur_sigma"], CLI_TASKS["deblur"][1]["kernel_size"]
DEBLUR_SIGMA_Y = DEFAULT_NOISE["deblur"]
NUM_PARTICLES = 4


@dataclass(frozen=True)
class Task:
    """A restoration task: which shipped data, the operator for images of ``shape`` and the noise.

    ``kind`` is ``"inpaint"`` (the mask observes the top half / all but the centre square), ``"superres"``,
    ``"colorize"`` or ``"deblur"``.
    """

    name: str
    data: str  # "digits" or "photos"
    kind: str
    sigma_y: float = 0.0
    what: str = ""

    def operator(self, shape: tuple[int, ...]):
        """The :class:`~scorekit.conditioning.LinearOperator` for images ``(C, H, W)``."""
        if self.kind == "inpaint":
            return Mask(~self.hole(shape).bool(), shape)
        if self.kind == "superres":
            return Downsample(shape, 2)
        if self.kind == "colorize":
            return Gray(shape)
        return Blur(gaussian_kernel(BLUR_SIGMA, BLUR_TAPS), shape)

    def hole(self, shape: tuple[int, ...]) -> torch.Tensor:
        """``(1, H, W)`` 1 where inpainting repaints (bottom half of a digit, centre square of a photo)."""
        h, w = shape[-2:]
        hole = torch.zeros(1, h, w)
        if self.data == "digits":
            hole[:, h // 2:] = 1
        else:
            hole[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
        return hole

    @property
    def baseline_name(self) -> str:
        return {"inpaint": "mean of the known pixels", "superres": "bicubic upsampling",
                "colorize": "the gray image", "deblur": "the blurred input"}[self.kind]

    def baseline(self, y: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """The trivial answer in [0, 1] from ``y`` (in [0, 1] units: :func:`observe`) and, for inpainting, the
        known pixels of ``truth``."""
        if self.kind == "inpaint":
            hole = self.hole(truth.shape[1:]).expand_as(truth).bool()
            known = ~hole
            fill = (truth * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True)
            return torch.where(hole, fill, truth)
        if self.kind == "superres":
            return torch.nn.functional.interpolate(y, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
        if self.kind == "colorize":
            return y.expand_as(truth)
        return y.clamp(0, 1)

    def panel(self, y: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """The observation as an image for a figure: the hole as a magenta checkerboard (RGB), the low-resolution
        image upsampled by repetition, the gray or blurred image (like ``truth``)."""
        if self.kind == "inpaint":
            return mark_hole(truth, self.hole(truth.shape[1:])[None])
        if self.kind == "superres":
            return torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        return y.expand_as(truth).clamp(0, 1)


TASKS = {t.name: t for t in (
    Task("digits inpainting", "digits", "inpaint", what="bottom half masked"),
    Task("digits super-resolution", "digits", "superres", what="2x, 4x4 average pooling -> 8x8"),
    Task("photo inpainting", "photos", "inpaint", what="centre 8x8 masked"),
    Task("photo colorization", "photos", "colorize", what="gray input"),
    Task("photo deblurring", "photos", "deblur", DEBLUR_SIGMA_Y,
         what=f"Gaussian blur sigma {BLUR_SIGMA:g} px ({BLUR_TAPS}x{BLUR_TAPS}, circular), noise sigma_y "
              f"{DEBLUR_SIGMA_Y:g} in [-1, 1] units"),
)}


@dataclass(frozen=True)
class Method:
    """A row of the table: a restoration ``method`` (:data:`scorekit.restoration_methods.METHODS`) with its
    ``method_options`` and the pipeline settings it runs with (``steps`` = ``num_inference_steps``)."""

    name: str
    label: str
    method: str
    settings: dict = field(default_factory=dict)
    method_options: dict = field(default_factory=dict)

    def describe(self, steps: int) -> str:
        return self.label.format(steps=steps)


METHODS = {m.name: m for m in (
    Method("replacement-pc", "replacement, PC {steps} steps + Langevin", "replacement", dict(sampler="pc")),
    Method("replacement", "replacement, PC {steps} steps predictor-only", "replacement",
           dict(sampler="pc", corrector="none")),
    # the methods' own defaults (restoration_methods.METHODS): DPS on ancestral steps, PiGDM on DDIM with eta 1
    Method("dps", "DPS (scale 0.5), {steps} ancestral steps", "dps", method_options=dict(scale=0.5)),
    Method("pigdm", "PiGDM, DDIM eta 1, {steps} steps", "pigdm"),
    Method("ddrm", "DDRM (eta 0.85, eta_b 1), {steps} steps", "ddrm"),
    Method("tds", f"TDS, K = {NUM_PARTICLES} particles x {{steps}} steps", "tds",
           dict(num_particles=NUM_PARTICLES)),
    Method("mcgdiff", f"MCGdiff, K = {NUM_PARTICLES} particles x {{steps}} steps", "mcgdiff",
           dict(num_particles=NUM_PARTICLES)),
)}


def observe(pipe, task: Task, truth: torch.Tensor, seed: int) -> tuple[Observation, torch.Tensor]:
    """``y = A x + sigma_y e`` of images ``truth`` ``(n, C, H, W)`` in [0, 1], in the model's range, and ``y`` mapped
    back to [0, 1] units (for baselines and figures; the operators preserve constants, so the map is the same)."""
    op = task.operator(tuple(truth.shape[1:]))
    x = pipe.to_model_range(truth, torch.float32)
    y = op(x)
    if task.sigma_y > 0:
        y = y + task.sigma_y * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1))
    lo, hi = pipe.scheduler.data_range
    return Observation(op, y, task.sigma_y), (y - lo) / (hi - lo)


def restore(pipe, task: Task, truth: torch.Tensor, per_image: int, method: Method, steps: int, seed: int) -> dict:
    """``per_image`` restorations of each image of ``truth`` ``(n, C, H, W)`` in [0, 1] with ``method``, by a
    :class:`~scorekit.pipelines.ScoreSDERestorationPipeline` over ``pipe``'s UNet and scheduler.

    Returns:
        dict with ``samples`` ``(n, per_image, C, H, W)`` in [0, 1], ``y`` (the observation in [0, 1] units),
        ``nfe`` (score evaluations per returned sample: particles x score calls for a particle sampler),
        ``seconds``, ``method`` (a one-line description).
    """
    obs, y_unit = observe(pipe, task, truth, seed)
    k = per_image
    batch = Observation(obs.operator, obs.y.repeat_interleave(k, 0), obs.sigma_y)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    res = restorer(pipe)(observation=batch, method=method.method, method_options=method.method_options or None,
                         batch_size=len(truth) * k, num_inference_steps=steps, generator=g, output_type="pt",
                         **method.settings)
    seconds = time.perf_counter() - start
    samples = res.images.float().reshape(len(truth), k, *truth.shape[1:])
    return dict(samples=samples, y=y_unit, nfe=res.nfe_per_sample, seconds=seconds, method=method.describe(steps))


def restorer(pipe):
    """A :class:`~scorekit.pipelines.ScoreSDERestorationPipeline` over ``pipe``'s UNet and scheduler (its progress
    bar settings kept)."""
    from scorekit.pipelines import ScoreSDERestorationPipeline

    if isinstance(pipe, ScoreSDERestorationPipeline):
        return pipe
    other = ScoreSDERestorationPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    other.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return other


def coverage(samples: torch.Tensor, truth: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """Fraction of true pixels inside the pixelwise 90 % interval of ``samples`` ``(n, k, C, H, W)``.

    The interval runs between the samples' 5th and 95th percentiles by the unbiased-rank rule (Hyndman & Fan type 6,
    order statistic ``p (k + 1)``): with ``k = 16`` samples these are the smallest and the largest, an interval that
    exact posterior draws cover with probability ``15 / 17 = 0.88`` (``(k - 1) / (k + 1)``; 0.90 needs ``k >= 19``).
    ``where`` (broadcastable to ``truth``) restricts the count to the unknown pixels, e.g. an inpainting hole.
    """
    k = samples.shape[1]
    lo_rank, hi_rank = (min(max(round(p * (k + 1)), 1), k) - 1 for p in (0.05, 0.95))
    ordered = samples.sort(dim=1).values
    inside = (ordered[:, lo_rank] <= truth) & (truth <= ordered[:, hi_rank])
    if where is None:
        return float(inside.float().mean())
    where = where.expand_as(truth).bool()
    return float(inside[where].float().mean())


def expected_coverage(k: int) -> float:
    """What :func:`coverage` gives on average for exact draws: ``(hi_rank - lo_rank) / (k + 1)``."""
    lo, hi = (min(max(round(p * (k + 1)), 1), k) for p in (0.05, 0.95))
    return (hi - lo) / (k + 1) if k > 1 else 0.0
