"""Likelihood of the model's own data: the pipelines' ``log_likelihood`` and ``scorekit likelihood`` take the number
of levels and their range, default to what the model records (17 levels of sklearn digits for scorekit/digits, not
8-bit), and show progress."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import pytest
import torch
from hub_layouts import make_ddpm_cifar10_folder

from scorekit import bits_per_dim
from scorekit.cli import main
from scorekit.datasets import DIGITS_DATA_RANGE, DIGITS_LEVELS, digits_split
from scorekit.pipelines import ScoreSDEPipeline

README_BPD = 2.205  # 360 held-out digits, README / model card (stderr 0.013)


def write_digits(folder, n: int) -> list[str]:
    """The first ``n`` held-out test digits as 8-bit PNGs (level k stored as round(255 k / 16))."""
    levels, _ = digits_split("test")
    paths = []
    for i in range(n):
        paths.append(str(folder / f"digit{i}.png"))
        PIL.Image.fromarray(np.round(levels[i, 0].numpy() * 255 / 16).astype(np.uint8)).save(paths[-1])
    return paths


def test_cli_gives_the_digits_models_bits_per_dim_with_progress(tmp_path, capsys):
    paths = write_digits(tmp_path, 8)
    assert main(["likelihood", "--model", "scorekit/digits", "--images", *paths, "--rtol", "1e-3", "--atol",
                 "1e-3"]) == 0
    captured = capsys.readouterr()
    mean, se = (float(v) for v in captured.out.strip().splitlines()[-1].split(": ")[1].split()[:3:2])
    # 8 digits against the 360-digit figure: within 4 standard errors of the mean (plus the 360-digit figure's own
    # 0.013 and a solver allowance of 0.05 bits for rtol 1e-3); 8-bit levels gave ~5 bits/dim
    assert abs(mean - README_BPD) < 4 * math.hypot(se, 0.013) + 0.05, (mean, se)
    assert "17 levels dequantized over [-1.0625, 1.0625]" in captured.err
    assert "PF-ODE likelihood" in captured.err and "nfe=" in captured.err  # the solve's progress bar


def test_pipeline_defaults_to_the_recorded_levels_and_equals_bits_per_dim():
    pipe = ScoreSDEPipeline.from_pretrained("scorekit/digits")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.likelihood_levels() == (DIGITS_LEVELS, DIGITS_DATA_RANGE)
    levels, _ = digits_split("test")
    images = np.round(levels[:3].permute(0, 2, 3, 1).numpy() * 255 / 16).astype(np.uint8)  # 8-bit, as from a PNG
    out = pipe.log_likelihood(images, rtol=1e-3, atol=1e-3, generator=torch.Generator().manual_seed(1))
    expected, _ = bits_per_dim(pipe.score_fn(), pipe.sde, levels[:3], num_levels=DIGITS_LEVELS,
                               data_range=DIGITS_DATA_RANGE, rtol=1e-3, atol=1e-3,
                               generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.bits_per_dim, expected)  # the same levels and the same computation: equal bit for bit


def test_levels_and_range_can_be_given_and_are_checked(tmp_path, capsys):
    pipe = ScoreSDEPipeline.from_pretrained("scorekit/photos")
    assert pipe.likelihood_levels() == (256, (-1.0, 1.0))  # nothing recorded: 8-bit over the scheduler's range
    assert pipe.likelihood_levels(17, (-2, 2)) == (17, (-2.0, 2.0))
    with pytest.raises(ValueError, match="num_levels must be an integer >= 2, got 1"):
        pipe.likelihood_levels(1)
    model = make_ddpm_cifar10_folder(str(tmp_path / "model"))
    off_grid = str(tmp_path / "noise.png")
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(off_grid)
    assert main(["likelihood", "--model", model, "--images", off_grid, "--num-levels", "17", "--rtol", "1e-2",
                 "--atol", "1e-2"]) == 2
    assert "not on the 17-level grid" in capsys.readouterr().err
    assert main(["likelihood", "--model", model, "--images", off_grid, "--data-range", "1", "0"]) == 2
    assert "--data-range LO HI needs LO < HI" in capsys.readouterr().err
