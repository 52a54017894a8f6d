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
from ..samplers.registry import REGISTRY, sampler_names

if TYPE_CHECKING:
    import torch

# Counts every subcommand may take, by argparse dest, with their smallest accepted value; checked by check_cli_args
# (one validator, scorekit.utils.check_count) before any work, under the flag the user typed.
COUNT_ARGS = {"batch_size": 1, "num_samples": 1, "nrow": 1, "steps": 1, "n_corrector_steps": 1, "num_probes": 1,
              "num_particles": 1, "factor": 1, "kernel_size": 1, "num_levels": 2}
POSITIVE_ARGS = ("snr", "rtol", "atol", "blur_sigma")
NON_NEGATIVE_ARGS = ("eta", "noise_std", "scale")
FRACTION_ARGS = ("ess_threshold",)  # in (0, 1]
# sampler options whose flag is spelled otherwise where the plain spelling means something else: `scorekit restore
# --method` names the restoration method, so the PF-ODE solver's `method` is `--ode-method` there
RENAMED_FLAGS = {"method": "--ode-method"}
IMAGE_ARGS = ("image", "mask", "images")  # input image files, checked readable before the model loads


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: X)`` to a flag's help only when the help does not already state its default and the
    default says something (not ``None``, ``False`` or suppressed)."""

    def _get_help_string(self, action):
        text = action.help or ""
        # by identity: a default of 0 (--seed) equals False but is shown
        silent = any(action.default is v for v in (None, False, argparse.SUPPRESS))
        if "default" in text or silent or action.nargs == 0:
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
    for dest in FRACTION_ARGS:
        value = getattr(args, dest, None)
        if value is not None and not 0 < value <= 1:
            raise ValueError(f"{flag(dest)} must be in (0, 1], got {value}")
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


def sampler_flags(samplers: list[str] | None = None) -> dict[str, dict]:
    """One flag per option of each sampler in ``samplers`` (default: every registered one,
    ``scorekit.samplers.registry``), as argparse keyword arguments by option name; an option several samplers share
    is one flag, its help naming them."""
    flags: dict[str, dict] = {}
    users: dict[str, list[str]] = {}
    for spec in (REGISTRY[name] for name in (samplers or list(REGISTRY))):
        for f in spec.options.fields():
            users.setdefault(f.name, []).append(spec.name)
            if f.name in flags:
                continue
            meta, kwargs = f.metadata, {"default": None, "help": f.metadata.get("help", "")}
            if spec.particles is not None and f.default not in (None, False):  # no scheduler overrides it
                kwargs["help"] += f"; default {f.default}"
            if f.default is False:  # a switch: --probability-flow
                kwargs["action"] = "store_true"
            elif f.name == "timesteps":
                kwargs.update(nargs="+", type=float, metavar="T")
            elif meta.get("choices"):
                kwargs["choices"] = list(meta["choices"])
            else:
                kwargs["type"] = meta.get("type") or str
            flags[f.name] = kwargs
    for name, kwargs in flags.items():
        kwargs["help"] += f" [{', '.join(users[name])}]"
    return flags


def add_sampler_args(parser: argparse.ArgumentParser, run_by_method: bool = False) -> None:
    """``--sampler`` (the registry's names that need no condition of their own), ``--steps`` (alias
    ``--num-inference-steps``), ``--no-denoise`` and one flag per option of those samplers; a flag the chosen sampler
    does not have is an error naming the sampler's settings.

    ``run_by_method``: the subcommand also runs the samplers that a restoration ``--method`` picks (``ddrm``,
    ``tds``, ``mcgdiff``): their options get flags too (``--num-particles``, ...), and the flags of
    :data:`RENAMED_FLAGS` take their other spelling (``--ode-method``)."""
    g = parser.add_argument_group("sampler", "Each setting applies to the samplers in its [brackets]; the chosen "
                                  "sampler rejects the others. Default: the pipeline scheduler's sampler and its "
                                  "settings" + (", or the one --method needs." if run_by_method else "."))
    offered = {name: REGISTRY[name] for name in sampler_names(standalone=True)}  # not those needing a condition
    lines = "; ".join(f"{name}: {spec.summary}" for name, spec in offered.items())
    by_method = (" For --method replacement, dps and pigdm; ddrm, tds and mcgdiff run as their own samplers "
                 "(default: replacement: the model's own, a deterministic one switched to sde-dpmsolver++; dps: pc "
                 "with ancestral sampling and no corrector; pigdm: ddim with eta 1)" if run_by_method else
                 " (default: the model's scheduler's sampler, e.g. dpmsolver++ for the shipped models)")
    g.add_argument("--sampler", choices=list(offered), default=None, help=f"{lines}.{by_method}")
    shown = {**offered, **({name: REGISTRY[name] for name in REGISTRY} if run_by_method else {})}
    defaults = ", ".join(f"{name} {spec.default_steps}" for name, spec in shown.items() if spec.grid != "adaptive")
    g.add_argument("--steps", "--num-inference-steps", dest="steps", type=int, default=None,
                   help=f"intervals of the time grid (ald: noise levels; adaptive solvers choose their own); "
                        f"default per sampler: {defaults}")
    g.add_argument("--no-denoise", action="store_true", help="skip the final denoising step")
    for name, kwargs in sampler_flags(list(shown)).items():
        g.add_argument(sampler_flag(name, run_by_method), dest=name, **kwargs)


def sampler_flag(name: str, run_by_method: bool = False) -> str:
    """The flag of sampler option ``name`` (:func:`add_sampler_args`; ``run_by_method``: :data:`RENAMED_FLAGS`)."""
    return RENAMED_FLAGS.get(name, flag(name)) if run_by_method else flag(name)


def check_sampler_flags(args: argparse.Namespace, sampler: str, chosen_by: str, run_by_method: bool = False) -> None:
    """A ValueError naming the first sampler flag set in ``args`` that ``sampler`` (the registry's) does not take, the
    sampler, what chose it (``chosen_by``) and its own flags; torch-free, so it runs before the model loads."""
    own = REGISTRY[sampler].options.option_names()
    for name in sampler_overrides(args):
        if name != "denoise" and name not in own:
            flags = ", ".join(sampler_flag(n, run_by_method) for n in own) or "none"
            raise ValueError(f"{sampler_flag(name, run_by_method)} is not a setting of sampler {sampler} "
                             f"({chosen_by}); its settings are {flags}")


def sampler_overrides(args: argparse.Namespace) -> dict:
    """The ``scorekit.sample`` keyword arguments the user set on the command line."""
    out = {k: getattr(args, k) for k in sampler_flags() if getattr(args, k, None) not in (None, False)}
    if getattr(args, "no_denoise", False):
        out["denoise"] = False
    return out


def add_spelling_aliases(parser: argparse.ArgumentParser) -> None:
    """Accept every long flag as ``--flag-name`` and ``--flag_name`` (as accelerate does), in this parser and its
    subcommands; the help lists the spelling each flag was declared with."""
    for action in list(parser._actions):
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_spelling_aliases(sub)
            continue
        for option in list(action.option_strings):
            if option.startswith("--"):
                body = option[2:]
                alias = "--" + (body.replace("-", "_") if "-" in body else body.replace("_", "-"))
                parser._option_string_actions.setdefault(alias, action)


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
               resize: bool = False, gray: str = "luma", needs: str = "the model takes"):
    """Read an image as ``(H, W, C)`` floats in [0, 1] at ``size`` = (width, height), with ``channels`` channels
    (``None``: its own; gray made RGB, RGB made gray by ``gray``, see :func:`scorekit.image_io.to_channels`).

    An image of another size is an error naming ``option`` (and what ``needs`` the size), unless ``resize`` (the
    ``--resize`` flag): then it is resized (bicubic; nearest under ``--mask``) and the resize is printed.
    """
    from ..image_io import resize_array, to_channels

    image = read_image(path, option)
    if channels is not None and image.shape[2] != channels:
        how = "gray to RGB (copied to every channel)" if channels == 3 else f"RGB to gray ({gray})"
        print(f"converted {option} {path} from {image.shape[2]} to {channels} channels, {how}, as the model takes")
        image = to_channels(image, channels, f"{option} {path}", gray)
    height, width = image.shape[:2]
    if (width, height) == tuple(size):
        return image
    if not resize:
        raise ValueError(f"{option} {path} is {width}x{height} pixels but {needs} {size[0]}x{size[1]}; resize it, "
                         f"or pass --resize")
    print(f"resized {option} {path} from {width}x{height} to {size[0]}x{size[1]} (--resize)")
    return resize_array(image, tuple(size), nearest=option == "--mask")


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
