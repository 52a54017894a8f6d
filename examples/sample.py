"""Sample a pipeline folder (saved ScoreSDEPipeline, or laid out like google/ddpm-cifar10-32 / google/ncsnpp-*).

Run: python examples/sample.py --model DIR --sampler ode --steps 50 --out grid.png
The same as `scorekit sample`, written out as the few lines a user copies.
"""

import argparse

import torch
from torchvision.utils import save_image

from scorekit import ScoreSDEPipeline


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="pipeline folder or Hub repo id")
    parser.add_argument("--sampler", choices=["pc", "ode", "ddim", "ald"], default=None, help="sampler")
    parser.add_argument("--steps", type=int, default=None, help="number of time steps")
    parser.add_argument("--batch-size", type=int, default=16, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="grid.png", help="output PNG grid")
    args = parser.parse_args()

    pipe = ScoreSDEPipeline.from_pretrained(args.model)
    out = pipe(batch_size=args.batch_size, num_inference_steps=args.steps, sampler=args.sampler,
               generator=torch.Generator().manual_seed(args.seed), output_type="pt")
    save_image(out.images, args.out, nrow=4)
    print(f"wrote {args.out} ({args.batch_size} images, NFE {out.nfe})")


if __name__ == "__main__":
    main()
