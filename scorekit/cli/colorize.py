"""``scorekit colorize``: ``scorekit restore --task colorize`` (colour a gray or grayed PNG); writes the gray input
and samples as a grid."""

from __future__ import annotations

from .restore import register_preset


def register(subparsers) -> None:
    register_preset(
        subparsers, "colorize", help="colorize a gray PNG",
        description="Colorize an image (scorekit restore --task colorize; Song et al. 2021): samples are RGB images "
                    "whose channel mean equals the gray input, by the replacement method or any other (--method). A "
                    "color input is made gray first (the mean of R, G and B). Images of any PIL mode are read by "
                    "their value range (16-bit gray as 0..65535). The image must have the model's size (or pass "
                    "--resize). The output grid shows the gray input and --num-samples samples (and the truth with "
                    "--simulate) side by side.")
