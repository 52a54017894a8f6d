"""The parts of ``scorekit demo``: each draws from a shipped model, writes one PNG and returns what it measured.

Every function returns a dict with ``file`` (PNG name inside the output folder), ``caption`` (one line for
``index.html``), ``nfe`` (score evaluations per sample path), ``seconds`` and its own metrics.
"""

from __future__ import annotations

import math
import os
import time

import torch

import scorekit
from scorekit import datasets

from .common import mark_hole

FAST_SAMPLER, FAST_SAMPLER_NAME = "dpmsolver++", "DPM-Solver++(2M)"  # logSNR grid; steps + 1 denoising call = NFE


def save_panel(images: torch.Tensor, path: str, nrow: int, scale: int = 4) -> str:
    """Save ``(B, C, H, W)`` images in [0, 1] as a grid, upscaled ``scale`` x (nearest) so small images are legible."""
    from torchvision.utils import make_grid, save_image

    grid = make_grid(images.float().clamp(0, 1).cpu(), nrow=nrow, padding=1, pad_value=1.0)
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    save_image(grid, path)
    return path


def sibling(cls, pipe):
    """A ``cls`` pipeline over ``pipe``'s unet and scheduler (shared, not copied), with its progress-bar settings."""
    other = cls(unet=pipe.unet, scheduler=pipe.scheduler)
    other.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
    return other


def unconditional_digits(pipe, out: str, num: int, steps: int, seed: int) -> dict:
    """An unconditional grid (the class-conditional UNet's "no label" token) with DPM-Solver++(2M)."""
    from scorekit.pipelines import ScoreSDEPipeline

    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    res = sibling(ScoreSDEPipeline, pipe)(
        batch_size=num, num_inference_steps=steps, generator=g, output_type="pt", sampler=FAST_SAMPLER)
    sec = time.perf_counter() - start
    save_panel(res.images, os.path.join(out, "digits_unconditional.png"), int(math.ceil(math.sqrt(num))))
    return dict(file="digits_unconditional.png", nfe=res.nfe, seconds=sec, num=num,
                caption=f"Unconditional digits: {num} samples, {FAST_SAMPLER_NAME} {steps} steps (NFE {res.nfe}).")


def guided_digits(pipe, out: str, per_class: int, steps: int, scale: float, seed: int, kind: str) -> dict:
    """One row per digit 0..9, by classifier-free guidance (``kind="cfg"``) or classifier guidance (``"classifier"``,
    the unconditional score plus ``scale`` times the noise-conditional classifier's gradient)."""
    labels = torch.arange(10).repeat_interleave(per_class)
    g = torch.Generator().manual_seed(seed)
    guidance = dict(guidance_scale=scale) if kind == "cfg" else dict(guidance_scale=0.0, classifier_scale=scale)
    start = time.perf_counter()
    res = pipe(class_labels=labels, num_inference_steps=steps, generator=g, output_type="pt", sampler=FAST_SAMPLER,
               **guidance)
    sec = time.perf_counter() - start
    name = f"digits_{kind}.png"
    save_panel(res.images, os.path.join(out, name), per_class)
    label = "classifier-free guidance" if kind == "cfg" else "classifier guidance"
    return dict(file=name, nfe=res.nfe, seconds=sec, scale=scale, samples=res.images, labels=labels,
                caption=f"One row per digit 0-9, {label} (scale {scale:g}), {FAST_SAMPLER_NAME} {steps} steps "
                        f"(NFE {res.nfe}).")


def _comparison(obs: torch.Tensor, samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Rows of observation | samples | truth: ``obs``/``truth`` ``(n, C, H, W)``, ``samples`` ``(n, k, C, H, W)``;
    gray panels are shown in RGB when the observation is (its hole is marked in colour)."""
    rgb = obs.shape[1] == 3
    samples = samples.expand(-1, -1, 3, -1, -1) if rgb else samples
    truth = truth.expand(-1, 3, -1, -1) if rgb else truth
    return torch.cat([obs[:, None], samples, truth[:, None]], dim=1).flatten(0, 1)


def inpaint_digits(pipe, out: str, num: int, per_image: int, steps: int, seed: int) -> dict:
    """Held-out test digits with the bottom half masked, repainted by PC (reverse diffusion + Langevin)."""
    from scorekit.pipelines import ScoreSDEInpaintPipeline

    levels, _ = datasets.digits_split("test")
    truth = datasets.levels_to_unit(levels[torch.randperm(len(levels), generator=torch.Generator().manual_seed(seed))
                                           [:num]])
    mask = torch.zeros_like(truth)
    mask[..., 4:, :] = 1  # white = repaint
    inpaint = sibling(ScoreSDEInpaintPipeline, pipe)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    res = inpaint(image=truth.repeat_interleave(per_image, 0), mask_image=mask.repeat_interleave(per_image, 0),
                  num_inference_steps=steps, generator=g, output_type="pt", sampler="pc")
    sec = time.perf_counter() - start
    obs = mark_hole(truth, mask)  # the hole as a magenta checkerboard (a gray fill merges with the strokes)
    samples = res.images.float().reshape(num, per_image, 1, 8, 8)
    save_panel(_comparison(obs, samples, truth), os.path.join(out, "digits_inpainting.png"), per_image + 2)
    return dict(file="digits_inpainting.png", nfe=res.nfe, seconds=sec,
                psnr_masked=psnr(samples[..., 4:, :], truth[:, None, ..., 4:, :]),
                caption=f"Inpainting held-out test digits (bottom half masked, in magenta): observation | {per_image} "
                        f"samples | truth; PC sampler {steps} steps + Langevin corrector (NFE {res.nfe}).")


def psnr(x: torch.Tensor, truth: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1]: ``-10 log10(mean((x - truth)^2))``."""
    return float(-10 * torch.log10(((x.float() - truth.float()) ** 2).mean()))


def photo_task(pipe, out: str, task: str, num: int, per_image: int, steps: int, seed: int) -> dict:
    """Inpainting (centre square masked) or colorization of held-out photo patches with the shipped photo pipeline."""
    truth = datasets.photo_patches("test", num, size=pipe.unet.config.sample_size, seed=seed)
    images = truth.repeat_interleave(per_image, 0)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    if task == "inpainting":
        mask = torch.zeros_like(truth[:, :1])
        s = truth.shape[-1]
        mask[..., s // 4: 3 * s // 4, s // 4: 3 * s // 4] = 1  # white = repaint
        res = pipe(image=images, mask_image=mask.repeat_interleave(per_image, 0), num_inference_steps=steps,
                   generator=g, output_type="pt", sampler="pc")
        obs = mark_hole(truth, mask)
        what = "centre square masked, in magenta"
    else:
        res = pipe(image=images, num_inference_steps=steps, generator=g, output_type="pt", sampler="pc")
        obs = truth.mean(1, keepdim=True).expand_as(truth)
        what = "gray input"
    sec = time.perf_counter() - start
    samples = res.images.float().reshape(num, per_image, *truth.shape[1:])
    name = f"photo_{task}.png"
    save_panel(_comparison(obs, samples, truth), os.path.join(out, name), per_image + 2, scale=3)
    return dict(file=name, nfe=res.nfe, seconds=sec, psnr=psnr(samples, truth[:, None]),
                psnr_sample_mean=psnr(samples.mean(1), truth),
                caption=f"Photo {task} on patches of held-out photos ({what}): observation | {per_image} samples | "
                        f"truth; PC sampler {steps} steps + Langevin corrector (NFE {res.nfe}).")


def digits_bpd(pipe, num: int, rtol: float, seed: int) -> dict:
    """Bits/dim of ``num`` held-out test digits (17 levels, dequantized, PF-ODE) and its standard error over digits."""
    levels, _ = datasets.digits_split("test")
    levels = levels[:num]
    start = time.perf_counter()
    bpd, info = scorekit.bits_per_dim(pipe.score_fn(), pipe.sde, levels, num_levels=datasets.DIGITS_LEVELS,
                                      data_range=datasets.DIGITS_DATA_RANGE, rtol=rtol, atol=rtol,
                                      generator=torch.Generator().manual_seed(seed))
    stderr = float(bpd.std() / math.sqrt(len(bpd)))
    return dict(bpd=float(bpd.mean()), stderr=stderr, num=len(bpd), nfe=info["nfe"],
                seconds=time.perf_counter() - start, rtol=rtol, uniform_bpd=math.log2(datasets.DIGITS_LEVELS))
