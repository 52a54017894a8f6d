"""Class-conditional sampling with a noise-conditional classifier (classifier guidance), as a PNG grid.

Run: python examples/class_conditional.py --model DIR --labels 0 1 2 --per-class 4 --guidance-scale 1 --out cc.png
DIR is a ScoreSDEClassConditionalPipeline folder (unet + scheduler + classifier). Each row of the grid is one class.
Equivalent to `scorekit sample --class-label ...` per class.
"""

import argparse

import torch
from torchvision.utils import save_image

from scorekit.pipelines import ScoreSDEClassConditionalPipeline


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="class-conditional pipeline folder")
    parser.add_argument("--labels", type=int, nargs="+", default=[0, 1], help="classes, one grid row each")
    parser.add_argument("--per-class", type=int, default=4, help="samples per class")
    parser.add_argument("--guidance-scale", type=float, default=1.0, help="classifier guidance scale")
    parser.add_argument("--sampler", default="pc", choices=["pc", "ode", "ddim"], help="sampler")
    parser.add_argument("--steps", type=int, default=500, help="time steps")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="class_conditional.png", help="output grid")
    args = parser.parse_args()

    pipe = ScoreSDEClassConditionalPipeline.from_pretrained(args.model)
    labels = [y for y in args.labels for _ in range(args.per_class)]
    out = pipe(class_labels=labels, guidance_scale=args.guidance_scale, sampler=args.sampler,
               num_inference_steps=args.steps, generator=torch.Generator().manual_seed(args.seed), output_type="pt")
    save_image(out.images, args.out, nrow=args.per_class)
    print(f"wrote {args.out}: classes {args.labels}, {args.per_class} each, NFE {out.nfe}")


if __name__ == "__main__":
    main()
