"""Sample a pipeline folder, a shipped model or a Hub repo (laid out like google/ddpm-cifar10-32 / google/ncsnpp-*).

Run: python examples/sample.py                                   (scorekit/digits, its own sampler: 20 NFE)
     python examples/sample.py --model DIR --sampler pc --steps 500 --out grid.png
The same as `scorekit sample`, written out as the few lines a user copies. Without --sampler / --steps the model's
scheduler decides (DPM-Solver++(2M), 19 steps + 1 denoising call, for the shipped models).
"""

import argparse

import torch
from torchvision.utils import save_image

from scorekit import ScoreSDEPipeline
from scorekit.samplers.registry import sampler_names


def tolerance(rtol: float | None) -> dict:
    return {} if rtol is None else {"rtol": rtol, "atol": rtol}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="scorekit/digits", help="pipeline folder, shipped model or Hub repo id")
    parser.add_argument("--sampler", choices=sampler_names(standalone=True), default=None,
                        help="sampler (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="time steps (default: the sampler's)")
    parser.add_argument("--rtol", type=float, default=None,
                        help="tolerance (rtol = atol) of the adaptive samplers ode and dpmsolver-adaptive")
    parser.add_argument("--batch-size", type=int, default=16, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="grid.png", help="output PNG grid")
    args = parser.parse_args(argv)

    pipe = ScoreSDEPipeline.from_pretrained(args.model)
    out = pipe(batch_size=args.batch_size, num_inference_steps=args.steps, sampler=args.sampler,
               generator=torch.Generator().manual_seed(args.seed), output_type="pt",
               **tolerance(args.rtol))
    save_image(out.images.float(), args.out, nrow=4)
    print(f"wrote {args.out} ({args.batch_size} images, NFE {out.nfe})")


if __name__ == "__main__":
    main()
