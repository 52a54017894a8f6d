"""The torch side of ``scorekit restore``: the task's operator and observation from the files, the restoration
pipeline call, the PNG grid (observation | samples | truth)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from .common import load_image, load_pipeline, mark_hole, sampler_overrides, save_grid
from .restore import load_kernel


@dataclass
class Observed:
    """What one run restores: the operator, the observation as the pipeline takes it (images in [0, 1], or ``y`` in
    the model's range with ``--simulate``), its noise, the grid's leading panels and the truth (``--simulate``)."""

    operator: object
    observation: object
    noise_std: float
    panels: list[torch.Tensor]
    truth: torch.Tensor | None


def restore(args: argparse.Namespace) -> int:
    from scorekit.pipelines import ScoreSDERestorationPipeline

    pipe = load_pipeline(args.model, args.device, ScoreSDERestorationPipeline)
    seen = observe(pipe, args)
    count = args.batch_size if hasattr(args, "batch_size") else args.num_samples
    options = {k: v for k, v in (("scale", args.scale), ("eta", args.ddrm_eta), ("eta_b", args.ddrm_eta_b))
               if v is not None}
    settings = sampler_overrides(args)
    solver = {"method": settings.pop("method")} if "method" in settings else {}  # --ode-method: method= is ours
    start = time.perf_counter()
    out = pipe(observation=seen.observation, operator=seen.operator, noise_std=seen.noise_std,
               method=args.restoration_method, batch_size=count, method_options=options, sampler=args.sampler,
               num_inference_steps=args.steps, generator=torch.Generator(device=args.device).manual_seed(args.seed),
               output_type="pt", sampler_options=solver, **settings)
    seconds = time.perf_counter() - start
    samples = rgb(out.images.float().cpu())
    k = out.particles["num_particles"] if args.return_particles else 1
    per_row = k if args.return_particles else len(samples)  # one row per sample's particles, else one row
    rows = [[*seen.panels, samples[i:i + per_row], *([] if seen.truth is None else [rgb(seen.truth)])]
            for i in range(0, len(samples), per_row)]
    save_grid(torch.cat([t for row in rows for t in row]), args.out, nrow=sum(len(t) for t in rows[0]))
    print(f"wrote {args.out}: {describe(seen, args, len(samples), k)}; method {args.restoration_method}, sampler "
          f"{out.sampler}, NFE {out.nfe_per_sample} per sample{per_particle(out)}, {seconds:.1f} s{psnr(out, seen)}")
    return 0


def observe(pipe, args: argparse.Namespace) -> Observed:
    """The task's operator and observation for ``pipe``'s samples (see ``scorekit restore --help``)."""
    _, channels, height, width = pipe.sample_shape(1)
    noise = args.noise_std  # resolved by scorekit.cli.restore.run (DEFAULT_NOISE)
    operator, hole = task_operator(args, (channels, height, width))
    out_c, out_h, out_w = operator.out_shape
    truth = None
    if args.simulate:
        truth = unit_tensor(load_image(args.image, (width, height), channels, resize=args.resize))
        y = operator(pipe.to_model_range(truth, torch.float32).cpu())
        # the observation's noise from its own stream (seed + 1), not the sampler's first draws (as the demo does)
        y = y + noise * torch.randn(y.shape, generator=torch.Generator().manual_seed(args.seed + 1))
        lo, hi = pipe.scheduler.data_range
        ones = torch.ones(1, *operator.in_shape)
        observation, y01 = y, ((y - lo * operator(ones)) / (hi - lo)).clamp(0, 1)
    else:
        gray = "mean" if args.task == "colorize" else "luma"  # the Gray operator observes the mean of R, G, B
        needs = "the model takes" if (out_h, out_w) == (height, width) else f"--factor {args.factor} observes"
        image = load_image(args.image, (out_w, out_h), out_c, resize=args.resize, gray=gray, needs=needs)
        observation, y01 = image[None], unit_tensor(image)
    return Observed(operator, observation, noise, panels(args.task, y01, hole, (height, width)), truth)


def task_operator(args: argparse.Namespace, shape: tuple[int, int, int]):
    """``(operator, hole)`` of ``--task`` for samples of ``shape`` ``(C, H, W)``; ``hole`` ``(1, 1, H, W)`` is 1
    where inpainting repaints (``None`` for the other tasks)."""
    from scorekit.conditioning import Blur, Downsample, Gray, Mask

    channels, height, width = shape
    if args.task == "inpaint":
        hole = unit_tensor(binary_mask(load_image(args.mask, (width, height), 1, option="--mask", resize=args.resize),
                                       args))
        return Mask(hole[0] < 0.5, shape), hole
    if args.task == "colorize":
        if channels != 3:
            raise ValueError(f"--task colorize needs an RGB model (in_channels=3); {args.model} has {channels}")
        return Gray(shape), None
    if args.task == "superres":
        if height % args.factor or width % args.factor:
            raise ValueError(f"--factor {args.factor} does not divide the model's size {width}x{height}")
        return Downsample(shape, args.factor), None
    return Blur(blur_kernel(args), shape), None


def blur_kernel(args: argparse.Namespace) -> torch.Tensor:
    """``--kernel``: gaussian (``--blur-sigma``, ``--kernel-size``), box (``--kernel-size``) or a 2-D .npy file."""
    from scorekit.conditioning import box_kernel, gaussian_kernel

    if args.kernel == "gaussian":
        return gaussian_kernel(args.blur_sigma, args.kernel_size)
    if args.kernel == "box":
        return box_kernel(args.kernel_size)
    return torch.from_numpy(load_kernel(args.kernel))  # checked before the model loaded


def binary_mask(mask: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """The ``(H, W, 1)`` mask as pure 0 / 1: as given, or thresholded at 50% under --threshold-mask (reported)."""
    gray = np.unique(mask[(mask > 0.5 / 255) & (mask < 254.5 / 255)])
    if not gray.size:
        return mask.round()
    if not args.threshold_mask:
        raise ValueError(f"--mask {args.mask} has gray levels (e.g. {', '.join(f'{v:.3f}' for v in gray[:3])} on "
                         f"[0, 1]), not only black and white; pass --threshold-mask to binarize it at 50%")
    print(f"thresholded --mask {args.mask} at 50% (--threshold-mask): {gray.size} gray levels made black or white")
    return (mask > 0.5).astype(mask.dtype)


def unit_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` floats in [0, 1] -> ``(1, C, H, W)`` float32."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()


def rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def panels(task: str, y01: torch.Tensor, hole: torch.Tensor | None, size: tuple[int, int]) -> list[torch.Tensor]:
    """The grid's leading panels from the observation in [0, 1]: inpainting's image with the hole in magenta and the
    mask, the low-resolution image upsampled by repetition, the gray or blurred image."""
    if task == "inpaint":
        return [mark_hole(rgb(y01), hole), mark_hole(torch.zeros(1, 3, *size), hole)]
    if task == "superres":
        return [rgb(torch.nn.functional.interpolate(y01, size=size, mode="nearest"))]
    return [rgb(y01)]


def describe(seen: Observed, args: argparse.Namespace, count: int, k: int) -> str:
    first = "observation, mask (hole: magenta checkerboard)" if args.task == "inpaint" else "observation"
    what = f"{count // k} samples x {k} particles (--return-particles)" if k > 1 else f"{count} samples"
    return f"{first}, {what}" + (", truth" if seen.truth is not None else "")


def per_particle(out) -> str:
    return "" if out.particles is None else f" ({out.particles['num_particles']} particles x {out.nfe})"


def psnr(out, seen: Observed) -> str:
    """With ``--simulate``: the samples' mean PSNR against the truth."""
    if seen.truth is None:
        return ""
    from scorekit.metrics import psnr as psnr_db

    return f"; PSNR {psnr_db(out.images.cpu(), seen.truth):.2f} dB per sample against the truth"
