"""The ``scorekit`` command line: ``scorekit sample | inpaint | colorize | likelihood | demo``.

Each subcommand lives in its own module with ``register(subparsers)``; the parser it adds sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scorekit import __version__

from .common import DefaultsOnceFormatter, add_spelling_aliases, check_cli_args

# Subcommand modules of this package, in the order `scorekit --help` lists them.
SUBCOMMANDS = ["sample", "inpaint", "colorize", "likelihood", "demo", "train", "train_classifier"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorekit",
        description="Score-based SDE diffusion models (Song et al. 2021) on diffusers: sampling, likelihood and "
        "controllable generation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    for sub in subparsers.choices.values():  # every default shown once in --help
        sub.formatter_class = DefaultsOnceFormatter
    add_spelling_aliases(parser)  # --batch-size and --batch_size alike
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_cli_args(args)  # counts, tolerances and --device, named as typed, before any work
        return args.func(args) or 0
    except (ValueError, TypeError, OSError) as err:  # OSError: unreadable / missing files
        print(f"scorekit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
