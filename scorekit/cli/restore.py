"""``scorekit restore``: restore an image observed through a linear operator (inpainting, colorization, 2x
super-resolution, deblurring) with any restoration method; writes observation | samples | truth as one PNG grid.

``scorekit inpaint`` and ``scorekit colorize`` are this command with ``--task`` fixed (:func:`add_restore_args`).
The task's operator and observation are built in :mod:`scorekit.cli.restore_tasks` (after torch is imported).
"""

from __future__ import annotations

import argparse
import os

from ..restoration_methods import METHODS
from .common import add_model_args, add_sampler_args, check_sampler_flags

# task -> (one line of help, the flags only it takes: dest -> what they default to)
TASKS = {
    "inpaint": ("repaint where --mask is white (Mask operator)", {"mask": None, "threshold_mask": False}),
    "colorize": ("colour a gray image: samples whose mean of R, G, B is the gray input (Gray operator)", {}),
    "superres": ("super-resolution: the observation is the image average-pooled by --factor (Downsample operator)",
                 {"factor": 2}),
    "deblur": ("deblurring: the observation is the image circularly convolved with --kernel (Blur operator), "
               "noisy by default", {"kernel": "gaussian", "blur_sigma": 1.0, "kernel_size": 5}),
}
# noise_std when --noise-std is not given: the deblurring task of the demo and benchmarks/quality.py (sigma_y = 0.02 in
# the model's [-1, 1] units, 1 % of the image range, with a Gaussian kernel of sigma 1 px, 5x5 taps)
DEFAULT_NOISE = {"deblur": 0.02}
KERNELS = ("gaussian", "box")
# method -> the flags only it takes (dest), beyond the sampler settings its sampler checks itself
METHOD_FLAGS = {"scale": ("dps", "pigdm"), "ddrm_eta": ("ddrm",), "ddrm_eta_b": ("ddrm",),
                "num_particles": ("tds", "mcgdiff"), "ess_threshold": ("tds", "mcgdiff"),
                "return_particles": ("tds", "mcgdiff")}

DESCRIPTION = (
    "Restore an image observed through a linear operator, y = A x + sigma_y e, by posterior sampling with a score "
    "model: --task picks A (inpaint: a pixel mask; colorize: the gray channel; superres: average pooling by "
    "--factor; deblur: circular blur by --kernel), --method the inverse-problem method. --image is the observation "
    "itself (the image with its hole, the gray image, the low-resolution image of the model's size divided by "
    "--factor, the blurred image), or with --simulate the clean image, which the command observes through A with "
    "--noise-std noise and shows as the truth. The output grid is one row: the observation (inpainting: with the "
    "hole as a magenta checkerboard, and the mask), the samples, and the truth with --simulate; with "
    "--return-particles, one row per sample with all its particles. Prints the method, sampler, NFE per returned "
    "sample and wall time."
)


def method_choice(value: str) -> str:
    """``--method``'s type: a restoration method; a PF-ODE solver name points to ``--ode-method``."""
    if value in METHODS:
        return value
    from ..samplers.options import ADAPTIVE_METHODS, FIXED_METHODS

    hint = f" ({value!r} is a PF-ODE solver: --sampler ode --ode-method {value})" if value in (
        FIXED_METHODS + ADAPTIVE_METHODS) else ""
    raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(METHODS)}){hint}")


def register(subparsers) -> None:
    p = subparsers.add_parser("restore", help="restore an image: inpaint, colorize, super-resolve or deblur it with "
                              "any restoration method", description=DESCRIPTION,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", required=True, choices=list(TASKS),
                   help="; ".join(f"{name}: {text}" for name, (text, _) in TASKS.items()))
    add_restore_args(p, tasks=list(TASKS), samples_flag="--batch-size")
    p.set_defaults(func=run)


def register_preset(subparsers, task: str, help: str, description: str) -> None:
    """``scorekit inpaint`` / ``scorekit colorize``: this command with ``--task`` fixed, the sample count spelled
    ``--num-samples`` as before ``restore`` existed."""
    p = subparsers.add_parser(task, help=help, description=description,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_restore_args(p, tasks=[task], samples_flag="--num-samples")
    p.set_defaults(func=run, task=task)


def add_restore_args(p: argparse.ArgumentParser, tasks: list[str], samples_flag: str) -> None:
    """The flags of ``scorekit restore`` for ``tasks`` (every task's own flags for ``restore``; one task's for the
    ``inpaint`` / ``colorize`` presets), with the sample count spelled ``samples_flag``."""
    add_model_args(p)
    p.add_argument("--image", required=True, help="input image (PNG, JPEG, ...; any PIL mode, read by its value "
                   "range): the observation, or with --simulate the clean image")
    p.add_argument("--method", dest="restoration_method", type=method_choice, default="replacement",
                   metavar="{" + ",".join(METHODS) + "}",
                   help="; ".join(f"{name}: {spec.summary}" for name, spec in METHODS.items()))
    p.add_argument("--noise-std", type=float, default=None,
                   help="sigma_y, the observation's noise std in the model's data units (the shipped models' [-1, 1]: "
                        "0.02 is 1%% of the image range); with --simulate also the noise added. Default: 0" +
                        "".join(f", {task} {DEFAULT_NOISE[task]}" for task in tasks if task in DEFAULT_NOISE))
    p.add_argument("--simulate", action="store_true",
                   help="--image is the clean image: observe it through the task's operator (plus --noise-std noise, "
                        "drawn with --seed) and show it as the truth at the end of the grid")
    p.add_argument(samples_flag, type=int, default=4, dest=samples_flag[2:].replace("-", "_"),
                   help="samples to draw (posterior samples of the one observation)")
    p.add_argument("--out", default=f"{tasks[0] if len(tasks) == 1 else 'restore'}.png", help="output PNG grid")
    p.add_argument("--resize", action="store_true",
                   help="resize inputs of another size to the size the task needs (reported); without it they are an "
                        "error")
    add_task_args(p, tasks)
    m = p.add_argument_group("method settings", "Each applies to the methods in its [brackets]; the others refuse "
                             "it. Default: the method's own.")
    m.add_argument("--scale", type=float, default=None,
                   help="weight of the likelihood gradient, >= 0 (DPS: the step size zeta, 0.3-1 in the paper's "
                        "code; PiGDM: 1 in the paper); default 1 [dps, pigdm]")
    m.add_argument("--ddrm-eta", type=float, default=None, help="DDRM's eta in [0, 1] (default 0.85) [ddrm]")
    m.add_argument("--ddrm-eta-b", type=float, default=None, help="DDRM's eta_b in [0, 1] (default 1) [ddrm]")
    add_sampler_args(p, run_by_method=True)


def add_task_args(p: argparse.ArgumentParser, tasks: list[str]) -> None:
    g = p.add_argument_group("task", "Each applies to the --task in its [brackets].")
    if "inpaint" in tasks:
        g.add_argument("--mask", default=None, help="mask image: white = repaint, black = keep (required) [inpaint]")
        g.add_argument("--threshold-mask", action="store_true",
                       help="binarize a gray mask at 50%% (reported); without it a mask with gray levels is an error "
                            "[inpaint]")
    if "superres" in tasks:
        g.add_argument("--factor", type=int, default=None,
                       help="the pooling factor: the observation is (H / factor, W / factor); default 2 [superres]")
    if "deblur" in tasks:
        g.add_argument("--kernel", default=None, help=f"blur kernel: {' or '.join(KERNELS)} (--kernel-size taps), "
                       f"or a .npy file with a 2-D kernel; default gaussian [deblur]")
        g.add_argument("--blur-sigma", type=float, default=None,
                       help="standard deviation of the gaussian kernel in pixels; default 1 [deblur]")
        g.add_argument("--kernel-size", type=int, default=None,
                       help="taps of the gaussian or box kernel per side; default 5 [deblur]")


def check_restore_args(args: argparse.Namespace) -> None:
    """The flags that only some tasks and methods take, and their values, before anything is loaded."""
    task, method = args.task, args.restoration_method
    for other, (_, own) in TASKS.items():
        for dest in own if other != task else ():
            if getattr(args, dest, None) not in (None, False):
                raise ValueError(f"--{dest.replace('_', '-')} is for --task {other}, not --task {task}")
    if task == "inpaint" and args.mask is None:
        raise ValueError("--task inpaint needs --mask (white = repaint, black = keep)")
    if task == "deblur":
        check_kernel(args)
    for dest, default in TASKS[task][1].items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, default)
    for dest, methods in METHOD_FLAGS.items():
        if getattr(args, dest, None) not in (None, False) and method not in methods:
            raise ValueError(f"--{dest.replace('_', '-')} is for --method {' or '.join(methods)}, not --method "
                             f"{method}")
    for dest in ("ddrm_eta", "ddrm_eta_b"):
        value = getattr(args, dest)
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"--{dest.replace('_', '-')} must be in [0, 1], got {value}")
    own = METHODS[method].sampler
    if own is not None and args.sampler is not None:
        raise ValueError(f"--method {method} runs as its own sampler {own!r}; --sampler {args.sampler} cannot run it")
    sampler = args.sampler or METHODS[method].defaults.get("sampler")  # replacement's default follows the model
    if sampler is not None:
        chosen_by = (f"--sampler {sampler}" if args.sampler else f"the sampler of --method {method}" if own else
                     f"the default of --method {method}; --sampler picks another")
        if method == "ddrm":
            chosen_by += "; DDRM's eta and eta_b are --ddrm-eta and --ddrm-eta-b"
        check_sampler_flags(args, sampler, chosen_by, run_by_method=True)


def check_kernel(args: argparse.Namespace) -> None:
    """``--kernel`` is a known shape or a .npy file holding a usable kernel; ``--blur-sigma`` only with gaussian,
    ``--kernel-size`` not with a file."""
    kernel = args.kernel or TASKS["deblur"][1]["kernel"]
    if kernel not in KERNELS:
        if not kernel.endswith(".npy"):
            raise ValueError(f"--kernel must be {' or '.join(KERNELS)} or a .npy file, got {kernel!r}")
        if args.kernel_size is not None:
            raise ValueError("--kernel-size is for --kernel gaussian or box; a .npy kernel has its own size")
        load_kernel(kernel)  # numpy only: a bad file is named before the model loads
    if args.blur_sigma is not None and kernel != "gaussian":
        raise ValueError(f"--blur-sigma is for --kernel gaussian, not --kernel {kernel}")


def load_kernel(path: str):
    """The 2-D float64 numpy kernel in the .npy file ``path``; each problem a ValueError naming ``--kernel``."""
    import numpy as np

    if not os.path.isfile(path):
        raise ValueError(f"--kernel {path}: no such file")
    try:
        kernel = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"--kernel {path} is not a readable .npy array: {err}") from None
    if not (np.issubdtype(kernel.dtype, np.integer) or np.issubdtype(kernel.dtype, np.floating)):
        raise ValueError(f"--kernel {path} must hold real numbers, got dtype {kernel.dtype}")
    if kernel.ndim != 2:
        raise ValueError(f"--kernel {path} must hold a 2-D array (height x width taps), got shape {kernel.shape}")
    if not np.isfinite(kernel).all():
        raise ValueError(f"--kernel {path} holds non-finite values ({int((~np.isfinite(kernel)).sum())} NaN or inf "
                         f"of {kernel.size} taps); every tap must be finite")
    kernel = kernel.astype(np.float64)
    if abs(kernel.sum()) <= 1e-12 * np.abs(kernel).sum():  # all zeros too
        raise ValueError(f"--kernel {path} sums to 0 (all zeros observe nothing); a blur kernel sums to a positive "
                         f"value, 1 keeps the brightness")
    return kernel


def run(args: argparse.Namespace) -> int:
    check_restore_args(args)
    if args.noise_std is None:
        args.noise_std = DEFAULT_NOISE.get(args.task, 0.0)
    from .restore_tasks import restore

    return restore(args)
