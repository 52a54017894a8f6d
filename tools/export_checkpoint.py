"""Export the EMA weights of a ``train_score.py`` checkpoint (accelerate ``save_state`` folder) as a pipeline folder,
for a run stopped before its last step.

    python tools/export_checkpoint.py RUN_DIR/checkpoint-500 OUT_DIR -- <the train_score.py flags of the run>

The UNet and scheduler are rebuilt from the run's own flags (``training.config``), the EMA shadow parameters are
loaded from ``custom_checkpoint_1.pkl`` (``weights_only=True``) and the folder is saved with ``build_pipeline``.
"""

from __future__ import annotations

import os
import sys

import torch

from scorekit.training.config import build_parser, build_unet, data_range_for, scheduler_config, validate_score_args
from scorekit.training.data import dataset_from_args
from scorekit.training.export import build_pipeline


def export(checkpoint: str, out: str, flags: list[str]) -> None:
    args = build_parser().parse_args(flags)
    validate_score_args(args)
    _, _, channels, resolution = dataset_from_args(args)
    unet = build_unet(args, channels, resolution)
    ema = torch.load(os.path.join(checkpoint, "custom_checkpoint_1.pkl"), weights_only=True)
    params = list(unet.parameters())
    if len(ema["shadow_params"]) != len(params):
        raise ValueError(f"{checkpoint}: EMA holds {len(ema['shadow_params'])} tensors, the UNet {len(params)}")
    with torch.no_grad():
        for p, s in zip(params, ema["shadow_params"]):
            p.copy_(s)
    build_pipeline(unet.eval(), scheduler_config(args, data_range_for(args.sde))).save_pretrained(out)


if __name__ == "__main__":
    split = sys.argv.index("--")
    export(sys.argv[1], sys.argv[2], sys.argv[split + 1:])
