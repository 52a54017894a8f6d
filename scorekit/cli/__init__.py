"""The ``scorekit`` command line: ``scorekit sample | inpaint | colorize | likelihood | demo``.

Each subcommand lives in its own module with ``register(subparsers)``; the parser it adds sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules of this package, in the order `scorekit --help` lists them.
SUBCOMMANDS = ["sample", "inpaint", "colorize", "likelihood", "demo", "train", "train_classifier"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorekit",
        description="Score-based SDE diffusion models (Song et al. 2021) on diffusers: sampling, likelihood and "
        "controllable generation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"scorekit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
