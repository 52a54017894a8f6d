"""``scorekit likelihood``: bits/dim of 8-bit images under a saved score SDE pipeline (PF-ODE, eq. 39-40)."""

from __future__ import annotations

import argparse
import math

import torch

from ..likelihood import PROBES, bits_per_dim, levels_from_data
from ..ode import ADAPTIVE_METHODS

NUM_LEVELS = 256  # 8-bit images


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "likelihood",
        help="bits/dim of 8-bit images under a saved pipeline (probability-flow ODE)",
        description="Estimate the bits/dim of 8-bit images (PNG, ...) under a saved ScoreSDEPipeline through the "
        "probability-flow ODE with uniform dequantization and Hutchinson divergence probes. Prints one line per "
        "image and the mean with its standard error.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", default=argparse.SUPPRESS,
                        help="folder of a saved ScoreSDEPipeline (save_pretrained) or a flat DDPM/NCSN++ folder")
    parser.add_argument("--images", required=True, nargs="+", metavar="PATH", default=argparse.SUPPRESS,
                        help="8-bit image files at the model's resolution (grayscale for 1-channel models)")
    parser.add_argument("--num-probes", type=int, default=1, metavar="K",
                        help="Hutchinson probes per image (K > 1 adds a per-image standard error)")
    parser.add_argument("--probe", choices=PROBES, default="rademacher", help="probe distribution")
    parser.add_argument("--method", default="dopri5", metavar="NAME",
                        help=f"adaptive ODE solver, one of {', '.join(ADAPTIVE_METHODS)}")
    parser.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance of the ODE solver")
    parser.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance of the ODE solver")
    parser.add_argument("--eps", type=float, default=None,
                        help="start time of the ODE (the density is p_eps); None: the SDE's sampling_eps (the "
                        "paper's bits/dim used 1e-5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dequantization noise and the probes")
    parser.add_argument("--batch-size", type=int, default=8, help="images per ODE solve")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import ScoreSDEPipeline

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    pipe = ScoreSDEPipeline.from_pretrained(args.model)
    levels = image_levels(pipe, args.images)
    generator = torch.Generator(device=levels.device).manual_seed(args.seed)
    score_fn, data_range, bpds, stderrs = pipe.score_fn(), pipe.scheduler.data_range, [], []
    for batch in levels.split(args.batch_size):
        bpd, info = bits_per_dim(score_fn, pipe.sde, batch, num_levels=NUM_LEVELS, data_range=data_range,
                                 num_probes=args.num_probes, probe=args.probe, method=args.method, rtol=args.rtol,
                                 atol=args.atol, eps=args.eps, generator=generator, dtype=pipe.unet.dtype)
        bpds.append(bpd.double())
        stderrs.append(info["stderr"].double() if info["stderr"] is not None else None)
    bpd = torch.cat(bpds)
    stderr = None if stderrs[0] is None else torch.cat(stderrs)
    for i, path in enumerate(args.images):
        print(f"{path}: {bpd[i]:.4f}" + ("" if stderr is None else f" +- {stderr[i]:.4f}") + " bits/dim")
    print(summary(bpd, stderr))
    return 0


def image_levels(pipe, paths: list[str]) -> torch.Tensor:
    """Load 8-bit images as integer levels ``(B, C, H, W)`` through ``pipe.preprocess`` (same layout and range)."""
    import PIL.Image

    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    images = []
    for path in paths:
        with PIL.Image.open(path) as im:
            if im.size != (width, height):
                raise ValueError(f"{path}: image is {im.size[0]}x{im.size[1]} but the model takes {width}x{height}")
            if im.mode not in ("1", "L", "P", "RGB", "RGBA"):
                raise ValueError(f"{path}: mode {im.mode!r} is not 8-bit (accepted: 1, L, P, RGB, RGBA)")
            images.append(im.convert("L" if pipe.unet.config.in_channels == 1 else "RGB"))
    return levels_from_data(pipe.preprocess(images), NUM_LEVELS, pipe.scheduler.data_range)


def summary(bpd: torch.Tensor, stderr: torch.Tensor | None) -> str:
    """Mean bits/dim and its standard error: over images (``std / sqrt(n)``, n >= 2), else the probes' one."""
    n = len(bpd)
    if n > 1:
        # the spread over images holds the data's and the probes' variability: an honest error of the data-set mean
        return f"mean: {bpd.mean():.4f} +- {bpd.std() / math.sqrt(n):.4f} bits/dim (standard error over {n} images)"
    if stderr is not None:
        return f"mean: {bpd[0]:.4f} +- {stderr[0]:.4f} bits/dim (probe standard error, 1 image)"
    return f"mean: {bpd[0]:.4f} bits/dim (1 image, 1 probe: no standard error; use --num-probes > 1)"
