"""Inpaint a real photo with a score SDE pipeline: PNG in, PNG grid out (observation, mask, samples).

Run: python examples/inpaint.py --model DIR [--image photo.png] [--mask mask.png] --out inpaint.png
Without --image it uses scikit-image's astronaut photo (shipped with the package); without --mask it repaints the
central square. White mask pixels are repainted (diffusers' convention). Equivalent to `scorekit inpaint`.
"""

import argparse

import numpy as np
import PIL.Image

from scorekit.cli import main as scorekit_main


def default_inputs(folder: str) -> tuple[str, str]:
    from skimage import data

    image = folder + "/astronaut.png"
    PIL.Image.fromarray(data.astronaut()).save(image)
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[128:384, 128:384] = 255
    PIL.Image.fromarray(mask).save(folder + "/mask.png")
    return image, folder + "/mask.png"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="pipeline folder")
    parser.add_argument("--image", help="input photo (default: scikit-image's astronaut)")
    parser.add_argument("--mask", help="mask PNG, white = repaint (default: the central square)")
    parser.add_argument("--sampler", default="pc", choices=["pc", "ode", "ddim"], help="sampler")
    parser.add_argument("--steps", type=int, default=500, help="time steps")
    parser.add_argument("--num-samples", type=int, default=4, help="samples")
    parser.add_argument("--out", default="inpaint.png", help="output grid")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        image, mask = (args.image, args.mask) if args.image and args.mask else default_inputs(tmp)
        return scorekit_main(["inpaint", "--model", args.model, "--image", args.image or image, "--mask",
                              args.mask or mask, "--sampler", args.sampler, "--steps", str(args.steps),
                              "--num-samples", str(args.num_samples), "--out", args.out])


if __name__ == "__main__":
    raise SystemExit(main())
