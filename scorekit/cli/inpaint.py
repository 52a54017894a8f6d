"""``scorekit inpaint``: ``scorekit restore --task inpaint`` (fill the white part of a mask in a PNG); writes
observation, mask and samples as a grid."""

from __future__ import annotations

from .restore import register_preset


def register(subparsers) -> None:
    register_preset(
        subparsers, "inpaint", help="inpaint a PNG where a mask is white",
        description="Inpaint an image (scorekit restore --task inpaint): pixels where the mask is white are "
                    "generated, black ones kept, by the replacement method (Song et al. 2021) or any other "
                    "(--method). Inputs must have the model's size (or pass --resize), the mask must be black and "
                    "white (or pass --threshold-mask). Images of any PIL mode are read by their value range (16-bit "
                    "gray as 0..65535). The output grid shows the observation and the mask with the hole as a magenta "
                    "checkerboard, then --num-samples samples (and the truth with --simulate), side by side.")
