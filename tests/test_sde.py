"""The forward SDEs against their closed forms (Song et al. 2021, appendix eqs. 29, 31, 33) and a simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_mean_cov, make_sdes
from scipy.integrate import solve_ivp

from scorekit.sde import VESDE, VPSDE, SubVPSDE, get_sde

# Non-default hyper-parameters, so a formula that silently uses a default cannot pass.
CUSTOM = {
    "vp": VPSDE(beta_min=0.5, beta_max=12.0, T=1.5),
    "subvp": SubVPSDE(beta_min=0.5, beta_max=12.0, T=1.5),
    "ve": VESDE(sigma_min=0.05, sigma_max=20.0, T=1.5),
}
SHAPES = [(5,), (5, 2), (3, 3, 4, 4), (1, 7)]


def closed_form(name: str, sde, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha(t), std(t))`` written out from the paper, independent of scorekit's code."""
    if name == "ve":
        # eq. 31: p_0t = N(x_0, sigma(t)^2 I), sigma(t) = sigma_min (sigma_max / sigma_min)^(t / T)
        return np.ones_like(t), sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** (t / sde.T)
    big_b = sde.beta_min * t + 0.5 * t**2 * (sde.beta_max - sde.beta_min)  # int_0^t beta(s) ds
    alpha = np.exp(-0.5 * big_b)
    if name == "vp":
        return alpha, np.sqrt(1 - np.exp(-big_b))  # eq. 29
    return alpha, 1 - np.exp(-big_b)  # eq. 33 (sub-VP)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("sdes", [make_sdes(), CUSTOM], ids=["default", "custom"])
def test_marginal_coef_matches_paper(name, sdes):
    sde = sdes[name]
    t = np.linspace(1e-5, sde.T, 57)
    alpha, std = sde.marginal_coef(torch.tensor(t, dtype=torch.float64))
    alpha_ref, std_ref = closed_form(name, sde, t)
    np.testing.assert_allclose(alpha.numpy(), alpha_ref, rtol=1e-12)
    np.testing.assert_allclose(std.numpy(), std_ref, rtol=1e-10)


def moment_ode(sde, s: float, t: float) -> tuple[float, float]:
    """Solve the linear SDE's moment ODEs from ``s`` to ``t``: ``d log r = f dt`` and ``dv = (2 f v + g^2) dt``.

    For ``dx = f(t) x dt + g(t) dw`` (eq. 5 with a linear drift), ``x_t | x_s ~ N(r x_s, v I)``; ``f`` and ``g`` are
    read from ``sde.sde`` only, so this checks ``transition_coef`` against the drift and diffusion it must integrate.
    """

    def rhs(u, y):
        tt = torch.tensor([u], dtype=torch.float64)
        drift, g = sde.sde(torch.ones(1, 1, dtype=torch.float64), tt)
        f = float(drift[0, 0])
        return [f, 2 * f * y[1] + float(g[0]) ** 2]

    sol = solve_ivp(rhs, (s, t), [0.0, 0.0], method="DOP853", rtol=1e-11, atol=1e-13)
    return math.exp(sol.y[0, -1]), sol.y[1, -1]


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_transition_coef_solves_moment_odes(name):
    sde = CUSTOM[name]
    for s, t in [(0.0, 0.3), (0.2, 0.9), (0.7, 1.5)]:
        r, v = sde.transition_coef(torch.tensor([t], dtype=torch.float64), torch.tensor([s], dtype=torch.float64))
        r_ref, v_ref = moment_ode(sde, s, t)
        assert r.item() == pytest.approx(r_ref, rel=1e-8)
        assert v.item() == pytest.approx(v_ref, rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_transition_coef_composes(name):
    # x_t2 | x_t0: r02 = r12 r01 and v02 = v12 + r12^2 v01 (Chapman-Kolmogorov for Gaussian kernels)
    sde = CUSTOM[name]
    g = torch.Generator().manual_seed(3)
    t0, t1, t2 = (torch.rand(3, 64, generator=g, dtype=torch.float64) * sde.T).sort(dim=0).values
    r01, v01 = sde.transition_coef(t1, t0)
    r12, v12 = sde.transition_coef(t2, t1)
    r02, v02 = sde.transition_coef(t2, t0)
    torch.testing.assert_close(r02, r12 * r01, rtol=1e-12, atol=0)
    torch.testing.assert_close(v02, v12 + r12**2 * v01, rtol=1e-10, atol=1e-14)


def test_ancestral_std_closed_forms():
    t = torch.tensor([0.8, 0.3], dtype=torch.float64)
    t_next = torch.tensor([0.79, 0.1], dtype=torch.float64)
    ve = CUSTOM["ve"]
    s_t, s_n = ve.sigma(t), ve.sigma(t_next)
    # eq. 47: sqrt(sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2)
    torch.testing.assert_close(ve.ancestral_std(t, t_next), (s_n**2 * (s_t**2 - s_n**2) / s_t**2).sqrt())
    vp = CUSTOM["vp"]
    beta_i = 1 - (vp.marginal_coef(t)[0] / vp.marginal_coef(t_next)[0]) ** 2  # DDPM beta_i over the step
    torch.testing.assert_close(vp.ancestral_std(t, t_next), beta_i.sqrt())  # DDPM "fixed_large" std


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_forward_simulation_matches_marginal(name, gaussian16):
    """Euler-Maruyama on the forward SDE from Gaussian data lands on N(alpha mu, alpha^2 Sigma + std^2 I).

    The chain starts from p_0 = N(mu, Sigma + std(0)^2 I) (std(0) = sigma_min for VE, 0 otherwise). EM's own bias at
    dt = 1e-3 is O(beta dt): for VP the variance recursion's fixed point is 1 / (1 - beta dt / 4) <= 1.005, i.e.
    <= 0.004 in the scaled units of ``assert_mean_cov``, an order below k / sqrt(n) ~ 0.08, so no allowance is used.
    """
    sde, n, steps = make_sdes()[name], 4000, 1000
    g = torch.Generator().manual_seed(1)
    score = gaussian16.score(sde)
    x = score.sample(n, g)[0] + sde.marginal_coef(torch.zeros(1, dtype=torch.float64))[1] * torch.randn(
        n, gaussian16.dim, generator=g, dtype=torch.float64
    )
    dt, checkpoints = sde.T / steps, {300: 0.3, 1000: 1.0}
    for i in range(steps):
        t = torch.full((n,), i * dt, dtype=torch.float64)
        drift, diffusion = sde.sde(x, t)
        x = x + drift * dt + diffusion[:, None] * math.sqrt(dt) * torch.randn(x.shape, generator=g, dtype=x.dtype)
        if i + 1 in checkpoints:
            mean_t, cov_t = score.marginal(checkpoints[i + 1])
            assert_mean_cov(x, mean_t, cov_t, what=f"{name} forward EM at t={checkpoints[i + 1]}")


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("shape", SHAPES)
def test_any_shape_and_per_sample_time(name, shape):
    sde = make_sdes()[name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.rand(shape[0], generator=g, dtype=torch.float64) * 0.9 + 0.05
    drift, diffusion = sde.sde(x, t)
    mean, std = sde.marginal_prob(x, t)
    f, big_g = sde.discretize(x, t, t * 0.5)
    assert drift.shape == mean.shape == f.shape == x.shape
    for per_sample in (diffusion, std, big_g, sde.ancestral_std(t, t * 0.5), sde.langevin_alpha(t)):
        assert per_sample.shape == (shape[0],) and torch.isfinite(per_sample).all()
    alpha = sde.marginal_coef(t)[0]
    for b in range(shape[0]):  # each sample scaled by its own alpha(t_b): broadcasting along the batch dim only
        torch.testing.assert_close(mean[b], alpha[b] * x[b])
    prior = sde.prior_sampling(shape, generator=g, dtype=torch.float64)
    assert prior.shape == shape and prior.dtype == torch.float64


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("shape", SHAPES)
def test_prior_logp_is_gaussian_log_density(name, shape):
    sde = CUSTOM[name]
    z = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    prior = torch.distributions.Normal(0.0, torch.tensor(sde.prior_std(), dtype=torch.float64))
    ref = prior.log_prob(z).reshape(shape[0], -1).sum(-1)
    torch.testing.assert_close(sde.prior_logp(z), ref, rtol=1e-12, atol=1e-10)


def test_prior_sampling_has_prior_std():
    # sample std of 10^5 draws: relative se sqrt(1 / (2 n)) ~ 0.0022; 5 se allowed
    for sde in make_sdes().values():
        z = sde.prior_sampling((1000, 100), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        assert z.std().item() == pytest.approx(sde.prior_std(), rel=5 * math.sqrt(1 / (2 * z.numel())))


def test_langevin_alpha_in_unit_interval_for_any_n():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    for n_steps in (1, 20, 1000):
        a = VPSDE(N=n_steps).langevin_alpha(t)
        assert ((a > 0) & (a <= 1)).all()
    torch.testing.assert_close(VESDE().langevin_alpha(t), torch.ones_like(t))


def test_get_sde_builds_each():
    for name, cls in (("vp", VPSDE), ("subvp", SubVPSDE), ("ve", VESDE)):
        sde = get_sde(name, N=50)
        assert isinstance(sde, cls) and sde.N == 50
