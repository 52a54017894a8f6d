"""Time grids and the start state (scorekit/samplers/grids.py): a grid that does not start at T starts from the
marginal at its first time, or is refused without ``x_T``.

Data ``N(0, v I)`` in D = 4, v = 0.5. Started at ``t_0`` from ``N(0, std(t_0)^2 I)`` (the data-free marginal), the
exact flow returns variance ``v std^2 / (alpha^2 v + std^2)``: relative error ``1 / (1 + sigma^2 / v)`` with
``sigma = std / alpha``; at ``sigma(t_0) = 30`` that is 5.6e-4, far inside the statistical tolerance
(``conftest.assert_mean_cov``: 0.079 standard errors-units at n = 4000). Before the fix the prior ``N(0, prior_std^2)``
at ``T`` was drawn instead: a variance ``v (sigma(T) / sigma(t_0))^2``-ish too large (VE: 2.8x here).
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_mean_cov

import scorekit
from scorekit.samplers.grids import MIN_START_SIGMA, sigma_of_t, start_state, t_of_sigma
from scorekit.samplers.registry import REGISTRY

N, DIM, VAR = 4000, 4, 0.5
GRID_SAMPLERS = {  # every sampler that takes timesteps=, with enough steps to be accurate on this target
    "pc": dict(steps=300), "ode": dict(method="heun", steps=60), "ddim": dict(steps=300),
    "dpmsolver++": dict(steps=19), "dpmsolver++-singlestep": dict(steps=18), "sde-dpmsolver++": dict(steps=60),
    "edm-heun": dict(steps=30, time_grid="logsnr"),
}


def test_grid_samplers_are_those_with_timesteps():
    takes = {n for n, s in REGISTRY.items() if "timesteps" in s.options.option_names()}
    assert takes == set(GRID_SAMPLERS)


def target(sde):
    from scorekit.analytic import GaussianScore

    return GaussianScore(torch.zeros(DIM, dtype=torch.float64), VAR * torch.eye(DIM, dtype=torch.float64), sde)


def grid_from(sde, t0: float, steps: int) -> list[float]:
    """``steps + 1`` times from ``t0`` to eps, uniform in log sigma (a truncated schedule)."""
    eps = sde.sampling_eps
    s = torch.logspace(float(sigma_of_t(sde, torch.tensor([t0])).log10()),
                       float(sigma_of_t(sde, torch.tensor([eps])).log10()), steps + 1, dtype=torch.float64)
    ts = t_of_sigma(sde, s, eps)
    ts[0], ts[-1] = t0, eps
    return ts.tolist()


@pytest.mark.parametrize("sampler", list(GRID_SAMPLERS))
def test_grid_starting_below_T_draws_the_marginal_there(sde, sampler):
    t0 = float(t_of_sigma(sde, torch.tensor([30.0], dtype=torch.float64), sde.sampling_eps))
    assert t0 < sde.T - 0.01  # the grid really starts below T
    kwargs = dict(GRID_SAMPLERS[sampler])
    steps = kwargs.pop("steps")
    kwargs.pop("time_grid", None)
    x, info = scorekit.sample(target(sde), sde, (N, DIM), sampler=sampler, timesteps=grid_from(sde, t0, steps),
                              generator=torch.Generator().manual_seed(3), dtype=torch.float64, **kwargs)
    assert info["steps"] == steps
    assert_mean_cov(x, torch.zeros(DIM, dtype=torch.float64), VAR * torch.eye(DIM, dtype=torch.float64),
                    what=f"{sde.name} {sampler} from t0={t0:.3f}")


def test_start_draw_has_the_marginal_std():
    sde = scorekit.VESDE()
    t0 = 0.9
    x = start_state(sde, t0, None, (20000, 4), torch.Generator().manual_seed(0), torch.float64, "cpu")
    std = float(sde.marginal_coef(torch.tensor([t0], dtype=torch.float64))[1])
    # the sample std of 80000 normals is within 5 standard errors (1 / sqrt(2 n)) of the truth
    assert abs(x.std().item() / std - 1) < 5 / (2 * x.numel()) ** 0.5


def test_grid_where_the_data_still_matter_is_refused_without_x_T():
    """The issue's grid: VE from t = 0.5 (sigma = 0.71 < 10): no data-free draw is honest there."""
    sde = scorekit.VESDE()
    grid = [0.5, 0.2, 0.05, sde.sampling_eps]
    assert float(sigma_of_t(sde, torch.tensor([0.5]))) < MIN_START_SIGMA
    with pytest.raises(ValueError, match=r"timesteps start at t=0\.5 < T=1.*pass x_T"):
        scorekit.sample(target(sde), sde, (8, DIM), sampler="dpmsolver++", timesteps=grid)
    # with x_T drawn from the true marginal at t0 (data N(0, v) plus noise std(t0)), the samples are the data's
    std = float(sde.marginal_coef(torch.tensor([0.5], dtype=torch.float64))[1])
    x_T = torch.randn(N, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * (VAR + std**2) ** 0.5
    x, _ = scorekit.sample(target(sde), sde, (N, DIM), sampler="dpmsolver++", timesteps=grid_from(sde, 0.5, 19),
                           x_T=x_T, dtype=torch.float64)
    assert_mean_cov(x, torch.zeros(DIM, dtype=torch.float64), VAR * torch.eye(DIM, dtype=torch.float64),
                    what="ve dpmsolver++ from x_T at t0=0.5")


def test_scheduler_user_grid_for_the_classic_solvers():
    from scorekit.schedulers import ScoreSDEODEScheduler, ScoreSDEPCScheduler

    grid = [1.0, 0.5, 0.1, 1e-3]
    for scheduler in (ScoreSDEPCScheduler(prediction_type="score"), ScoreSDEODEScheduler(solver="euler"),
                      ScoreSDEODEScheduler(solver="ddim")):
        scheduler.set_timesteps(timesteps=grid)
        assert scheduler.timesteps.tolist() == pytest.approx(grid[:-1]) and scheduler.num_inference_steps == 3
