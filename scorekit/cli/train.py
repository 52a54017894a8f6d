"""``scorekit train``: the score trainer (``training/train_score.py``) in one process, with the same flags."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from scorekit.training.config import DESCRIPTION, add_score_flags

    p = subparsers.add_parser("train", help="train a score network (UNet2DModel) on a score SDE",
                              description=DESCRIPTION + " For several processes or GPUs use `accelerate launch "
                              "training/train_score.py` with the same flags.",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_score_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scorekit.training.train_score import train

    args.entry = "cli"  # the model card records `scorekit train ...`; train() prints the summary line
    train(args)
    return 0
