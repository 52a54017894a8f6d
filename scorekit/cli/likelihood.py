"""``scorekit likelihood``: bits/dim of 8-bit images under a saved score SDE pipeline (PF-ODE, eq. 39-40)."""

from __future__ import annotations

import argparse
import math

import torch

from ..likelihood import PROBES, bits_per_dim
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
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="folder of a saved ScoreSDEPipeline (save_pretrained) or a flat DDPM/NCSN++ folder")
    parser.add_argument("--images", required=True, nargs="+", metavar="PATH",
                        help="8-bit image files at the model's resolution (grayscale for 1-channel models)")
    parser.add_argument("--num-probes", type=int, default=1, metavar="K",
                        help="Hutchinson probes per image (K > 1 adds a per-image standard error)")
    parser.add_argument("--probe", choices=PROBES, default="rademacher", help="probe distribution")
    parser.add_argument("--method", default="dopri5", metavar="NAME",
                        help=f"adaptive ODE solver, one of {', '.join(ADAPTIVE_METHODS)}")
    parser.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance of the ODE solver")
    parser.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance of the ODE solver")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dequantization noise and the probes")
    parser.add_argument("--batch-size", type=int, default=8, help="images per ODE solve")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import ScoreSDEPipeline

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    pipe = ScoreSDEPipeline.from_pretrained(args.model)
    levels, data_range = image_levels(pipe, args.images)
    generator = torch.Generator().manual_seed(args.seed)
    score_fn, bpds, stderrs = pipe.score_fn(), [], []
    for batch in levels.split(args.batch_size):
        bpd, info = bits_per_dim(score_fn, pipe.sde, batch, num_levels=NUM_LEVELS, data_range=data_range,
                                 num_probes=args.num_probes, probe=args.probe, method=args.method, rtol=args.rtol,
                                 atol=args.atol, generator=generator, dtype=pipe.unet.dtype)
        bpds.append(bpd.double())
        stderrs.append(info["stderr"].double() if info["stderr"] is not None else None)
    bpd = torch.cat(bpds)
    stderr = None if stderrs[0] is None else torch.cat(stderrs)
    for i, path in enumerate(args.images):
        print(f"{path}: {bpd[i]:.4f}" + ("" if stderr is None else f" +- {stderr[i]:.4f}") + " bits/dim")
    print(summary(bpd, stderr))
    return 0


def image_levels(pipe, paths: list[str]) -> tuple[torch.Tensor, tuple[float, float]]:
    """Load 8-bit images as integer levels ``(B, C, H, W)`` laid out as ``pipe.preprocess`` lays them out.

    The model's data range is read off ``pipe.preprocess`` of an all-0 and an all-255 image; every pixel must map
    back onto the 8-bit grid (no resizing), else a ValueError says why.
    """
    import PIL.Image

    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    mode = "L" if pipe.unet.config.in_channels == 1 else "RGB"
    images = []
    for path in paths:
        with PIL.Image.open(path) as im:
            if im.size != (width, height):
                raise ValueError(f"{path}: image is {im.size[0]}x{im.size[1]} but the model takes {width}x{height}")
            if im.mode not in ("1", "L", "P", "RGB", "RGBA"):
                raise ValueError(f"{path}: mode {im.mode!r} is not 8-bit (accepted: L, P, RGB, RGBA)")
            images.append(im.convert(mode))
    lo, hi = (pipe.preprocess([PIL.Image.new(mode, (width, height), v)]).double().mean().item() for v in (0, 255))
    x = (pipe.preprocess(images).double() - lo) / (hi - lo) * (NUM_LEVELS - 1)
    if (x - x.round()).abs().max() > 1e-2:
        raise ValueError("pipe.preprocess does not map these images onto the 8-bit grid (was something resized?)")
    return x.round().long(), (lo, hi)


def summary(bpd: torch.Tensor, stderr: torch.Tensor | None) -> str:
    """Mean bits/dim and its standard error: over images (``std / sqrt(n)``, n >= 2), else the probes' one."""
    n = len(bpd)
    if n > 1:
        # the spread over images holds the data's and the probes' variability: an honest error of the data-set mean
        return f"mean: {bpd.mean():.4f} +- {bpd.std() / math.sqrt(n):.4f} bits/dim (standard error over {n} images)"
    if stderr is not None:
        return f"mean: {bpd[0]:.4f} +- {stderr[0]:.4f} bits/dim (probe standard error, 1 image)"
    return f"mean: {bpd[0]:.4f} bits/dim (1 image, 1 probe: no standard error; use --num-probes > 1)"
