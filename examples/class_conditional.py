"""Class-conditional sampling (classifier-free guidance, or classifier guidance with a noise-conditional classifier)
as a PNG grid, one row per class.

Run: python examples/class_conditional.py                        (scorekit/digits, w = 1.5 as its card measured)
     python examples/class_conditional.py --labels 0 1 2 --per-class 4 --guidance-scale 2 --sampler pc --steps 200
DIR is a ScoreSDEClassConditionalPipeline folder (a UNet with class embeddings, and / or a classifier). Equivalent to
`scorekit sample --class-label ...` per class. Without --guidance-scale / --sampler / --steps the model decides.
"""

import argparse

import torch
from torchvision.utils import save_image

from scorekit.pipelines import ScoreSDEClassConditionalPipeline
from scorekit.samplers.registry import sampler_names


def tolerance(rtol: float | None) -> dict:
    return {} if rtol is None else {"rtol": rtol, "atol": rtol}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="scorekit/digits", help="class-conditional pipeline folder or short name")
    parser.add_argument("--labels", type=int, nargs="+", default=[0, 1], help="classes, one grid row each")
    parser.add_argument("--per-class", type=int, default=4, help="samples per class")
    parser.add_argument("--guidance-scale", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--sampler", choices=sampler_names(standalone=True), default=None,
                        help="sampler (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="time steps (default: the sampler's)")
    parser.add_argument("--rtol", type=float, default=None,
                        help="tolerance (rtol = atol) of the adaptive samplers ode and dpmsolver-adaptive")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="class_conditional.png", help="output grid")
    args = parser.parse_args(argv)

    pipe = ScoreSDEClassConditionalPipeline.from_pretrained(args.model)
    labels = [y for y in args.labels for _ in range(args.per_class)]
    out = pipe(class_labels=labels, guidance_scale=args.guidance_scale, sampler=args.sampler,
               num_inference_steps=args.steps, generator=torch.Generator().manual_seed(args.seed), output_type="pt",
               **tolerance(args.rtol))
    save_image(out.images.float(), args.out, nrow=args.per_class)
    scale = pipe.default_guidance_scale if args.guidance_scale is None else args.guidance_scale
    print(f"wrote {args.out}: classes {args.labels}, {args.per_class} each, guidance {scale:g}, NFE {out.nfe}")


if __name__ == "__main__":
    main()
