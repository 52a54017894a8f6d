"""``python -m scorekit.models {update NAME RUN_DIR | checksums NAME}``: maintain the shipped checkpoints.

    python -m scorekit.models update digits out/digits-guided   # copy a finished run in (the model card is kept)
    python -m scorekit.models checksums digits                  # after editing its README.md (the model card)

Run from a clone: it writes inside the package (``scorekit/models/shipped/<name>/``).
"""

from __future__ import annotations

import argparse
import os

from .shipped import CHECKSUMS, SHIPPED_MODELS, shipped_model_path, update_shipped, write_checksums


def main(argv: list[str] | None = None) -> int:
    """``python -m scorekit.models {update NAME RUN_DIR | checksums NAME}`` (maintainers, from a clone)."""
    p = argparse.ArgumentParser(prog="python -m scorekit.models",
                                description="Maintain the checkpoints that ship inside scorekit (run from a clone).")
    names = sorted(SHIPPED_MODELS) + sorted(n.split("/", 1)[1] for n in SHIPPED_MODELS)  # "digits" works too
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("update", help="copy a finished training run's pipeline folder in (the model card is kept) "
                                      "and record its checksums")
    u.add_argument("name", choices=names, help="the shipped model to replace")
    u.add_argument("run_dir", help="the --output_dir of the training run (a pipeline folder)")
    c = sub.add_parser("checksums", help="re-record checksums.json after editing a model card")
    c.add_argument("name", choices=names, help="the shipped model")
    args = p.parse_args(argv)
    if args.command == "update":
        try:
            print(f"updated {update_shipped(args.name, args.run_dir)}")
        except ValueError as err:
            p.error(str(err))
    else:
        path = shipped_model_path(args.name, verify=False)
        print(f"recorded {len(write_checksums(path))} files in {os.path.join(path, CHECKSUMS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
