"""Colorize a real photo with a score SDE pipeline: PNG in, PNG grid out (gray input, samples).

Run: python examples/colorize.py --model DIR [--image photo.png] --out colorize.png
Without --image it uses scikit-image's coffee photo (shipped with the package), made gray. The samples' channel
mean equals the gray input exactly. Equivalent to `scorekit colorize`.
"""

import argparse
import tempfile

import PIL.Image

from scorekit.cli import main as scorekit_main


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="pipeline folder (an RGB model)")
    parser.add_argument("--image", help="input photo, gray or color (default: scikit-image's coffee)")
    parser.add_argument("--sampler", default="pc", choices=["pc", "ode", "ddim"], help="sampler")
    parser.add_argument("--steps", type=int, default=500, help="time steps")
    parser.add_argument("--num-samples", type=int, default=4, help="samples")
    parser.add_argument("--out", default="colorize.png", help="output grid")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image
        if image is None:
            from skimage import data

            image = tmp + "/coffee.png"
            PIL.Image.fromarray(data.coffee()).save(image)
        return scorekit_main(["colorize", "--model", args.model, "--image", image, "--sampler", args.sampler,
                              "--steps", str(args.steps), "--num-samples", str(args.num_samples), "--out", args.out])


if __name__ == "__main__":
    raise SystemExit(main())
