"""``scorekit likelihood``: bits/dim of images under a saved score SDE pipeline (PF-ODE, eq. 39-40)."""

from __future__ import annotations

import argparse
import math
import sys

from ..checks import PROBES
from ..samplers.options import ADAPTIVE_METHODS
from .common import add_model_args, load_pipeline, read_image


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "likelihood",
        help="bits/dim of images under a saved pipeline (probability-flow ODE)",
        description="Estimate the bits/dim of discrete images (PNG, ...) under a saved ScoreSDEPipeline through the "
        "probability-flow ODE with uniform dequantization and Hutchinson divergence probes. The data's number of "
        "levels and their range default to what the model records (17 levels for scorekit/digits), else 8-bit. "
        "Shows the progress of each solve; prints one line per image and the mean with its standard error.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(parser)
    parser.add_argument("--images", required=True, nargs="+", metavar="PATH", default=argparse.SUPPRESS,
                        help="image files at the model's resolution (any PIL mode, read by its value range; "
                             "colour images are made gray for 1-channel models)")
    parser.add_argument("--num-levels", type=int, default=None, metavar="L",
                        help="levels of the data: pixel v in [0, 1] is level v (L - 1) (default: what the model "
                             "records, else 256)")
    parser.add_argument("--data-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                        help="interval the L dequantization bins tile in the model's space (default: what the model "
                             "records, else the scheduler's data_range)")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.data_range is not None and not args.data_range[0] < args.data_range[1]:
        raise ValueError(f"--data-range LO HI needs LO < HI, got {args.data_range[0]:g} {args.data_range[1]:g}")
    pipe = load_pipeline(args.model, args.device)
    pipe.set_progress_bar_config(disable=args.no_progress)
    levels, data_range = pipe.likelihood_levels(args.num_levels, args.data_range)
    print(f"{len(args.images)} image(s), {levels} levels dequantized over [{data_range[0]:g}, {data_range[1]:g}] "
          f"(--num-levels / --data-range; defaults: what {args.model} records)", file=sys.stderr)
    images = load_images(pipe, args.images)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    outs = [pipe.log_likelihood(images[i:i + args.batch_size], num_probes=args.num_probes, probe=args.probe,
                                method=args.method, rtol=args.rtol, atol=args.atol, eps=args.eps, generator=generator,
                                num_levels=levels, data_range=data_range)
            for i in range(0, len(images), args.batch_size)]
    bpd = torch.cat([out.bits_per_dim.double() for out in outs])
    stderr = None if outs[0].stderr is None else torch.cat([out.stderr.double() for out in outs])
    for i, path in enumerate(args.images):
        print(f"{path}: {bpd[i]:.4f}" + ("" if stderr is None else f" +- {stderr[i]:.4f}") + " bits/dim")
    print(summary(bpd, stderr))
    return 0


def load_images(pipe, paths: list[str]):
    """Read images at the model's size as one ``(N, H, W, C)`` float array in [0, 1] with the model's channels."""
    import numpy as np

    from ..image_io import to_channels

    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    images = []
    for path in paths:
        image = read_image(path, "--images")
        if image.shape[:2] != (height, width):
            raise ValueError(f"--images {path}: image is {image.shape[1]}x{image.shape[0]} but the model takes "
                             f"{width}x{height}")
        images.append(to_channels(image, pipe.unet.config.in_channels, f"--images {path}"))
    return np.stack(images)


def summary(bpd, stderr) -> str:
    """Mean bits/dim and its standard error: over images (``std / sqrt(n)``, n >= 2), else the probes' one."""
    n = len(bpd)
    if n > 1:
        # the spread over images holds the data's and the probes' variability: an honest error of the data-set mean
        return f"mean: {bpd.mean():.4f} +- {bpd.std() / math.sqrt(n):.4f} bits/dim (standard error over {n} images)"
    if stderr is not None:
        return f"mean: {bpd[0]:.4f} +- {stderr[0]:.4f} bits/dim (probe standard error, 1 image)"
    return f"mean: {bpd[0]:.4f} bits/dim (1 image, 1 probe: no standard error; use --num-probes > 1)"
