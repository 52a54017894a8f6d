"""``scorekit sample``: draw images from a saved pipeline and write a PNG grid (or shards, with ``--num-images``)."""

from __future__ import annotations

import argparse
import time

from . import sample_shards
from .common import (
    add_model_args,
    add_sampler_args,
    check_sampler_flags,
    load_pipeline,
    require_class_conditioning,
    sampler_overrides,
    save_grid,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help="sample images from a pipeline folder into a PNG grid (or sharded, with --num-images)",
        description="Sample images with the model's own sampler and steps (DPM-Solver++ at 20 NFE for the shipped "
                    "models) or any other (--sampler, --steps), and save them as one PNG grid. Prints the sampler, "
                    "NFE and wall time.",
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
    p.add_argument("--guidance-scale", type=float, default=None,
                   help="guidance scale w with --class-label (1 = the plain conditional score; classifier-free: "
                        "s(x,t) + w (s(x,t,y) - s(x,t)); classifier: s(x,t) + w grad log p_t(y|x)); default: the "
                        "model's recorded scale (1.5 for scorekit/digits), else 1")
    sample_shards.add_shard_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.num_images is not None:
        sample_shards.check_shard_args(args)  # before loading anything
    elif args.overwrite:
        raise ValueError("--overwrite is for sharded runs (--num-images N --out DIR); a PNG grid is always replaced")
    if args.guidance_scale is not None and args.class_label is None:
        raise ValueError("--guidance-scale needs --class-label (guidance steers towards a class)")
    if args.sampler is not None:  # the model's own sampler is known only once it is loaded
        check_sampler_flags(args, args.sampler, "--sampler")
    overrides = sampler_overrides(args)
    kwargs = dict(num_inference_steps=args.steps, output_type="pt", sampler=args.sampler, **overrides)
    guidance = {}
    if args.class_label is not None:
        from scorekit.pipelines import ScoreSDEClassConditionalPipeline

        require_class_conditioning(args.model, "--class-label")
        pipe = load_pipeline(args.model, args.device, ScoreSDEClassConditionalPipeline)
        scale = pipe.default_guidance_scale if args.guidance_scale is None else args.guidance_scale
        guidance = dict(class_label=args.class_label, guidance_scale=scale)
        labels = args.class_label * args.batch_size if len(args.class_label) == 1 else args.class_label
        kwargs.update(class_labels=labels, guidance_scale=scale)
    else:
        pipe = load_pipeline(args.model, args.device)
    sampler = resolved_sampler(pipe, args, overrides)
    if args.num_images is not None:
        settings = sample_shards.run_settings(args, pipe, sampler, guidance)
        return _run_sharded(pipe, kwargs, args, settings)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    start = time.perf_counter()
    out = pipe(batch_size=args.batch_size, generator=generator, **kwargs)
    elapsed = time.perf_counter() - start
    save_grid(out.images, args.out, nrow=args.nrow)
    print(f"wrote {args.out}: {args.batch_size} images, {sampler['sampler']} {sampler['steps']} steps, NFE {out.nfe}, "
          f"{elapsed:.1f} s")
    return 0


def resolved_sampler(pipe, args: argparse.Namespace, overrides: dict) -> dict:
    """The sampler this run uses, with every option as it runs (the registry's options, resolved), ``denoise`` and
    the step count (the model's defaults where a flag is absent)."""
    from scorekit.pipelines.model_defaults import default_steps

    opts = pipe.sampler_options(args.sampler, overrides)
    denoise = pipe.sampler_kwargs(args.sampler, overrides)["denoise"]
    steps = default_steps(opts.name) if args.steps is None else args.steps
    return {"sampler": opts.name, **opts.as_dict(), "denoise": denoise, "steps": steps}


def _run_sharded(pipe, kwargs: dict, args: argparse.Namespace, settings: dict) -> int:
    def draw(n, generator, labels):
        extra = {} if labels is None else dict(class_labels=labels)
        out = pipe(batch_size=n, generator=generator, **{**kwargs, **extra, "output_type": "np"})
        return (out.images * 255).round().astype("uint8"), out.nfe

    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    done = sample_shards.run_shards(args, draw, settings)
    print(f"process {done['process']}/{done['num_processes']}: wrote shards {done['written']}, skipped (already "
          f"there) {done['skipped']} in {args.out}, {time.perf_counter() - start:.1f} s")
    return 0
