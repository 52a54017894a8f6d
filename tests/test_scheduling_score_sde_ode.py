"""``ScoreSDEODEScheduler`` (scorekit/schedulers/scheduling_score_sde_ode.py): the few-step solvers through
``set_timesteps`` / ``step`` (diffusers loops), EDM churn included, equal to ``scorekit.sample``."""

import pytest
import torch

import scorekit
from scorekit.analytic import GaussianScore
from scorekit.schedulers import ScoreSDEODEScheduler


@pytest.mark.parametrize("scheduler", [
    ScoreSDEODEScheduler(prediction_type="score"),  # the default: DPM-Solver++(2M), half-log-SNR grid
    ScoreSDEODEScheduler(sde_type="ve", prediction_type="score", solver="dpmsolver++", order=3, time_grid="karras"),
    ScoreSDEODEScheduler(prediction_type="score", solver="sde-dpmsolver++", time_grid="uniform"),
    ScoreSDEODEScheduler(sde_type="subvp", prediction_type="score", solver="edm-heun"),
    ScoreSDEODEScheduler(sde_type="ve", prediction_type="score", solver="edm-heun", denoise=False),
    ScoreSDEODEScheduler(prediction_type="score", solver="edm-heun", s_churn=10.0),  # churn: the example
    ScoreSDEODEScheduler(sde_type="ve", prediction_type="score", solver="edm-heun", s_churn=5.0, s_tmax=20.0),
], ids=["default-vp", "3M-ve-karras", "sde-vp-uniform", "edm-heun-subvp", "edm-heun-ve-no-denoise", "edm-churn-vp",
        "edm-churn-ve-tmax"])
def test_step_loop_equals_functional_sampler(scheduler):
    sde = scheduler.sde
    gauss = GaussianScore(torch.zeros(3), torch.diag(torch.tensor([0.5, 1.0, 2.0])), sde)
    expected, info = scorekit.sample(gauss, sde, (6, 3), steps=7, generator=torch.Generator().manual_seed(3),
                                     dtype=torch.float64, **scheduler.sample_kwargs())
    g = torch.Generator().manual_seed(3)
    scheduler.set_timesteps(7)
    x = sde.prior_sampling((6, 3), generator=g, dtype=torch.float64)
    for t in scheduler.timesteps:
        t = t.double()
        x = scheduler.step(gauss(x, t.expand(6)), t, x, generator=g).prev_sample
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)
    assert len(scheduler.timesteps) == info["nfe"]


def test_user_timesteps_and_errors():
    s = ScoreSDEODEScheduler(solver="dpmsolver++")
    s.set_timesteps(timesteps=[1.0, 0.5, 0.1, 0.001])
    assert s.timesteps.tolist() == pytest.approx([1.0, 0.5, 0.1, 0.001])  # three steps and the denoising
    with pytest.raises(ValueError, match="order=5"):
        ScoreSDEODEScheduler(solver="dpmsolver++", order=5)
    with pytest.raises(ValueError, match="time_grid"):
        ScoreSDEODEScheduler(solver="dpmsolver++", time_grid="cosine")
    with pytest.raises(ValueError, match="step"):
        ScoreSDEODEScheduler(solver="dpmsolver++-singlestep").set_timesteps(5)
    with pytest.raises(ValueError, match="timesteps"):
        ScoreSDEODEScheduler(solver="euler").set_timesteps(5, timesteps=[1.0, 0.5])
