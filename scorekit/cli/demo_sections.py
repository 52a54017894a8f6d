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
from scorekit.metrics import psnr

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
    """An unconditional grid with DPM-Solver++(2M) (of an unconditional model, or a class-conditional UNet's "no
    label" token)."""
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


def held_out(data: str, num: int, seed: int) -> torch.Tensor:
    """``num`` held-out images in [0, 1] chosen by ``seed``: test digits ``(num, 1, 8, 8)`` or patches of the
    held-out photos ``(num, 3, 16, 16)``."""
    if data == "photos":
        return datasets.photo_patches("test", num, seed=seed)
    levels, _ = datasets.digits_split("test")
    return datasets.levels_to_unit(levels[torch.randperm(len(levels), generator=torch.Generator().manual_seed(seed))
                                          [:num]])


def restoration(pipe, out: str, task_name: str, num: int, per_image: int, method: str, steps: int, seed: int,
                scale: int = 4) -> dict:
    """Restore ``num`` held-out images of a task of :mod:`.demo_restoration` (``per_image`` samples each, with
    ``method`` at ``steps``) and save observation | samples | truth rows; PSNR of one sample (squared error pooled
    over the samples), of the mean of each image's samples, and of the task's trivial baseline."""
    from .demo_restoration import METHODS, TASKS, restore

    task = TASKS[task_name]
    truth = held_out(task.data, num, seed)
    r = restore(pipe, task, truth, per_image, METHODS[method], steps, seed)
    name = task_name.replace(" ", "_").replace("-", "") + ".png"
    save_panel(_comparison(task.panel(r["y"], truth), r["samples"], truth), os.path.join(out, name), per_image + 2,
               scale)
    one, baseline = psnr(r["samples"], truth[:, None]), psnr(task.baseline(r["y"], truth), truth)
    return dict(file=name, nfe=r["nfe"], seconds=r["seconds"], method=r["method"], psnr=one,
                psnr_sample_mean=psnr(r["samples"].mean(1), truth), psnr_baseline=baseline,
                caption=f"{task_name[0].upper()}{task_name[1:]} ({task.what}), held-out {_held_out(task.data)}: "
                        f"observation | {per_image} samples | truth; {r['method']} (NFE {r['nfe']}); PSNR "
                        f"{one:.1f} dB per sample ({task.baseline_name}: {baseline:.1f} dB).")


def _held_out(data: str) -> str:
    return "test digits" if data == "digits" else "photo patches"


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
