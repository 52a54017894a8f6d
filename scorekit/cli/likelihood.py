"""``scorekit likelihood``: bits/dim of 8-bit images under a saved score SDE pipeline (PF-ODE, eq. 39-40)."""

from __future__ import annotations

import argparse
import math

import torch

from ..likelihood import PROBES
from ..samplers.ode import ADAPTIVE_METHODS
from .common import add_model_args, load_pipeline, open_image


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "likelihood",
        help="bits/dim of 8-bit images under a saved pipeline (probability-flow ODE)",
        description="Estimate the bits/dim of 8-bit images (PNG, ...) under a saved ScoreSDEPipeline through the "
        "probability-flow ODE with uniform dequantization and Hutchinson divergence probes. Prints one line per "
        "image and the mean with its standard error.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(parser)
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
    parser.add_argument("--batch-size", type=int, default=8, help="images per ODE solve")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pipe = load_pipeline(args.model, args.device)
    images = load_images(pipe, args.images)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    outs = [pipe.log_likelihood(images[i:i + args.batch_size], num_probes=args.num_probes, probe=args.probe,
                                method=args.method, rtol=args.rtol, atol=args.atol, eps=args.eps, generator=generator)
            for i in range(0, len(images), args.batch_size)]
    bpd = torch.cat([out.bits_per_dim.double() for out in outs])
    stderr = None if outs[0].stderr is None else torch.cat([out.stderr.double() for out in outs])
    for i, path in enumerate(args.images):
        print(f"{path}: {bpd[i]:.4f}" + ("" if stderr is None else f" +- {stderr[i]:.4f}") + " bits/dim")
    print(summary(bpd, stderr))
    return 0


def load_images(pipe, paths: list[str]) -> list:
    """Open 8-bit images at the model's size as PIL images of the model's channel count (L or RGB)."""
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    images = []
    for path in paths:
        im = open_image(path, "--images")
        if im.size != (width, height):
            raise ValueError(f"--images {path}: image is {im.size[0]}x{im.size[1]} but the model takes "
                             f"{width}x{height}")
        if im.mode not in ("1", "L", "P", "RGB", "RGBA"):
            raise ValueError(f"--images {path}: mode {im.mode!r} is not 8-bit (accepted: 1, L, P, RGB, RGBA)")
        images.append(im.convert("L" if pipe.unet.config.in_channels == 1 else "RGB"))
    return images


def summary(bpd: torch.Tensor, stderr: torch.Tensor | None) -> str:
    """Mean bits/dim and its standard error: over images (``std / sqrt(n)``, n >= 2), else the probes' one."""
    n = len(bpd)
    if n > 1:
        # the spread over images holds the data's and the probes' variability: an honest error of the data-set mean
        return f"mean: {bpd.mean():.4f} +- {bpd.std() / math.sqrt(n):.4f} bits/dim (standard error over {n} images)"
    if stderr is not None:
        return f"mean: {bpd[0]:.4f} +- {stderr[0]:.4f} bits/dim (probe standard error, 1 image)"
    return f"mean: {bpd[0]:.4f} bits/dim (1 image, 1 probe: no standard error; use --num-probes > 1)"
