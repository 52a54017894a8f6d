"""Super-resolve a real photo with a score SDE pipeline: PNG in, PNG grid out (low-resolution input, samples, truth).

Run: python examples/superres.py                                 (scorekit/photos, scikit-image's astronaut)
     python examples/superres.py --method mcgdiff --num-particles 16 --steps 100
     python examples/superres.py --model scorekit/digits --image digit.png --resize
The photo, resized to the model's size, is the truth; its average over --factor x --factor blocks is the observation
y = A x, handed to ScoreSDERestorationPipeline as a low-resolution image in [0, 1] (the pipeline maps it to the
model's range), and --method draws samples of p(x | y). The grid shows y (upsampled by repetition), the samples and
the truth; the script prints the NFE per sample and the PSNR of the samples and of bicubic upsampling against the
truth. Equivalent to `scorekit restore --task superres --simulate`.
"""

import argparse

import numpy as np
import torch
from torchvision.utils import save_image

from scorekit.conditioning import Downsample
from scorekit.image_io import read_image, resize_array, to_channels
from scorekit.metrics import psnr
from scorekit.pipelines import ScoreSDERestorationPipeline
from scorekit.restoration_methods import add_method_flags, method_arguments


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="scorekit/photos", help="pipeline folder or shipped model")
    parser.add_argument("--image", help="the clean photo (default: scikit-image's astronaut, resized)")
    parser.add_argument("--resize", action="store_true", help="resize --image to the model's size")
    parser.add_argument("--factor", type=int, default=2, help="pooling factor of the observation")
    add_method_flags(parser)  # --method, --num-particles, --sampler, --steps
    parser.add_argument("--num-samples", type=int, default=4, help="samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="superres.png", help="output grid")
    args = parser.parse_args(argv)

    pipe = ScoreSDERestorationPipeline.from_pretrained(args.model)
    _, channels, height, width = pipe.sample_shape(1)
    if args.image is None:
        from skimage import data

        photo = resize_array(data.astronaut().astype(np.float32) / 255, (width, height))
    else:
        photo = read_image(args.image, "--image")
        if photo.shape[:2] != (height, width):
            if not args.resize:
                raise SystemExit(f"--image is {photo.shape[1]}x{photo.shape[0]}, the model takes {width}x{height}: "
                                 f"pass --resize")
            photo = resize_array(photo, (width, height))
    truth = torch.from_numpy(to_channels(photo, channels)).permute(2, 0, 1)[None]  # (1, C, H, W) in [0, 1]
    operator = Downsample((channels, height, width), args.factor)  # y = A x: the mean of each factor x factor block
    low = operator(truth)  # the low-resolution image in [0, 1] (averaging keeps the range)
    out = pipe(observation=low.permute(0, 2, 3, 1).numpy(), operator=operator, **method_arguments(args),
               batch_size=args.num_samples, generator=torch.Generator().manual_seed(args.seed), output_type="pt")
    samples = out.images.float()
    shown = torch.nn.functional.interpolate(low, size=(height, width), mode="nearest")
    bicubic = torch.nn.functional.interpolate(low, size=(height, width), mode="bicubic").clamp(0, 1)
    save_image(torch.cat([shown, samples, truth]), args.out, nrow=args.num_samples + 2)
    print(f"wrote {args.out}: low-resolution input, {args.num_samples} samples, truth; {args.method} "
          f"({out.sampler}), NFE {out.nfe_per_sample} per sample; PSNR {psnr(samples, truth):.2f} dB per sample, "
          f"bicubic {psnr(bicubic, truth):.2f} dB")


if __name__ == "__main__":
    main()
