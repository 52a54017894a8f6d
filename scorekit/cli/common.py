"""Helpers shared by the subcommands: loading a pipeline, sampler flags, reading images, saving PNG grids.

Nothing here imports torch, diffusers or the pipelines at module level: the parser is built and the flags checked
before those imports (see :mod:`scorekit.cli`).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

from ..checks import check_count, check_positive
from .choices import SAMPLER_NAMES, TIME_GRID_NAMES

if TYPE_CHECKING:
    import torch

# Counts every subcommand may take, by argparse dest, with their smallest accepted value; checked by check_cli_args
# (one validator, scorekit.utils.check_count) before any work, under the flag the user typed.
COUNT_ARGS = {"batch_size": 1, "num_samples": 1, "nrow": 1, "steps": 1, "n_corrector_steps": 1, "num_probes": 1}
POSITIVE_ARGS = ("snr", "rtol", "atol")
NON_NEGATIVE_ARGS = ("eta",)
IMAGE_ARGS = ("image", "mask", "images")  # input image files, checked readable before the model loads


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: X)`` to a flag's help only when the help does not already state its default and the
    default says something (not ``None``, ``False`` or suppressed)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0:
            return text
        return super()._get_help_string(action)


def flag(dest: str) -> str:
    """The command-line spelling of an argparse ``dest`` (``num_samples`` -> ``--num-samples``)."""
    return "--" + dest.replace("_", "-")


def check_cli_args(args: argparse.Namespace) -> None:
    """Validate the counts, tolerances and ``--device`` a subcommand was given; errors name the flag typed."""
    for dest, minimum in COUNT_ARGS.items():
        if getattr(args, dest, None) is not None:
            check_count(flag(dest), getattr(args, dest), minimum)
    for dest in POSITIVE_ARGS + NON_NEGATIVE_ARGS:
        if getattr(args, dest, None) is not None:
            check_positive(flag(dest), getattr(args, dest), allow_zero=dest in NON_NEGATIVE_ARGS)
    if getattr(args, "device", None) not in (None, "cpu"):
        check_device(args.device)
    for dest in IMAGE_ARGS:
        paths = getattr(args, dest, None)
        for path in [paths] if isinstance(paths, str) else paths or []:
            read_image(path, flag(dest))


def check_device(name: str):
    """``--device NAME`` as a torch device that exists on this machine, else a ValueError naming the flag."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {name!r} is not a torch device name (e.g. cpu, cuda, cuda:1): {err}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"--device {name}: no such CUDA device here (torch.cuda.is_available() is "
                         f"{torch.cuda.is_available()}, {torch.cuda.device_count()} device(s)); use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return device


def require_class_conditioning(path: str, option: str) -> None:
    """Raise a one-line ValueError when the pipeline folder ``path`` can do neither classifier-free guidance (a UNet
    with class embeddings) nor classifier guidance (a ``classifier`` component), which ``option`` needs."""
    index = os.path.join(path, "model_index.json")
    if not os.path.isfile(index):
        return  # a short name, a Hub id or a flat folder: the loader reports what is missing
    with open(index) as f:
        entry = json.load(f).get("classifier")
    unet_config = os.path.join(path, "unet", "config.json")
    class_embeds = None
    if os.path.isfile(unet_config):
        with open(unet_config) as f:
            class_embeds = json.load(f).get("num_class_embeds")
    if (not entry or entry[0] is None) and not class_embeds:
        raise ValueError(f"{option} needs a class-conditional UNet (classifier-free guidance) or a classifier "
                         f"(classifier guidance), but {path} has neither")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="pipeline folder (saved ScoreSDEPipeline, or laid out like google/ddpm-cifar10-32 or "
                             "google/ncsnpp-*) or a Hub repo id")
    parser.add_argument("--device", default="cpu", help="torch device to run on")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the torch.Generator")


def add_sampler_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sampler")
    g.add_argument("--sampler", choices=list(SAMPLER_NAMES), default=None,
                   help="pc: predictor-corrector; ode: probability-flow ODE; ddim; ald: annealed Langevin; few-step: "
                        "dpmsolver++ (multistep), dpmsolver++-singlestep, sde-dpmsolver++, edm-heun, "
                        "dpmsolver-adaptive (default: the model's scheduler's sampler, e.g. dpmsolver++ for the "
                        "shipped models; inpaint and colorize switch a deterministic one to sde-dpmsolver++)")
    g.add_argument("--steps", type=int, default=None,
                   help="number of time steps (default: the sampler's: 19 for dpmsolver++ (20 NFE), 1000 for pc, "
                        "100 for ode/ddim/ald; adaptive ODE ignores it)")
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
    g.add_argument("--time-grid", choices=list(TIME_GRID_NAMES), default=None,
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


def read_image(path: str, option: str = "--image"):
    """Read an image file as ``(H, W, C)`` floats in [0, 1], every PIL mode by its value range
    (:func:`scorekit.image_io.read_image`); errors name the flag."""
    from ..image_io import read_image as read

    return read(path, option)


def load_image(path: str, size: tuple[int, int], channels: int | None = None, option: str = "--image",
               resize: bool = False, gray: str = "luma"):
    """Read an image as ``(H, W, C)`` floats in [0, 1] at ``size`` = (width, height), with ``channels`` channels
    (``None``: its own; gray made RGB, RGB made gray by ``gray``, see :func:`scorekit.image_io.to_channels`).

    An image of another size is an error naming ``option``, unless ``resize`` (the ``--resize`` flag): then it is
    resized (bicubic; nearest under ``--mask``) and the resize is printed.
    """
    from ..image_io import resize_array, to_channels

    image = read_image(path, option)
    if channels is not None:
        image = to_channels(image, channels, f"{option} {path}", gray)
    height, width = image.shape[:2]
    if (width, height) == tuple(size):
        return image
    if not resize:
        raise ValueError(f"{option} {path} is {width}x{height} pixels but the model takes "
                         f"{size[0]}x{size[1]}; resize it, or pass --resize")
    print(f"resized {option} {path} from {width}x{height} to {size[0]}x{size[1]} (--resize)")
    return resize_array(image, tuple(size), nearest=option == "--mask")


def model_size(pipe) -> tuple[int, int]:
    """(width, height) of the pipeline's samples."""
    _, _, h, w = pipe.sample_shape(1)
    return (w, h)


def to_tensor(image):
    """``(H, W, C)`` floats in [0, 1] -> ``(1, 3, H, W)`` float tensor (gray images get 3 identical channels)."""
    import torch

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def mark_hole(images: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` images in [0, 1] as RGB with the pixels where ``hole`` (``(B or 1, 1, H, W)``, 1 = missing)
    is set drawn as a magenta checkerboard, a pattern no photo or grid padding has (a white or gray fill merges with
    white padding and with the image's own whites and grays)."""
    import torch

    h, w = images.shape[-2:]
    checker = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2).float()
    magenta = torch.stack([0.6 + 0.4 * checker, 0.1 * checker, 0.6 + 0.4 * checker])  # (3, H, W)
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return torch.where(hole.bool().expand_as(rgb), magenta.to(rgb), rgb)


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
    p.add_argument("--resize", action="store_true",
                   help="resize inputs of another size to the model's (reported); without it they are an error")
    return p


def sample_pipeline(pipe, args: argparse.Namespace, **inputs):
    """Call ``pipe`` with the command line's sampler settings; returns its output (images as a tensor)."""
    import torch

    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    return pipe(batch_size=args.num_samples, num_inference_steps=args.steps, generator=generator, output_type="pt",
                sampler=args.sampler, **inputs, **sampler_overrides(args))
