"""``scorekit colorize``: color a gray (or grayed) PNG; writes the gray input and samples as a grid."""

from __future__ import annotations

import argparse

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
        subparsers, "colorize", help="colorize a gray PNG",
        description="Colorize an image (Song et al. 2021): samples are RGB images whose channel mean equals the "
                    "gray input. A color input is made gray first (the mean of R, G and B). Images of any PIL mode "
                    "are read by their value range (16-bit gray as 0..65535). The image must have the model's size "
                    "(or pass --resize). The output grid shows the gray input and --num-samples samples side by "
                    "side.",
        image_help="input image (PNG, JPEG, ...), gray or color",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from scorekit.pipelines import ScoreSDEColorizationPipeline

    pipe = load_pipeline(args.model, args.device, ScoreSDEColorizationPipeline)
    gray = load_image(args.image, model_size(pipe), 1, resize=args.resize, gray="mean")
    out = sample_pipeline(pipe, args, image=gray[None])
    save_grid(torch.cat([to_tensor(gray), out.images.float().cpu()]), args.out, nrow=args.num_samples + 1)
    print(f"wrote {args.out}: gray input and {args.num_samples} samples, NFE {out.nfe}")
    return 0
