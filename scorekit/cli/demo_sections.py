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

from .demo_models import ShippedDigits

GAP = 0.5  # gray of the masked pixels in an observation panel


def save_panel(images: torch.Tensor, path: str, nrow: int, scale: int = 4) -> str:
    """Save ``(B, C, H, W)`` images in [0, 1] as a grid, upscaled ``scale`` x (nearest) so small images are legible."""
    from torchvision.utils import make_grid, save_image

    grid = make_grid(images.float().clamp(0, 1).cpu(), nrow=nrow, padding=1, pad_value=1.0)
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    save_image(grid, path)
    return path


def _timed_sample(score_fn, sde, shape, generator, progress, condition=None, **kwargs):
    start = time.perf_counter()
    x, info = scorekit.sample(score_fn, sde, shape, generator=generator, condition=condition, progress=progress,
                              **kwargs)
    return x, info, time.perf_counter() - start


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)  # model range [-1, 1] -> [0, 1]


def unconditional_digits(model: ShippedDigits, out: str, num: int, steps: int, seed: int, progress) -> dict:
    """An unconditional grid (the "no label" token) with DDIM."""
    g = torch.Generator().manual_seed(seed)
    x, info, sec = _timed_sample(model.score_fn(None), model.sde, (num, 1, 8, 8), g, progress, sampler="ddim",
                                 steps=steps)
    nrow = int(math.ceil(math.sqrt(num)))
    save_panel(_to_unit(x), os.path.join(out, "digits_unconditional.png"), nrow)
    return dict(file="digits_unconditional.png", nfe=info["nfe"], seconds=sec, num=num,
                caption=f"Unconditional digits: {num} samples, DDIM {steps} steps (NFE {info['nfe']}).")


def guided_digits(model: ShippedDigits, out: str, per_class: int, steps: int, scale: float, seed: int, progress,
                  kind: str) -> dict:
    """One row per digit 0..9, by classifier-free guidance (``kind="cfg"``) or classifier guidance (``"classifier"``)."""
    labels = torch.arange(10).repeat_interleave(per_class)
    g = torch.Generator().manual_seed(seed)
    if kind == "cfg":
        score_fn, condition, label = model.score_fn(labels, cfg_scale=scale), None, "classifier-free guidance"
    else:
        from scorekit.models import classifier_log_prob_fn

        if model.classifier is None:
            raise ValueError("the digits model folder has no classifier/ for classifier guidance")
        score_fn, label = model.score_fn(None), "classifier guidance"
        condition = scorekit.ClassifierGuidance(classifier_log_prob_fn(model.classifier, model.sde), labels, scale)
    x, info, sec = _timed_sample(score_fn, model.sde, (len(labels), 1, 8, 8), g, progress, condition=condition,
                                 sampler="ddim", steps=steps)
    name = f"digits_{kind}.png"
    save_panel(_to_unit(x), os.path.join(out, name), per_class)
    cost = "2 UNet calls each" if kind == "cfg" else "plus a classifier gradient each"
    return dict(file=name, nfe=info["nfe"], seconds=sec, scale=scale, samples=x, labels=labels,
                caption=f"One row per digit 0-9, {label} (scale {scale:g}), DDIM {steps} steps "
                        f"(NFE {info['nfe']}, {cost}).")


def _comparison(obs: torch.Tensor, samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Rows of observation | samples | truth: ``obs``/``truth`` ``(n, C, H, W)``, ``samples`` ``(n, k, C, H, W)``."""
    return torch.cat([obs[:, None], samples, truth[:, None]], dim=1).flatten(0, 1)


def inpaint_digits(model: ShippedDigits, out: str, num: int, per_image: int, steps: int, seed: int, progress) -> dict:
    """Held-out test digits with the bottom half masked, repainted by PC (reverse diffusion + Langevin)."""
    levels, _ = datasets.digits_split("test")
    levels = levels[torch.randperm(len(levels), generator=torch.Generator().manual_seed(seed))[:num]]
    truth = -1 + 2 * (levels.float() + 0.5) / datasets.DIGITS_LEVELS  # bin centres in the model's range
    known = torch.ones_like(truth, dtype=torch.bool)
    known[..., 4:, :] = False
    image = truth.repeat_interleave(per_image, 0)
    g = torch.Generator().manual_seed(seed)
    x, info, sec = _timed_sample(model.score_fn(None), model.sde, tuple(image.shape), g, progress, sampler="pc",
                                 steps=steps, condition=scorekit.Inpaint(image, known.repeat_interleave(per_image, 0)))
    obs = torch.where(known, _to_unit(truth), torch.full_like(truth, GAP))
    samples = _to_unit(x).reshape(num, per_image, 1, 8, 8)
    save_panel(_comparison(obs, samples, _to_unit(truth)), os.path.join(out, "digits_inpainting.png"), per_image + 2)
    mse = ((samples - _to_unit(truth)[:, None]) ** 2)[..., 4:, :].mean()
    return dict(file="digits_inpainting.png", nfe=info["nfe"], seconds=sec,
                psnr_masked=float(-10 * torch.log10(mse)),
                caption=f"Inpainting held-out test digits (bottom half masked): observation | {per_image} samples | "
                        f"truth; PC sampler {steps} steps + Langevin corrector (NFE {info['nfe']}).")


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
        obs = torch.where(mask.bool(), torch.full_like(truth, GAP), truth)
        what = "centre square masked"
    else:
        res = pipe(image=images, num_inference_steps=steps, generator=g, output_type="pt", sampler="pc")
        obs = truth.mean(1, keepdim=True).expand_as(truth)
        what = "gray input"
    sec = time.perf_counter() - start
    samples = res.images.float().reshape(num, per_image, *truth.shape[1:])
    name = f"photo_{task}.png"
    save_panel(_comparison(obs, samples, truth), os.path.join(out, name), per_image + 2, scale=3)
    mse = ((samples - truth[:, None]) ** 2).mean()
    return dict(file=name, nfe=res.nfe, seconds=sec, psnr=float(-10 * torch.log10(mse)),
                caption=f"Photo {task} on patches of held-out photos ({what}): observation | {per_image} samples | "
                        f"truth; PC sampler {steps} steps + Langevin corrector (NFE {res.nfe}).")


def digits_bpd(model: ShippedDigits, num: int, rtol: float, seed: int) -> dict:
    """Bits/dim of ``num`` held-out test digits (17 levels, dequantized, PF-ODE), with its standard error."""
    levels, _ = datasets.digits_split("test")
    levels = levels[:num]
    start = time.perf_counter()
    bpd, info = scorekit.bits_per_dim(model.score_fn(None), model.sde, levels, num_levels=datasets.DIGITS_LEVELS,
                                      data_range=(-1.0, 1.0), rtol=rtol, atol=rtol,
                                      generator=torch.Generator().manual_seed(seed))
    stderr = float(bpd.std() / math.sqrt(len(bpd)))
    return dict(bpd=float(bpd.mean()), stderr=stderr, num=len(bpd), nfe=info["nfe"],
                seconds=time.perf_counter() - start, rtol=rtol, uniform_bpd=math.log2(datasets.DIGITS_LEVELS))
