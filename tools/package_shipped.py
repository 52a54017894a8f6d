"""Assemble a shipped model folder from training outputs and record its checksums.

    python tools/package_shipped.py digits RUN_DIR scorekit/models/shipped/digits   # RUN_DIR: unet/, classifier/
    python tools/package_shipped.py photos RUN_DIR scorekit/models/shipped/photos
    python tools/package_shipped.py checksums scorekit/models/shipped/digits          # after editing the card

The digits folder is saved as a ``ScoreSDEClassConditionalPipeline`` (unet, scheduler, classifier); the photos
folder as a ``ScoreSDEPipeline``. The model card ``README.md`` already in the destination is kept.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from diffusers import UNet2DModel

from scorekit.models import TimeClassifierModel
from scorekit.models.shipped import write_checksums
from scorekit.pipelines import ScoreSDEClassConditionalPipeline, ScoreSDEPipeline
from scorekit.schedulers import ScoreSDEPCScheduler


def package(kind: str, run_dir: str, dest: str) -> None:
    unet = UNet2DModel.from_pretrained(os.path.join(run_dir, "unet"))
    scheduler = ScoreSDEPCScheduler.from_pretrained(os.path.join(run_dir, "scheduler"))
    if kind == "digits":
        classifier = TimeClassifierModel.from_pretrained(os.path.join(run_dir, "classifier"))
        pipe = ScoreSDEClassConditionalPipeline(unet=unet, scheduler=scheduler, classifier=classifier)
    else:
        pipe = ScoreSDEPipeline(unet=unet, scheduler=scheduler)
    card = os.path.join(dest, "README.md")
    keep = open(card).read() if os.path.isfile(card) else None
    with tempfile.TemporaryDirectory() as tmp:
        pipe.save_pretrained(tmp)
        for name in os.listdir(run_dir):
            if name.startswith("train_") and name.endswith(".json"):
                shutil.copy(os.path.join(run_dir, name), tmp)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(tmp, dest)
    if keep is not None:
        with open(card, "w") as f:
            f.write(keep)
    write_checksums(dest)


if __name__ == "__main__":
    if sys.argv[1] == "checksums":
        write_checksums(sys.argv[2])
    else:
        package(*sys.argv[1:4])
