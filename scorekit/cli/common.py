"""Helpers shared by the subcommands: loading a pipeline, sampler flags, saving PNG grids."""

from __future__ import annotations

import argparse
import os

import torch

from scorekit.samplers import TIME_GRIDS
from scorekit.sampling import SAMPLERS


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="pipeline folder (saved ScoreSDEPipeline, or laid out like google/ddpm-cifar10-32 or "
                             "google/ncsnpp-*) or a Hub repo id")
    parser.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the torch.Generator (default: 0)")


def add_sampler_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sampler")
    g.add_argument("--sampler", choices=list(SAMPLERS), default=None,
                   help="pc: predictor-corrector; ode: probability-flow ODE; ddim; ald: annealed Langevin; few-step: "
                        "dpmsolver++ (multistep), dpmsolver++-singlestep, sde-dpmsolver++, edm-heun, "
                        "dpmsolver-adaptive (default: what the pipeline's scheduler says)")
    g.add_argument("--steps", type=int, default=None,
                   help="number of time steps (default: 1000 for pc, 100 for ode/ddim/ald; adaptive ODE ignores it)")
    g.add_argument("--predictor", choices=["reverse_diffusion", "euler_maruyama", "ancestral_sampling", "none"],
                   default=None, help="PC predictor (default: the scheduler's)")
    g.add_argument("--corrector", choices=["langevin", "ald", "none"], default=None,
                   help="PC corrector (default: the scheduler's)")
    g.add_argument("--snr", type=float, default=None, help="corrector signal-to-noise ratio, > 0")
    g.add_argument("--n-corrector-steps", type=int, default=None, help="corrector steps per time step")
    g.add_argument("--method", default=None,
                   help="ODE solver: euler, heun (fixed steps) or dopri5, bosh3, scipy_RK45, ... (adaptive)")
    g.add_argument("--rtol", type=float, default=None, help="relative tolerance of an adaptive ODE solve")
    g.add_argument("--atol", type=float, default=None, help="absolute tolerance of an adaptive ODE solve")
    g.add_argument("--eta", type=float, default=None, help="DDIM stochasticity, >= 0 (0: deterministic)")
    g.add_argument("--no-denoise", action="store_true", help="skip the final denoising step")
    g.add_argument("--order", type=int, default=None,
                   help="solver order of the few-step samplers (dpmsolver++: 1-3, singlestep: 1-3, sde: 1-2, "
                        "adaptive: 2-3)")
    g.add_argument("--time-grid", choices=list(TIME_GRIDS), default=None,
                   help="time grid of the few-step samplers: uniform t, uniform half-log-SNR, or EDM's rho-schedule")


def sampler_overrides(args: argparse.Namespace) -> dict:
    """The ``scorekit.sample`` keyword arguments the user set on the command line."""
    names = ["predictor", "corrector", "snr", "n_corrector_steps", "method", "rtol", "atol", "eta", "order",
             "time_grid"]
    out = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if getattr(args, "no_denoise", False):
        out["denoise"] = False
    return out


def load_pipeline(path: str, device: str = "cpu", pipeline_class=None):
    """Load a pipeline folder as ``pipeline_class`` (default ``ScoreSDEPipeline``), in eval mode on ``device``."""
    from scorekit.pipelines import ScoreSDEPipeline

    pipe = (pipeline_class or ScoreSDEPipeline).from_pretrained(path).to(device)
    pipe.unet.eval()
    return pipe


def load_image(path: str, size: tuple[int, int], mode: str = "RGB"):
    """Open a PNG/JPEG as a PIL image of ``mode``, resized (bicubic) to ``size`` = (width, height) if needed."""
    import PIL.Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no image file at {path!r}")
    image = PIL.Image.open(path).convert(mode)
    return image if image.size == size else image.resize(size, PIL.Image.BICUBIC)


def model_size(pipe) -> tuple[int, int]:
    """(width, height) of the pipeline's samples."""
    _, _, h, w = pipe.sample_shape(1)
    return (w, h)


def to_tensor(image) -> torch.Tensor:
    """PIL image -> ``(1, C, H, W)`` float tensor in [0, 1] (gray images get 3 identical channels)."""
    import numpy as np

    arr = np.array(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def save_grid(images: torch.Tensor, path: str, nrow: int = 8) -> str:
    """Save ``(B, C, H, W)`` images in [0, 1] as one PNG grid (torchvision's make_grid); returns the path."""
    from torchvision.utils import save_image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_image(images.float().cpu(), path, nrow=nrow, padding=2, pad_value=1.0)
    return path


def add_image_command(subparsers, name: str, help: str, description: str, image_help: str):
    """A subcommand that turns one image into a grid of samples: model, sampler, --image, --num-samples, --out."""
    p = subparsers.add_parser(name, help=help, description=description,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_args(p)
    add_sampler_args(p)
    p.add_argument("--image", required=True, help=image_help)
    p.add_argument("--num-samples", type=int, default=4, help="number of samples")
    p.add_argument("--out", default=f"{name}.png", help="output PNG grid")
    return p


def sample_pipeline(pipe, args: argparse.Namespace, **inputs):
    """Call ``pipe`` with the command line's sampler settings; returns its output (images as a tensor)."""
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    return pipe(batch_size=args.num_samples, num_inference_steps=args.steps, generator=generator, output_type="pt",
                sampler=args.sampler, **inputs, **sampler_overrides(args))
