"""Colorize a real photo with a score SDE pipeline: PNG in, PNG grid out (gray input, samples).

Run: python examples/colorize.py                                 (scorekit/photos, scikit-image's coffee)
     python examples/colorize.py --model DIR --image photo.png [--resize] --sampler pc --steps 200
     python examples/colorize.py --method ddrm
Without --image it uses scikit-image's coffee photo (shipped with the package), resized to the model's size and made
gray. Any image (gray, 16-bit, colour) is read by its value range; colour is made gray as the mean of R, G, B, which
the samples' channel mean then equals exactly (with the exact methods: replacement, ddrm, mcgdiff). Images of
another size than the model's need --resize. --method picks the restoration method; without --sampler replacement
runs with the model's own sampler, switched to a stochastic one (sde-dpmsolver++) when it is deterministic.
Equivalent to `scorekit colorize` (= `scorekit restore --task colorize`).
"""

import argparse

import numpy as np
import torch
from torchvision.utils import save_image

from scorekit.image_io import read_image, resize_array, to_channels
from scorekit.pipelines import ScoreSDEColorizationPipeline
from scorekit.restoration_methods import add_method_flags, method_arguments


def tolerance(rtol: float | None) -> dict:
    return {} if rtol is None else {"rtol": rtol, "atol": rtol}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="scorekit/photos", help="pipeline folder or shipped model (an RGB model)")
    parser.add_argument("--image", help="input photo, gray or color (default: scikit-image's coffee)")
    parser.add_argument("--resize", action="store_true", help="resize --image to the model's size")
    add_method_flags(parser)  # --method, --num-particles, --sampler, --steps
    parser.add_argument("--rtol", type=float, default=None,
                        help="tolerance (rtol = atol) of the adaptive samplers ode and dpmsolver-adaptive")
    parser.add_argument("--num-samples", type=int, default=4, help="samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="colorize.png", help="output grid")
    args = parser.parse_args(argv)

    pipe = ScoreSDEColorizationPipeline.from_pretrained(args.model)
    _, _, height, width = pipe.sample_shape(1)
    if args.image is None:
        from skimage import data

        image, resize = data.coffee().astype(np.float32) / 255, True
    else:
        image, resize = read_image(args.image, "--image"), args.resize
    if image.shape[:2] != (height, width):
        if not resize:
            raise SystemExit(f"--image {args.image} is {image.shape[1]}x{image.shape[0]}, the model takes "
                             f"{width}x{height}: pass --resize")
        image = resize_array(image, (width, height))
    gray = to_channels(image, 1, gray="mean")
    out = pipe(image=gray[None], batch_size=args.num_samples, **method_arguments(args),
               generator=torch.Generator().manual_seed(args.seed), output_type="pt",
               **tolerance(args.rtol))
    shown = torch.from_numpy(gray).permute(2, 0, 1)[None].expand(-1, 3, -1, -1)
    save_image(torch.cat([shown, out.images.float()]), args.out, nrow=args.num_samples + 1)
    print(f"wrote {args.out}: gray input and {args.num_samples} samples; {args.method} ({out.sampler}), NFE "
          f"{out.nfe_per_sample} per sample")


if __name__ == "__main__":
    main()
