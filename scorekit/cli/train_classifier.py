"""``scorekit train-classifier``: the time-classifier trainer (``training/train_classifier.py``) in one process."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from scorekit.training.train_classifier import DESCRIPTION, add_classifier_flags

    p = subparsers.add_parser("train-classifier", aliases=["train_classifier"],
                              help="train a noise-conditional classifier for guidance",
                              description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_classifier_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scorekit.training.train_classifier import train

    args.entry = "cli"  # the model card records `scorekit train-classifier ...`; train() prints the summary line
    train(args)
    return 0
