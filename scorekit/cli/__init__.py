"""The ``scorekit`` command line: ``scorekit sample | restore | inpaint | colorize | likelihood | demo | train | ...``.

Each subcommand lives in its own module with ``register(subparsers)``; the parser it adds sets ``func``. Adding one
is one module and one line in :data:`SUBCOMMANDS`.

Arguments are parsed before anything heavy is imported: ``scorekit --help`` lists the subcommands from
:data:`SUBCOMMANDS` alone, only the subcommand named on the command line registers its flags, and the subcommand
modules import torch, diffusers and the pipelines inside ``run``. So help and argument errors answer in a fraction
of a second, not after the ~6 s of torch + diffusers imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scorekit import __version__

from .common import DefaultsOnceFormatter, add_spelling_aliases, check_cli_args

# name -> (module of this package, one-line help for `scorekit --help`, aliases), in the order --help lists them
SUBCOMMANDS = {
    "sample": ("sample", "sample images from a pipeline folder into a PNG grid (or sharded, with --num-images)", ()),
    "restore": ("restore", "restore an image: inpaint, colorize, super-resolve or deblur it with any restoration "
                           "method", ()),
    "inpaint": ("inpaint", "inpaint a PNG where a mask is white", ()),
    "colorize": ("colorize", "colorize a gray PNG", ()),
    "likelihood": ("likelihood", "bits/dim of images under a saved pipeline (probability-flow ODE)", ()),
    "demo": ("demo", "show the shipped digits and photo models: samples, guidance, restoration (inpainting, "
                     "super-resolution, colorization, deblurring), bits/dim", ()),
    "train": ("train", "train a score network (UNet2DModel) on a score SDE", ()),
    "train-classifier": ("train_classifier", "train a noise-conditional classifier for guidance",
                         ("train_classifier",)),
}


def chosen_subcommand(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), resolving aliases; None if none."""
    word = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, _, aliases) in SUBCOMMANDS.items():
        if word == name or word in aliases:
            return name
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser (``argv`` None), or one where only the subcommand ``argv`` names has its flags registered
    (the others are listed with their help line; nothing of theirs is imported)."""
    parser = argparse.ArgumentParser(
        prog="scorekit",
        description="Score-based SDE diffusion models (Song et al. 2021) on diffusers: sampling, likelihood and "
        "controllable generation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = None if argv is None else chosen_subcommand(argv)
    for name, (module, help_line, aliases) in SUBCOMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"{__name__}.{module}").register(subparsers)
        else:
            subparsers.add_parser(name, help=help_line, aliases=list(aliases))
    for sub in subparsers.choices.values():  # every default shown once in --help
        sub.formatter_class = DefaultsOnceFormatter
    add_spelling_aliases(parser)  # --batch-size and --batch_size alike
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        check_cli_args(args)  # counts, tolerances and --device, named as typed, before any work
        return args.func(args) or 0
    except (ValueError, TypeError, OSError) as err:  # OSError: unreadable / missing files
        print(f"scorekit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
