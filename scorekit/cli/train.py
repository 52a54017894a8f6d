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
    from scorekit.training.export import command_line
    from scorekit.training.train_score import train

    args.command_line = command_line()
    result = train(args)
    print(f"trained {result['steps']} steps, final loss {result['final_loss']:.5f}; pipeline in {args.output_dir}")
    return 0
