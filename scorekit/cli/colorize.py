"""``scorekit colorize``: color a gray (or grayed) PNG; writes the gray input and samples as a grid."""

from __future__ import annotations

import argparse

import torch

from .common import (
    add_model_args,
    add_sampler_args,
    load_image,
    load_pipeline,
    model_size,
    sampler_overrides,
    save_grid,
    to_tensor,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "colorize", help="colorize a gray PNG",
        description="Colorize an image (Song et al. 2021): samples are RGB images whose channel mean equals the "
                    "gray input. A color input is made gray first. Images are resized to the model's size. The "
                    "output grid shows the gray input and --num-samples samples side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(p)
    add_sampler_args(p)
    p.add_argument("--image", required=True, help="input image (PNG, JPEG, ...), gray or color")
    p.add_argument("--num-samples", type=int, default=4, help="number of colorized samples")
    p.add_argument("--out", default="colorize.png", help="output PNG grid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scorekit.pipelines import ScoreSDEColorizationPipeline

    pipe = load_pipeline(args.model, args.device, ScoreSDEColorizationPipeline)
    gray = load_image(args.image, model_size(pipe), "L")
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    out = pipe(image=gray, batch_size=args.num_samples, num_inference_steps=args.steps, generator=generator,
               output_type="pt", sampler=args.sampler, **sampler_overrides(args))
    save_grid(torch.cat([to_tensor(gray), out.images.cpu()]), args.out, nrow=args.num_samples + 1)
    print(f"wrote {args.out}: gray input and {args.num_samples} samples, NFE {out.nfe}")
    return 0
