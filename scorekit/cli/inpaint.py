"""``scorekit inpaint``: fill the white part of a mask in a PNG; writes observation, mask and samples as a grid."""

from __future__ import annotations

import argparse

from .common import (
    add_image_command,
    load_image,
    load_pipeline,
    mark_hole,
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
                    "must be black and white (or pass --threshold-mask). Images of any PIL mode are read by their "
                    "value range (16-bit gray as 0..65535). The output grid shows the observation and the mask with "
                    "the hole as a magenta checkerboard, then --num-samples samples, side by side.",
        image_help="input image (PNG, JPEG, ...)",
    )
    p.add_argument("--mask", required=True, help="mask image: white = repaint, black = keep")
    p.add_argument("--threshold-mask", action="store_true",
                   help="binarize a gray mask at 50%% (reported); without it a mask with gray levels is an error")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from scorekit.pipelines import ScoreSDEInpaintPipeline

    pipe = load_pipeline(args.model, args.device, ScoreSDEInpaintPipeline)
    size = model_size(pipe)
    image = load_image(args.image, size, pipe.unet.config.in_channels, resize=args.resize)
    mask = binary_mask(load_image(args.mask, size, 1, option="--mask", resize=args.resize), args)
    out = sample_pipeline(pipe, args, image=image[None], mask_image=mask[None])
    hole = to_tensor(mask)[:, :1]
    panels = [mark_hole(to_tensor(image), hole), mark_hole(torch.zeros_like(to_tensor(image)), hole)]
    images = out.images if out.images.shape[1] == 3 else out.images.expand(-1, 3, -1, -1)
    save_grid(torch.cat([*panels, images.float().cpu()]), args.out, nrow=args.num_samples + 2)
    print(f"wrote {args.out}: observation, mask (hole: magenta checkerboard) and {args.num_samples} samples, "
          f"NFE {out.nfe}")
    return 0


def binary_mask(mask, args: argparse.Namespace):
    """The ``(H, W, 1)`` mask as pure 0 / 1: as given, or thresholded at 50% under --threshold-mask (reported)."""
    import numpy as np

    gray = np.unique(mask[(mask > 0.5 / 255) & (mask < 254.5 / 255)])
    if not gray.size:
        return mask.round()
    if not args.threshold_mask:
        raise ValueError(f"--mask {args.mask} has gray levels (e.g. {', '.join(f'{v:.3f}' for v in gray[:3])} on "
                         f"[0, 1]), not only black and white; pass --threshold-mask to binarize it at 50%")
    print(f"thresholded --mask {args.mask} at 50% (--threshold-mask): {gray.size} gray levels made black or white")
    return (mask > 0.5).astype(mask.dtype)
