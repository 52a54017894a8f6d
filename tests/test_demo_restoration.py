"""The restoration tasks of the demo and benchmarks/quality.py: observations, baselines and the calibration measure."""

from __future__ import annotations

import math

import pytest
import torch

from scorekit.cli.demo_restoration import (
    METHODS,
    TASKS,
    coverage,
    expected_coverage,
    observe,
    restorer,
)
from scorekit.pipelines import ScoreSDEPipeline


def test_coverage_of_exact_draws_is_its_expectation():
    """Truth and samples from the same distribution: the fraction inside the samples' interval is (k - 1) / (k + 1)
    for k = 16 (the smallest and largest of 16 bound the 5th-95th percentile interval)."""
    g = torch.Generator().manual_seed(0)
    n, k = 4000, 16
    truth, samples = torch.randn(n, 1, 1, 1, generator=g), torch.randn(n, k, 1, 1, 1, generator=g)
    p = expected_coverage(k)
    assert p == pytest.approx(15 / 17)
    assert abs(coverage(samples, truth) - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert coverage(samples, truth, where=torch.zeros(1, 1, 1, dtype=torch.bool) | True) == coverage(samples, truth)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_observations_live_in_the_model_range_and_baselines_in_the_unit_range(name):
    task = TASKS[name]
    shape = (1, 8, 8) if task.data == "digits" else (3, 16, 16)
    pipe = ScoreSDEPipeline.from_pretrained("scorekit/digits-unconditional" if task.data == "digits"
                                            else "scorekit/photos")
    truth = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    obs, y = observe(pipe, task, truth, seed=0)
    assert obs.sigma_y == task.sigma_y and obs.y.shape == (2, *obs.operator.out_shape)
    clean = obs.operator(2 * truth - 1)  # both models take data in [-1, 1]
    assert (obs.y - clean).abs().max() <= (5 * task.sigma_y if task.sigma_y else 1e-5)
    assert torch.allclose(y, (obs.y + 1) / 2)
    base = task.baseline(y, truth)
    assert base.shape == truth.shape and base.min() >= 0 and base.max() <= 1
    assert task.panel(y, truth).shape[2:] == truth.shape[2:]
    if task.kind == "inpaint":
        known = ~task.hole(shape).bool().expand_as(truth)
        assert torch.equal(base[known], truth[known])


def test_every_method_family_is_in_the_restoration_table():
    assert set(METHODS) >= {"replacement-pc", "replacement", "dps", "pigdm", "ddrm", "tds", "mcgdiff"}


def test_restorations_clip_the_denoised_estimate_without_touching_the_model():
    digits = ScoreSDEPipeline.from_pretrained("scorekit/digits-unconditional")
    other = restorer(digits)
    assert other.clips_denoised() and other.unet is digits.unet
    assert not digits.clips_denoised() and not digits.scheduler.config.clip_sample


def test_psnr_pools_the_squared_error_over_every_sample():
    from scorekit.metrics import psnr

    truth = torch.zeros(2, 1, 1, 4, 4)
    samples = torch.cat([torch.full((2, 1, 1, 4, 4), 0.1), torch.full((2, 1, 1, 4, 4), 0.3)], 1)  # k = 2 per image
    assert psnr(samples, truth) == pytest.approx(-10 * math.log10((0.1**2 + 0.3**2) / 2), rel=1e-6)
