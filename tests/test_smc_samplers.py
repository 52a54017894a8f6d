"""The particle samplers (scorekit.samplers.smc, .tds, .mcgdiff): machinery, settings, proposals, exactness.

Both run through the front door: ``scorekit.sample(score_fn, sde, shape, "tds", condition=TDS(observation),
num_particles=K)`` (``"mcgdiff"`` with ``MCGdiff(observation)``); their SMC facts are in ``info["particles"]``.

Exactness oracles: the Gaussian-mixture posterior of ``scorekit.analytic_posterior`` (mixture weights, means and
covariances in closed form, exact draws). Tolerances come from the sample size ``n``:

- mode shares: Pearson's ``X^2 = sum_k (n_k - n w_k)^2 / (n w_k)`` over the modes with ``w_k > 0.5 %`` (the rest
  pooled) is ``chi2_{m - 1}`` for exact draws;
- means: ``|mean_hat_i - m_i| / sqrt(S_ii / n)`` are standard normal, checked with a Bonferroni ``k``;
- sliced Wasserstein: a sampler's SW2 to ``n`` exact draws against the exact-vs-exact floor of the same ``n``.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import INVERSE_TASKS, basis_matrix, bonferroni_k, gaussian_fit_statistics, inverse_problem, mean_bias2
from scipy.stats import chi2

import scorekit
from scorekit.analytic import GaussianScore, gaussian_conditional, image_gaussian
from scorekit.analytic_posterior import grid_mixture_problem
from scorekit.conditioning import TDS, MCGdiff
from scorekit.conditioning.linear import Observation
from scorekit.conditioning.operators import Matrix
from scorekit.metrics import sliced_wasserstein
from scorekit.samplers.grids import t_of_sigma
from scorekit.samplers.smc import ParticleSystem, ess, gather_groups, systematic_indices

F64 = torch.float64
ALPHA = 1e-3


# --- machinery -------------------------------------------------------------------------------------------------------
def test_systematic_resampling_copies_each_particle_floor_or_ceil_of_K_w_times():
    g = torch.Generator().manual_seed(0)
    log_w = 3 * torch.randn(200, 16, generator=g, dtype=F64)
    idx = systematic_indices(log_w, torch.rand(200, generator=g, dtype=F64))
    counts = torch.zeros(200, 16, dtype=F64).scatter_add_(1, idx, torch.ones(200, 16, dtype=F64))
    kw = 16 * torch.softmax(log_w, -1)
    assert ((counts >= kw.floor() - 1e-9) & (counts <= kw.ceil() + 1e-9)).all()


def test_ess_and_group_layout():
    log_w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, -1e9, -1e9, -1e9]], dtype=F64)
    torch.testing.assert_close(ess(log_w), torch.tensor([4.0, 1.0], dtype=F64))
    rows = torch.arange(8.0)[:, None]  # 2 groups of 4
    out = gather_groups(rows, torch.tensor([[3, 3, 0, 1], [0, 0, 0, 2]]))
    assert out[:, 0].tolist() == [3, 3, 0, 1, 4, 4, 4, 6]


def test_only_groups_below_the_ess_threshold_are_resampled():
    system = ParticleSystem(2, 4, 0.5, torch.Generator().manual_seed(0), F64, "cpu")
    system.reweight(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, -50.0, -50.0, -50.0], dtype=F64))
    (x,) = system.resample(torch.arange(8.0)[:, None])
    assert x[:, 0].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert system.resampled[-1].tolist() == [False, True]
    torch.testing.assert_close(system.log_w.exp(), torch.full((2, 4), 0.25, dtype=F64))


def test_the_final_draw_picks_particles_by_weight():
    n, w = 20000, torch.tensor([0.1, 0.6, 0.3], dtype=F64)
    system = ParticleSystem(n, 3, 0.5, torch.Generator().manual_seed(1), F64, "cpu")
    system.reweight(w.log().repeat(n))
    picked = system.select(torch.arange(3.0).repeat(n)[:, None])[:, 0].long()
    shares = torch.bincount(picked, minlength=3) / n
    assert ((shares - w).abs() <= bonferroni_k(3) * (w * (1 - w) / n).sqrt()).all()


def test_time_of_ratio_inverts_std_over_alpha():
    for sde in (scorekit.VPSDE(), scorekit.SubVPSDE(), scorekit.VESDE()):
        t = torch.tensor([0.01, 0.3, 0.9], dtype=F64)
        alpha, std = sde.marginal_coef(t)
        torch.testing.assert_close(t_of_sigma(sde, std / alpha, 1e-5), t, rtol=1e-10, atol=1e-12)


# --- a small problem for the behaviour tests -------------------------------------------------------------------------
def _problem(sigma_y=0.3, event=(4,), svd=True):
    d = math.prod(event)
    a = torch.randn(1, d, generator=torch.Generator().manual_seed(3), dtype=F64)
    op = Matrix(a, in_shape=event) if svd else Matrix(a, in_shape=event) @ Matrix(torch.eye(d, dtype=F64),
                                                                                   in_shape=event)
    weights, means = torch.tensor([0.5, 0.5]), torch.stack([torch.full(event, 2.0), torch.full(event, -2.0)])
    mix = scorekit.analytic.GaussianMixtureScore(weights, means.to(F64), torch.eye(d, dtype=F64).expand(2, d, d),
                                                 scorekit.VPSDE())
    return mix, Observation(op, torch.tensor([[1.0]], dtype=F64), sigma_y)


CONDITIONS = {"tds": TDS, "mcgdiff": MCGdiff}


def _sampler(name):
    """``run(score_fn, sde, shape, observation=..., **settings)``: ``name`` through ``scorekit.sample`` with its
    condition over ``observation``."""
    def run(score_fn, sde, shape, *, observation, **kwargs):
        return scorekit.sample(score_fn, sde, shape, name, condition=CONDITIONS[name](observation), **kwargs)

    return run


SAMPLERS = {name: _sampler(name) for name in CONDITIONS}
tds_sample, mcgdiff_sample = SAMPLERS["tds"], SAMPLERS["mcgdiff"]


def _never_called(x, t):
    raise AssertionError("the score was evaluated before the settings were checked")


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("change, match", [
    (dict(num_particles=0), "num_particles"), (dict(ess_threshold=0.0), "ess_threshold"),
    (dict(ess_threshold=1.5), "ess_threshold"), (dict(shape=(3, 5)), "in_shape"),
    (dict(y=torch.zeros(2, 1, dtype=F64)), "y has batch"), (dict(y=torch.zeros(1, 2, dtype=F64)), "y has shape"),
    (dict(sigma_y=-0.1), "sigma_y"), (dict(x_T=torch.zeros(3, 2, 4)), "x_T"),
    (dict(steps=0), "steps"), (dict(return_particles="yes"), "return_particles")])
def test_bad_settings_are_refused_before_any_work(name, change, match):
    mix, obs = _problem()
    change = dict(change)  # (the parametrized dict is shared by both samplers)
    y, sigma_y = change.pop("y", obs.y), change.pop("sigma_y", obs.sigma_y)
    kwargs = {"num_particles": 4, **change}
    with pytest.raises(ValueError, match=match):  # the Observation checks y and sigma_y, the front door the rest
        observation = Observation(obs.operator, y, sigma_y)
        SAMPLERS[name](_never_called, mix.sde, kwargs.pop("shape", (3, 4)), observation=observation, **kwargs)


def test_mcgdiff_needs_an_svd_and_tds_one_likelihood():
    mix, obs = _problem(svd=False)
    with pytest.raises(ValueError, match="MCGdiff needs an operator with an SVD"):
        mcgdiff_sample(_never_called, mix.sde, (3, 4), observation=obs)
    with pytest.raises(ValueError, match="exactly one"):
        scorekit.sample(_never_called, mix.sde, (3, 4), "tds", condition=TDS())
    with pytest.raises(ValueError, match="exactly one"):
        TDS(obs, log_likelihood=lambda x0: x0.sum(-1))
    with pytest.raises(TypeError, match="observation"):
        mcgdiff_sample(_never_called, mix.sde, (3, 4), observation=(obs.operator, obs.y))
    per_sample = scorekit.conditioning.operators.Mask(torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]]),
                                                      in_shape=(4,))
    with pytest.raises(ValueError, match="per-sample"):
        tds_sample(_never_called, mix.sde, (3, 4), observation=Observation(per_sample, torch.zeros(1, 4)))


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_projection_condition_is_refused(name):
    mix, obs = _problem()
    inpaint = scorekit.Inpaint(torch.zeros(1, 4), torch.tensor([1, 0, 0, 0]))
    with pytest.raises(ValueError, match="projection hooks"):
        scorekit.sample(_never_called, mix.sde, (2, 4), name, steps=5, num_particles=2, dtype=F64,
                        condition=scorekit.Compose([inpaint, CONDITIONS[name](obs)]))


# --- the proposals: K = 1 --------------------------------------------------------------------------------------------
def test_tds_with_one_particle_is_ancestral_sampling_with_the_twisted_score():
    """K = 1: TDS is its proposal, the ancestral step (DDIM eta = 1) driven by ``score + grad log p~_t(y | x_t)``."""
    mix, obs = _problem()
    sde, a, y, sigma_y = mix.sde, obs.operator.m, obs.y, obs.sigma_y

    def twisted(x, t):
        alpha, std = (v[:, None] for v in sde.marginal_coef(t))
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = mix(xg, t)
            x0 = (xg + std**2 * s) / alpha
            log_g = -0.5 * ((y - x0 @ a.T) ** 2).sum(-1) / (sigma_y**2 + (std[:, 0] / alpha[:, 0]) ** 2)
            (grad,) = torch.autograd.grad(log_g.sum(), xg)
        return s.detach() + grad

    x_T = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    ref, _ = scorekit.sample(twisted, sde, (5, 4), "ddim", eta=1.0, steps=20, denoise=False, x_T=x_T, dtype=F64,
                             generator=torch.Generator().manual_seed(1))
    out, info = tds_sample(mix, sde, (5, 4), observation=obs, num_particles=1, steps=20, denoise=False, x_T=x_T,
                           dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert info["particles"]["num_resampling"].sum() == 0 and (info["particles"]["ess"] == 1).all()


def test_mcgdiff_with_one_particle_and_nothing_to_pin_is_ancestral_sampling():
    """K = 1 and an observation weaker than the prior's noise (nothing pinned): the plain ancestral chain."""
    mix, _ = _problem()
    op = Matrix(torch.tensor([[1.0, 0, 0, 0]], dtype=F64))  # its V is the identity
    assert torch.equal(op.svd.V_adjoint(torch.eye(4, dtype=F64)), torch.eye(4, dtype=F64))
    obs = Observation(op, torch.tensor([[0.5]], dtype=F64), 1e3)  # sigma_y > std(T) / alpha(T) = 152
    x_T = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    ref, _ = scorekit.sample(mix, mix.sde, (5, 4), "ddim", eta=1.0, steps=20, x_T=x_T, dtype=F64,
                             generator=torch.Generator().manual_seed(1))
    out, info = mcgdiff_sample(mix, mix.sde, (5, 4), observation=obs, num_particles=1, steps=20, x_T=x_T,
                               dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert info["nfe"] == 21 and info["particles"]["nfe_per_sample"] == 21


@pytest.mark.parametrize("sde", [scorekit.VPSDE(), scorekit.SubVPSDE(), scorekit.VESDE()], ids=["vp", "subvp", "ve"])
def test_mcgdiff_noiseless_returns_particles_that_satisfy_the_observation(sde):
    mix, obs = _problem(sigma_y=0.0, event=(2, 2))
    mix.sde = sde
    x, _ = mcgdiff_sample(mix, sde, (6, 2, 2), observation=obs, num_particles=8, steps=30, dtype=F64,
                          generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(obs.operator.forward(x), obs.y.expand(6, 1), rtol=0, atol=1e-10)


# --- randomness, info, particles, callbacks, no_grad -----------------------------------------------------------------
@pytest.mark.parametrize("name", SAMPLERS)
def test_a_list_of_generators_equals_one_run_per_sample(name):
    mix, obs = _problem()
    x_T = torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    run = SAMPLERS[name]
    both, _ = run(mix, mix.sde, (2, 4), observation=obs, num_particles=6, steps=15, x_T=x_T, dtype=F64,
                  generator=[torch.Generator().manual_seed(s) for s in (7, 8)])
    for b, seed in enumerate((7, 8)):
        one, _ = run(mix, mix.sde, (1, 4), observation=obs, num_particles=6, steps=15, x_T=x_T[b:b + 1], dtype=F64,
                     generator=[torch.Generator().manual_seed(seed)])
        torch.testing.assert_close(both[b:b + 1], one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", SAMPLERS)
def test_info_and_all_weighted_particles(name):
    mix, obs = _problem()
    seen = []
    x, info = SAMPLERS[name](mix, mix.sde, (3, 4), observation=obs, num_particles=5, steps=12, dtype=F64,
                             return_particles=True, generator=torch.Generator().manual_seed(0),
                             callback=lambda i, t, x_: seen.append(tuple(x_.shape)))
    smc = info["particles"]
    assert x.shape == (3, 5, 4) and smc["log_weights"].shape == (3, 5)
    torch.testing.assert_close(smc["log_weights"].logsumexp(-1), torch.zeros(3, dtype=F64))
    assert info["nfe"] == 13 and smc["nfe_per_particle"] == 13 and smc["nfe_per_sample"] == 65
    assert smc["ess"].shape == (13, 3) and ((smc["ess"] >= 1 - 1e-9) & (smc["ess"] <= 5 + 1e-9)).all()
    assert smc["resampled"].shape == (12, 3) and (smc["num_resampling"] == smc["resampled"].sum(0)).all()
    assert seen == [(15, 4)] * 12


def test_tds_takes_gradients_of_any_likelihood_under_no_grad():
    mix, _ = _problem()

    def log_likelihood(x0):  # observe the first coordinate at 1.5 with noise 0.2
        return -0.5 * ((x0[:, 0] - 1.5) / 0.2) ** 2

    x = mix.sde.prior_sampling((200, 4), generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        out, _ = scorekit.sample(mix, mix.sde, (200, 4), "tds", condition=TDS(log_likelihood=log_likelihood), x_T=x,
                                 eps=1e-3, generator=torch.Generator().manual_seed(1), steps=40, denoise=True,
                                 num_particles=1, ess_threshold=0.5, dtype=F64)
    assert (out[:, 0] - 1.5).abs().mean() < 0.5  # the twisted proposal alone follows the likelihood's gradient


# --- exactness against the Gaussian-mixture posterior ---------------------------------------------------------------
def _mode_chi2(x, post, n):
    labels = post.component_log_posterior(x).argmax(-1)
    counts, w = torch.bincount(labels, minlength=len(post.weights)).double(), post.weights
    big = w > 0.005
    counts = torch.cat([counts[big], counts[~big].sum()[None]])
    w = torch.cat([w[big], w[~big].sum()[None]])
    return float(((counts - n * w) ** 2 / (n * w)).sum()), int(big.sum())  # chi2 with big.sum() df (pooled rest)


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLERS)
def test_error_to_the_mixture_posterior_falls_with_particles(name):
    """A 25-mode mixture in D = 4 observed through one noisy random projection (six modes above 1 % a posteriori).
    At K = 4 the mode shares are far off; at K = 64 mode shares, mean and SW2 are within sample-size tolerance."""
    p, sde, n = grid_mixture_problem(4, 1, seed=0), scorekit.VPSDE(), 400
    post, obs = p.posterior, Observation(Matrix(p.matrix), p.y, p.sigma_y)
    exact = post.sample(n, torch.Generator().manual_seed(1))[0]
    floor = torch.tensor([sliced_wasserstein(post.sample(n, torch.Generator().manual_seed(10 + i))[0], exact,
                                             generator=torch.Generator().manual_seed(2)) for i in range(8)])
    stats = {}
    for k in (4, 16, 64):
        x_T = p.marginal_sample(n * k, sde, sde.T, torch.Generator().manual_seed(3)).reshape(n, k, 4)
        x, _ = SAMPLERS[name](p.score(sde), sde, (n, 4), observation=obs, num_particles=k, steps=100, dtype=F64,
                              x_T=x_T, generator=torch.Generator().manual_seed(4))
        z_mean = ((x.mean(0) - post.mean()) / (post.cov().diagonal() / n).sqrt()).abs().max()
        stats[k] = (*_mode_chi2(x, post, n), float(z_mean), sliced_wasserstein(x, exact, generator=torch.Generator()
                                                                                  .manual_seed(2)))
    chi2_64, df, z_64, sw_64 = stats[64]
    assert chi2_64 < chi2.ppf(1 - ALPHA, df), f"{name}: mode shares at K = 64, {stats}"
    assert z_64 < bonferroni_k(4, ALPHA), f"{name}: mean at K = 64, {stats}"
    assert sw_64 < floor.mean() + 3 * floor.std(), f"{name}: SW2 at K = 64 vs floor {floor.mean():.3f}, {stats}"
    assert stats[4][0] > 3 * chi2.ppf(1 - ALPHA, df) and stats[4][0] > stats[64][0], f"{name}: no fall, {stats}"


def _image_problem(kind: str, h: int = 2):
    """Gaussian RGB images (3, h, h) (``image_gaussian``), a noiseless observation of one exact draw: the left half
    of the pixels (inpainting) or the gray coordinate of every pixel (colorization), and the exact conditional
    ``N(m, s)`` of the unobserved coordinates ``u = p x`` (Schur complement)."""
    mean, cov = image_gaussian(h, h)
    gauss = GaussianScore(mean, cov, scorekit.VPSDE())
    x0, _ = gauss.sample(1, torch.Generator().manual_seed(1))
    p = basis_matrix(kind, h, h)
    if kind == "inpaint":
        mask = torch.zeros(1, 1, h, h, dtype=torch.bool)
        mask[..., : h // 2] = True
        observed = mask.expand(1, 3, h, h).reshape(-1)
    else:
        observed = torch.zeros(3, h * h, dtype=torch.bool)
        observed[0] = True
        observed = observed.reshape(-1)
    y = (p @ x0.reshape(-1))[observed]
    m, s = gaussian_conditional(p @ mean.reshape(-1), p @ cov @ p.T, observed, y)
    return gauss, Observation(Matrix(p[observed], in_shape=(3, h, h)), y[None], 0.0), p, observed, m, s


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["inpaint", "colorize"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_gaussian_inpainting_and_colorization_are_exact_without_a_corrector(name, kind):
    """Noiseless inpainting / colorization of (3, 2, 2) Gaussian images: with K = 32 particles the unobserved part
    passes the chi2 tests of its exact conditional (mean and Bartlett-corrected covariance LRT, level 1e-3), with no
    Langevin corrector; K = 1 (the proposal alone) is biased (TDS colorization mildly at this n). 400 steps: at
    100 steps the ancestral chain itself (every K, and DDIM eta = 1) has a covariance deficit the LRT detects at
    n = 400."""
    gauss, obs, p, observed, m, s = _image_problem(kind)
    n, d = 400, int((~observed).sum())
    stats = {}
    for k in (1, 32):
        x, _ = SAMPLERS[name](gauss, gauss.sde, (n, 3, 2, 2), observation=obs, num_particles=k, steps=400,
                              dtype=F64, generator=torch.Generator().manual_seed(2))
        stats[k] = gaussian_fit_statistics((x.reshape(n, -1) @ p.T)[:, ~observed], m, s)
    q_mean, q_cov = chi2.ppf(1 - ALPHA, d), chi2.ppf(1 - ALPHA, d * (d + 1) // 2)
    assert stats[32][0] < q_mean and stats[32][1] < q_cov, f"{name} {kind}: {stats} vs quantiles {q_mean, q_cov}"
    assert stats[1][0] > stats[32][0], f"{name} {kind}: the weights did not reduce the proposal's bias, {stats}"


@pytest.mark.slow
@pytest.mark.parametrize("sigma_y", [0.0, 0.1])
@pytest.mark.parametrize("task", INVERSE_TASKS)
@pytest.mark.parametrize("name", SAMPLERS)
def test_particles_reduce_the_bias_on_every_gaussian_image_task(name, task, sigma_y):
    """The Gaussian image oracles of ``tests/test_inverse_methods.py`` ((3, 4, 4) images: inpainting, colorization, 2x
    super-resolution, a random projection; noiseless and sigma_y = 0.1): the whitened squared mean bias ``b`` of the
    posterior draws (:func:`conftest.mean_bias2`, 0 = exact) falls from the proposal alone (K = 1) to K = 16, by more
    than half and by 4 combined standard errors (n = 400, 100 steps; at n = 200 it fell 4x-30x in every case, by
    3.5-15 standard errors).

    At these 24-48 free dimensions 16 particles are not yet exact: measured at n = 400 and 200 steps, MCGdiff passes
    the 1e-3 chi-square tests of its exact posterior at K = 32 on colorization and super-resolution, inpainting and
    the projection need K >= 128 (mean statistic 4.5x its quantile at K = 32, 1.2x at K = 128); TDS needs more (noisy
    colorization: 158x -> 20x -> 8.7x at K = 1, 32, 128), the twist's Gaussian at the Tweedie estimate being a poor
    proposal there. The exactness tests at the largest K are the (3, 2, 2) ones above and the mixtures."""
    problem = inverse_problem(task, sigma_y)
    n = 400
    bias = {}
    for k in (1, 16):
        x, _ = SAMPLERS[name](problem.gauss, problem.gauss.sde, (n, 3, 4, 4), observation=problem.observation,
                              num_particles=k, steps=100, dtype=F64, generator=torch.Generator().manual_seed(2))
        bias[k] = mean_bias2(problem.spectral(x), problem.mean, problem.cov)
    (b1, se1), (b16, se16) = bias[1], bias[16]
    assert b16 < b1 / 2 and b1 - b16 > 4 * math.hypot(se1, se16), f"{name} {task} sigma_y={sigma_y}: {bias}"


# --- one public form: the problem is a condition, paired with its sampler --------------------------------------------
@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_and_its_condition_come_together(name):
    """Like ``ddrm`` and ``DDRM``: the sampler without its condition, and the condition with another sampler (alone or
    in a Compose), are refused before any work, naming both."""
    mix, obs = _problem()
    kind = CONDITIONS[name].__name__
    with pytest.raises(ValueError, match=rf"sampler={name!r} needs condition={kind}\(\.\.\.\)"):
        scorekit.sample(_never_called, mix.sde, (3, 4), name, steps=2, num_particles=2)
    with pytest.raises(ValueError, match=rf"sampler={name!r} needs condition={kind}"):
        scorekit.sample(_never_called, mix.sde, (3, 4), name, steps=2, condition=scorekit.DPS(obs))
    for condition in (CONDITIONS[name](obs), scorekit.Compose([scorekit.DPS(obs), CONDITIONS[name](obs)])):
        with pytest.raises(ValueError, match=rf"pass sampler={name!r}, not sampler='ddim'"):
            scorekit.sample(_never_called, mix.sde, (3, 4), "ddim", steps=2, condition=condition)
    with pytest.raises(ValueError, match="runs as a sampler of its own"):
        CONDITIONS[name](obs).project(torch.zeros(3, 4), torch.ones(3), None)


def test_a_projection_beside_ddrm_is_refused_too():
    """The sampler-of-its-own rule is one check for the three (InverseProblem.check_run): DDRM never called the
    projection hooks of a composed condition either, and now says so instead of ignoring them."""
    mix, obs = _problem()
    inpaint = scorekit.Inpaint(torch.zeros(1, 4), torch.tensor([1, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"DDRM runs as a sampler of its own.*\(Inpaint\.project\)"):
        scorekit.sample(_never_called, mix.sde, (2, 4), "ddrm", steps=2, dtype=F64,
                        condition=scorekit.Compose([inpaint, scorekit.DDRM(obs)]))


@pytest.mark.parametrize("name", SAMPLERS)
def test_x_T_per_sample_or_per_particle(name):
    """``x_T`` ``(B, ...)`` starts every particle of a sample there; ``(B, K, ...)`` gives each its own start (here
    all equal to the sample's, so both runs are the same computation)."""
    mix, obs = _problem()
    x_T = torch.randn(2, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    run = SAMPLERS[name]
    a, info = run(mix, mix.sde, (2, 4), observation=obs, num_particles=3, steps=6, x_T=x_T, dtype=F64,
                  generator=torch.Generator().manual_seed(1))
    b, _ = run(mix, mix.sde, (2, 4), observation=obs, num_particles=3, steps=6, x_T=x_T[:, None].expand(2, 3, 4),
               dtype=F64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and info["options"] == {"num_particles": 3, "ess_threshold": 0.5,
                                                     "return_particles": False}
    with pytest.raises(ValueError, match=r"x_T has shape \(2, 4, 4\).*\(2, 3, 4\) \(one per particle\)"):
        run(_never_called, mix.sde, (2, 4), observation=obs, num_particles=3, x_T=torch.zeros(2, 4, 4))


def test_the_options_object_is_the_typed_form():
    from scorekit.samplers.options import MCGdiffOptions, TDSOptions

    mix, obs = _problem()
    kwargs = dict(steps=5, dtype=F64)
    a, _ = scorekit.sample(mix, mix.sde, (2, 4), TDSOptions(num_particles=3), condition=TDS(obs),
                           generator=torch.Generator().manual_seed(0), **kwargs)
    b, _ = scorekit.sample(mix, mix.sde, (2, 4), "tds", num_particles=3, condition=TDS(obs),
                           generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="num_particles must be an integer >= 1, got 0"):
        MCGdiffOptions(num_particles=0)


@pytest.mark.parametrize("name", SAMPLERS)
def test_particle_samplers_in_a_pipeline(name):
    """Pipelines take the problem as ``condition=`` and the settings as keywords; their ``nfe`` is the per-particle
    count (a sample cost K times it); they return one image per sample and refuse ``return_particles=True``."""
    from diffusers import DDPMScheduler
    from hub_layouts import tiny_ddpm_unet

    from scorekit.conditioning import Mask
    from scorekit.pipelines import ScoreSDEPipeline

    torch.manual_seed(0)
    pipe = ScoreSDEPipeline(unet=tiny_ddpm_unet().eval(), scheduler=DDPMScheduler())
    pipe.set_progress_bar_config(disable=True)
    mask = torch.zeros(3, 8, 8, dtype=torch.bool)
    mask[:, :, :4] = True
    obs = Observation(Mask(mask), torch.zeros(1, 3, 8, 8), 0.05)
    out = pipe(batch_size=2, num_inference_steps=3, sampler=name, condition=CONDITIONS[name](obs), num_particles=2,
               ess_threshold=1.0, output_type="pt", generator=[torch.Generator().manual_seed(s) for s in (0, 1)])
    assert out.images.shape == (2, 3, 8, 8) and out.nfe == 4 and torch.isfinite(out.images).all()
    with pytest.raises(ValueError, match="return_particles=True is for ScoreSDERestorationPipeline and scorekit.samp"):
        pipe(batch_size=2, num_inference_steps=3, sampler=name, condition=CONDITIONS[name](obs), return_particles=True)
