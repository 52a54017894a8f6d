"""``scorekit sample``: draw images from a saved pipeline and write a PNG grid."""

from __future__ import annotations

import argparse
import time

import torch

from . import sample_shards
from .common import (
    add_model_args,
    add_sampler_args,
    load_pipeline,
    require_class_conditioning,
    sampler_overrides,
    save_grid,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help="sample images from a pipeline folder into a PNG grid",
        description="Sample images with the PC sampler, the probability-flow ODE, DDIM or annealed Langevin "
                    "dynamics, and save them as one PNG grid. Prints the NFE and wall time.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(p)
    add_sampler_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="number of images")
    p.add_argument("--nrow", type=int, default=8, help="images per row of the grid")
    p.add_argument("--out", default="grid.png", help="output PNG path")
    p.add_argument("--class-label", type=int, nargs="+", default=None, metavar="Y",
                   help="class-conditional sampling (classifier-free guidance with a class-conditional UNet, else "
                        "classifier guidance with the pipeline's noise-conditional classifier): one label for all "
                        "images, or one per image")
    p.add_argument("--guidance-scale", type=float, default=1.0,
                   help="guidance scale w with --class-label (1 = the plain conditional score; classifier-free: "
                        "s(x,t) + w (s(x,t,y) - s(x,t)); classifier: s(x,t) + w grad log p_t(y|x))")
    sample_shards.add_shard_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.num_images is not None:
        sample_shards.check_shard_args(args)  # before loading anything
    kwargs = dict(num_inference_steps=args.steps, output_type="pt", sampler=args.sampler, **sampler_overrides(args))
    if args.class_label is not None:
        from scorekit.pipelines import ScoreSDEClassConditionalPipeline

        require_class_conditioning(args.model, "--class-label")
        pipe = load_pipeline(args.model, args.device, ScoreSDEClassConditionalPipeline)
        labels = args.class_label * args.batch_size if len(args.class_label) == 1 else args.class_label
        kwargs.update(class_labels=labels, guidance_scale=args.guidance_scale)
    else:
        pipe = load_pipeline(args.model, args.device)
    if args.num_images is not None:
        return _run_sharded(pipe, kwargs, args)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    start = time.perf_counter()
    out = pipe(batch_size=args.batch_size, generator=generator, **kwargs)
    elapsed = time.perf_counter() - start
    save_grid(out.images, args.out, nrow=args.nrow)
    print(f"wrote {args.out}: {args.batch_size} images, NFE {out.nfe}, {elapsed:.1f} s")
    return 0


def _run_sharded(pipe, kwargs: dict, args: argparse.Namespace) -> int:
    def draw(n, generator, labels):
        extra = {} if labels is None else dict(class_labels=labels)
        out = pipe(batch_size=n, generator=generator, **{**kwargs, **extra, "output_type": "np"})
        return (out.images * 255).round().astype("uint8"), out.nfe

    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    done = sample_shards.run_shards(args, draw)
    print(f"process {done['process']}/{done['num_processes']}: wrote shards {done['written']}, skipped (already "
          f"there) {done['skipped']} in {args.out}, {time.perf_counter() - start:.1f} s")
    return 0
