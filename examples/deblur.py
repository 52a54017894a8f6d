"""Deblur a real photo with a score SDE pipeline: PNG in, PNG grid out (blurred noisy input, samples, truth).

Run: python examples/deblur.py                                   (scorekit/photos, scikit-image's coffee)
     python examples/deblur.py --method ddrm
     python examples/deblur.py --method pigdm --blur-sigma 1.5 --noise-std 0.05
The photo, resized to the model's size, is the truth x; the observation is y = k * x + sigma_y e, a circular
convolution with a Gaussian kernel (--blur-sigma px, 5x5 taps) plus noise, computed here in the model's data range
([-1, 1] for the shipped models, so --noise-std 0.02 is 1 % of the image range) and handed to
ScoreSDERestorationPipeline as that tensor. --method draws samples of p(x | y). The grid shows y, the samples and the
truth; the script prints the NFE per sample and the PSNR of the samples and of the blurred input against the truth.
Equivalent to `scorekit restore --task deblur --simulate`.
"""

import argparse

import numpy as np
import torch
from torchvision.utils import save_image

from scorekit.conditioning import Blur, gaussian_kernel
from scorekit.image_io import read_image, resize_array, to_channels
from scorekit.metrics import psnr
from scorekit.pipelines import ScoreSDERestorationPipeline
from scorekit.restoration_methods import add_method_flags, method_arguments


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="scorekit/photos", help="pipeline folder or shipped model")
    parser.add_argument("--image", help="the clean photo, resized to the model's size (default: skimage's coffee)")
    parser.add_argument("--blur-sigma", type=float, default=1.0, help="std of the Gaussian kernel in pixels")
    parser.add_argument("--noise-std", type=float, default=0.02, help="sigma_y, in the model's data units")
    add_method_flags(parser)  # --method, --num-particles, --sampler, --steps
    parser.add_argument("--num-samples", type=int, default=4, help="samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="deblur.png", help="output grid")
    args = parser.parse_args(argv)

    pipe = ScoreSDERestorationPipeline.from_pretrained(args.model)
    _, channels, height, width = pipe.sample_shape(1)
    if args.image is None:
        from skimage import data

        photo = data.coffee().astype(np.float32) / 255
    else:
        photo = read_image(args.image, "--image")
    photo = to_channels(resize_array(photo, (width, height)), channels)
    truth = torch.from_numpy(photo).permute(2, 0, 1)[None]  # (1, C, H, W) in [0, 1]
    operator = Blur(gaussian_kernel(args.blur_sigma, 5), (channels, height, width))
    x = pipe.to_model_range(truth, torch.float32)  # the model's data range
    noise = torch.randn(operator.out_shape, generator=torch.Generator().manual_seed(args.seed + 1))
    y = operator(x) + args.noise_std * noise  # y = A x + sigma_y e, a tensor in the model's range
    out = pipe(observation=y, operator=operator, noise_std=args.noise_std, **method_arguments(args),
               batch_size=args.num_samples, generator=torch.Generator().manual_seed(args.seed), output_type="pt")
    samples = out.images.float()
    blurred = pipe.postprocess(y, output_type="pt").float()  # back to [0, 1] (the blur keeps constants)
    save_image(torch.cat([blurred, samples, truth]), args.out, nrow=args.num_samples + 2)

    print(f"wrote {args.out}: blurred input, {args.num_samples} samples, truth; {args.method} ({out.sampler}), NFE "
          f"{out.nfe_per_sample} per sample; PSNR {psnr(samples, truth):.2f} dB per sample, blurred input "
          f"{psnr(blurred, truth):.2f} dB")


if __name__ == "__main__":
    main()
