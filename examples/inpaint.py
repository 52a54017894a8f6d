"""Inpaint a real photo with a score SDE pipeline: PNG in, PNG grid out (observation, mask, samples).

Run: python examples/inpaint.py                                  (scorekit/photos, scikit-image's astronaut)
     python examples/inpaint.py --model DIR --image photo.png [--mask mask.png] [--resize] --sampler pc --steps 200
     python examples/inpaint.py --method mcgdiff --num-particles 16 --steps 100
Without --image it uses scikit-image's astronaut photo (shipped with the package), resized to the model's size;
without --mask it repaints the central square. White mask pixels are repainted (diffusers' convention); the grid
shows the hole as a magenta checkerboard. Images of another size than the model's need --resize. --method picks the
restoration method (replacement, dps, pigdm, ddrm, tds, mcgdiff). Without --sampler replacement runs with the model's
own sampler, switched to a stochastic one (sde-dpmsolver++) when it is deterministic: the replacement method needs
fresh noise. Equivalent to `scorekit inpaint` (= `scorekit restore --task inpaint`).
"""

import argparse

import numpy as np
import torch
from torchvision.utils import save_image

from scorekit.cli.common import mark_hole
from scorekit.image_io import read_image, resize_array, to_channels
from scorekit.pipelines import ScoreSDEInpaintPipeline
from scorekit.restoration_methods import add_method_flags, method_arguments


def load(path: str | None, size: tuple[int, int], channels: int, resize: bool) -> np.ndarray:
    """``(H, W, C)`` floats in [0, 1] at the model's size: the file (any PIL mode), or the astronaut photo."""
    if path is None:
        from skimage import data

        image, resize = data.astronaut().astype(np.float32) / 255, True
    else:
        image = read_image(path, "--image")
    if image.shape[1::-1] != size:
        if not resize:
            raise SystemExit(f"--image {path} is {image.shape[1]}x{image.shape[0]}, the model takes "
                             f"{size[0]}x{size[1]}: pass --resize")
        image = resize_array(image, size)
    return to_channels(image, channels)


def tolerance(rtol: float | None) -> dict:
    return {} if rtol is None else {"rtol": rtol, "atol": rtol}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="scorekit/photos", help="pipeline folder or shipped model")
    parser.add_argument("--image", help="input photo (default: scikit-image's astronaut)")
    parser.add_argument("--mask", help="mask PNG, white = repaint (default: the central square)")
    parser.add_argument("--resize", action="store_true", help="resize --image / --mask to the model's size")
    add_method_flags(parser)  # --method, --num-particles, --sampler, --steps
    parser.add_argument("--rtol", type=float, default=None,
                        help="tolerance (rtol = atol) of the adaptive samplers ode and dpmsolver-adaptive")
    parser.add_argument("--num-samples", type=int, default=4, help="samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="inpaint.png", help="output grid")
    args = parser.parse_args(argv)

    pipe = ScoreSDEInpaintPipeline.from_pretrained(args.model)
    _, channels, height, width = pipe.sample_shape(1)
    image = load(args.image, (width, height), channels, args.resize)
    if args.mask is None:
        mask = np.zeros((height, width, 1), dtype=np.float32)
        mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1
    else:
        mask = to_channels(read_image(args.mask, "--mask"), 1)
        mask = (resize_array(mask, (width, height), nearest=True) if args.resize else mask).round()
    out = pipe(image=image[None], mask_image=mask[None], batch_size=args.num_samples, **method_arguments(args),
               generator=torch.Generator().manual_seed(args.seed), output_type="pt",
               **tolerance(args.rtol))
    observed, hole = torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(mask).permute(2, 0, 1)[None]
    samples = out.images.float().expand(-1, 3, -1, -1)  # gray models: 3 equal channels, as the marked panels
    grid = [mark_hole(observed, hole), mark_hole(torch.zeros_like(observed), hole), samples]
    save_image(torch.cat(grid), args.out, nrow=args.num_samples + 2)
    print(f"wrote {args.out}: observation, mask and {args.num_samples} samples; {args.method} ({out.sampler}), NFE "
          f"{out.nfe_per_sample} per sample")


if __name__ == "__main__":
    main()
