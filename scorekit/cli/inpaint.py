"""``scorekit inpaint``: fill the white part of a mask in a PNG; writes observation, mask and samples as a grid."""

from __future__ import annotations

import argparse

import torch

from .common import (
    add_image_command,
    load_image,
    load_pipeline,
    model_size,
    sample_pipeline,
    save_grid,
    to_tensor,
)


def register(subparsers) -> None:
    p = add_image_command(
        subparsers, "inpaint", help="inpaint a PNG where a mask is white",
        description="Inpaint an image with the replacement method (Song et al. 2021): pixels where the mask is white "
                    "are generated, black ones kept. Inputs must have the model's size (or pass --resize), the mask "
                    "must be black and white (or pass --threshold-mask). The output grid shows "
                    "the observation (hole in gray), the mask and --num-samples samples side by side.",
        image_help="input image (PNG, JPEG, ...)",
    )
    p.add_argument("--mask", required=True, help="mask image: white = repaint, black = keep")
    p.add_argument("--threshold-mask", action="store_true",
                   help="binarize a gray mask at 50%% (reported); without it a mask with gray levels is an error")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scorekit.pipelines import ScoreSDEInpaintPipeline

    pipe = load_pipeline(args.model, args.device, ScoreSDEInpaintPipeline)
    size = model_size(pipe)
    image = load_image(args.image, size, "L" if pipe.unet.config.in_channels == 1 else "RGB", resize=args.resize)
    mask = binary_mask(load_image(args.mask, size, "L", option="--mask", resize=args.resize), args)
    out = sample_pipeline(pipe, args, image=image, mask_image=mask)
    hole = to_tensor(mask)
    observed = to_tensor(image) * (1 - hole) + 0.5 * hole
    images = out.images if out.images.shape[1] == 3 else out.images.expand(-1, 3, -1, -1)
    save_grid(torch.cat([observed, hole, images.cpu()]), args.out, nrow=args.num_samples + 2)
    print(f"wrote {args.out}: observation, mask and {args.num_samples} samples, NFE {out.nfe}")
    return 0


def binary_mask(mask, args: argparse.Namespace):
    """The mask as pure black and white: as given, or thresholded at 50% under --threshold-mask (reported)."""
    gray = sorted(v for v, n in enumerate(mask.histogram()) if n and v not in (0, 255))
    if not gray:
        return mask
    if not args.threshold_mask:
        raise ValueError(f"--mask {args.mask} has gray levels (e.g. {gray[:3]}), not only black and white; "
                         f"pass --threshold-mask to binarize it at 50%")
    print(f"thresholded --mask {args.mask} at 50% (--threshold-mask): {len(gray)} gray levels made black or white")
    return mask.point(lambda v: 255 if v > 127 else 0)
