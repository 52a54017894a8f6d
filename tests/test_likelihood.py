"""PF-ODE likelihood and bits/dim against closed forms (Gaussian data, every SDE).

For data ``N(mu, Sigma)`` with ``Sigma = U diag(lambda) U^T`` the perturbed marginals are ``N(alpha mu, C_t)``,
``C_t = U diag(c(t)) U^T``, ``c_i(t) = alpha^2 lambda_i + std^2``, and the PF-ODE drift is affine with Jacobian
``J(t) = f(t) I + 1/2 g(t)^2 C_t^{-1}``. Since ``d/dt 1/2 log c_i = f + 1/2 g^2 / c_i`` (the variance ODE
``c' = 2 f c + g^2``), the time-integrated Jacobian is exact: ``A = int_eps^T J dt = U diag(1/2 log(c(T) / c(eps)))
U^T``, the same for every path. A probe ``v`` held for the whole solve therefore contributes exactly ``v^T A v``, so
``L_v = log p_eps(x) + (v^T A v - tr A) + (log N(z; 0, prior) - log p_T(z))``: probe error and prior mismatch are
known in closed form and what remains is solver error.

Solver tolerance: the divergence integral is a quadrature fed by the trajectory; its global error is at most the
sum of the per-step error allowances, ``n_steps (atol + rtol |delta|)``, with ``n_steps <= nfe / 6`` for dopri5 / RK45
(six new stages per step, first-same-as-last).
"""

from __future__ import annotations

import math

import pytest
import torch

from scorekit.analytic import GaussianScore
from scorekit.likelihood import (
    bits_per_dim,
    dequantize_levels,
    draw_probes,
    hutchinson_divergence,
    levels_from_data,
    log_likelihood,
    nats_to_bpd,
)
from scorekit.samplers.ode import pf_ode_drift
from scorekit.sde import get_sde

D = 64
TOL = 1e-6
SDE_NAMES = ["vp", "subvp", "ve"]


def gaussian(sde_name: str, correlated: bool, seed: int = 0) -> GaussianScore:
    g = torch.Generator().manual_seed(seed)
    mean = 0.5 * torch.randn(D, generator=g, dtype=torch.float64)
    if not correlated:
        return GaussianScore(mean, 0.3 * torch.eye(D, dtype=torch.float64), get_sde(sde_name))
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    lam = torch.logspace(math.log10(0.05), 0, D, dtype=torch.float64)
    return GaussianScore(mean, q @ torch.diag(lam) @ q.T, get_sde(sde_name))


def integrated_jacobian(gs: GaussianScore, eps: float) -> torch.Tensor:
    """``A = int_eps^T J dt = U diag(1/2 log(c(T) / c(eps))) U^T`` (module docstring)."""
    t = torch.tensor([eps, gs.sde.T], dtype=torch.float64)
    alpha, std = gs.sde.marginal_coef(t)
    c = alpha[:, None] ** 2 * gs.evals[0] + std[:, None] ** 2
    u = gs.evecs[0]
    return u @ torch.diag(0.5 * torch.log(c[1] / c[0])) @ u.T


def hutchinson_variance(a: torch.Tensor, probe: str) -> torch.Tensor:
    """``Var(v^T A v)`` for symmetric ``A``: ``2 sum_{i != j} A_ij^2`` (Rademacher), ``2 ||A||_F^2`` (Gaussian)."""
    off = a.pow(2).sum() - a.diagonal().pow(2).sum()
    return 2 * off if probe == "rademacher" else 2 * a.pow(2).sum()


def solver_tol(info: dict, rtol: float = TOL, atol: float = TOL) -> torch.Tensor:
    return info["nfe"] / 6 * (atol + rtol * info["delta_logp"].abs())


def prior_mismatch(gs: GaussianScore, info: dict) -> torch.Tensor:
    """``log N(z; 0, prior) - log p_T(z)``: what the estimate carries because p_T is not exactly the prior."""
    return info["prior_logp"] - gs.log_prob(info["latent"], gs.sde.T)


# --- the Hutchinson estimator itself -------------------------------------------------------------------------------
@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_estimator_matches_exact_trace(probe):
    gs = gaussian("vp", correlated=True)
    x, _ = gs.sample(2, torch.Generator().manual_seed(1))
    t = torch.full((2,), 0.3, dtype=torch.float64)
    k = 1000
    probes = draw_probes(k, x, probe, torch.Generator().manual_seed(2))
    drift, est = hutchinson_divergence(lambda x_: pf_ode_drift(x_, t, gs, gs.sde), x, probes)
    assert torch.allclose(drift, pf_ode_drift(x, t, gs, gs.sde))
    f, g = gs.sde.sde(torch.ones(1, D, dtype=torch.float64), t[:1])  # linear drift: f(x) = f * x
    jac = f[0, 0] * torch.eye(D, dtype=torch.float64) + 0.5 * g[0] ** 2 * torch.linalg.inv(gs.marginal(0.3)[1])
    var = hutchinson_variance(jac, probe)
    # mean of k i.i.d. estimates: standard error sqrt(var / k); 5 standard errors
    assert (est.mean(0) - jac.trace()).abs().max() <= 5 * (var / k).sqrt()
    # sample variance: standard error sqrt((m4 - s^4) / k) from the sample's own 4th central moment; 5 of them
    centred = est - est.mean(0)
    s2, m4 = centred.pow(2).mean(0), centred.pow(4).mean(0)
    assert ((s2 - var).abs() <= 5 * ((m4 - s2**2) / k).sqrt()).all()


# --- log_likelihood against the exact log-density ------------------------------------------------------------------
@pytest.mark.parametrize("sde_name", SDE_NAMES)
def test_isotropic_gaussian_matches_exact_log_density(sde_name):
    # isotropic data: A is a multiple of I, so a Rademacher probe is exact (v^T A v = tr A) and only the solver errs
    gs = gaussian(sde_name, correlated=False)
    x, _ = gs.sample(4, torch.Generator().manual_seed(1))
    logp, info = log_likelihood(gs, gs.sde, x, rtol=TOL, atol=TOL, generator=torch.Generator().manual_seed(2))
    exact = gs.log_prob(x, gs.sde.sampling_eps)
    mismatch = prior_mismatch(gs, info)
    assert ((logp - mismatch - exact).abs() <= solver_tol(info)).all()
    # the prior mismatch at T is small (D = 64): p_T = N(alpha_T mu, alpha_T^2 Sigma + std_T^2 I) ~ the prior
    assert mismatch.abs().max() < 0.5
    assert ((logp - exact).abs() <= solver_tol(info) + mismatch.abs()).all()
    assert info["stderr"] is None and info["nats"] is logp and info["latent"].shape == x.shape


@pytest.mark.parametrize(("sde_name", "probe"), [(s, "rademacher") for s in SDE_NAMES] + [("vp", "gaussian")])
def test_correlated_gaussian_probe_error_is_exactly_accounted(sde_name, probe):
    # correlated data: each probe's estimate is log p_eps(x) + (v^T A v - tr A) + prior mismatch, up to the solver
    gs = gaussian(sde_name, correlated=True)
    x, _ = gs.sample(3, torch.Generator().manual_seed(1))
    k, seed = 3, 7
    logp, info = log_likelihood(gs, gs.sde, x, num_probes=k, probe=probe, rtol=TOL, atol=TOL,
                                generator=torch.Generator().manual_seed(seed))
    probes = draw_probes(k, x, probe, torch.Generator().manual_seed(seed)).reshape(k, 3, D)
    a = integrated_jacobian(gs, gs.sde.sampling_eps)
    probe_error = torch.einsum("kbi,ij,kbj->kb", probes, a, probes) - a.trace()
    expected = gs.log_prob(x, gs.sde.sampling_eps) + probe_error + prior_mismatch(gs, info)
    assert ((info["per_probe"] - expected).abs() <= solver_tol(info)).all()
    assert torch.allclose(logp, info["per_probe"].mean(0))
    assert info["nvjp"] == k * info["nfe"]


def test_stderr_is_an_honest_standard_error():
    gs = gaussian("vp", correlated=True, seed=3)
    b, k = 16, 8
    x, _ = gs.sample(b, torch.Generator().manual_seed(1))
    logp, info = log_likelihood(gs, gs.sde, x, num_probes=k, rtol=1e-5, atol=1e-5,
                                generator=torch.Generator().manual_seed(2))
    var = hutchinson_variance(integrated_jacobian(gs, gs.sde.sampling_eps), "rademacher")
    # stderr^2 * k is each sample's probe variance (k - 1 dof); their mean over b samples estimates var with a
    # standard error sd / sqrt(b) taken from the b values themselves; 5 standard errors
    s2 = info["stderr"] ** 2 * k
    assert (s2.mean() - var).abs() <= 5 * s2.std() / math.sqrt(b)
    # and the errors themselves, standardized by the exact sd sqrt(var / k), average to 0 within 5 / sqrt(b)
    z = (logp - prior_mismatch(gs, info) - gs.log_prob(x, gs.sde.sampling_eps)) / (var / k).sqrt()
    assert z.mean().abs() <= 5 / math.sqrt(b)


def test_scipy_rk45_path_matches_exact_and_dopri5():
    gs = gaussian("vp", correlated=False)
    x, _ = gs.sample(3, torch.Generator().manual_seed(1))
    logp, info = log_likelihood(gs, gs.sde, x, method="scipy_RK45", rtol=TOL, atol=TOL)
    exact = gs.log_prob(x, gs.sde.sampling_eps) + prior_mismatch(gs, info)
    assert ((logp - exact).abs() <= solver_tol(info)).all()
    logp_torch, info_torch = log_likelihood(gs, gs.sde, x, rtol=TOL, atol=TOL)
    assert ((logp - logp_torch).abs() <= solver_tol(info) + solver_tol(info_torch)).all()


def test_any_tensor_shape_and_nfe_count():
    gs = gaussian("ve", correlated=True)
    gs_img = GaussianScore(gs.mean.reshape(1, 8, 8), gs.cov, gs.sde)
    x, _ = gs.sample(2, torch.Generator().manual_seed(1))
    calls = []

    def counted(x_, t_):
        calls.append(1)
        return gs_img(x_, t_)

    flat, _ = log_likelihood(gs, gs.sde, x, num_probes=2, generator=torch.Generator().manual_seed(0))
    img, info = log_likelihood(counted, gs.sde, x.reshape(2, 1, 8, 8), num_probes=2,
                               generator=torch.Generator().manual_seed(0))
    assert torch.allclose(flat, img, rtol=0, atol=1e-9)
    assert info["nfe"] == len(calls) and info["latent"].shape == (2, 1, 8, 8)


def test_float32_data_and_dtype_argument():
    gs = gaussian("vp", correlated=False)
    x, _ = gs.sample(2, torch.Generator().manual_seed(1))
    logp32, _ = log_likelihood(gs, gs.sde, x.float(), rtol=1e-4, atol=1e-4)
    logp64, _ = log_likelihood(gs, gs.sde, x.float(), rtol=1e-4, atol=1e-4, dtype=torch.float64)
    assert logp32.dtype == torch.float32 and logp64.dtype == torch.float64
    assert torch.allclose(logp32.double(), logp64, atol=1e-2)  # float32 rounding of ~100-nat sums


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_probes": 0}, "num_probes"), ({"num_probes": 1.5}, "num_probes"), ({"probe": "sphere"}, "probe"),
        ({"method": "rk4"}, "method"), ({"rtol": 0.0}, "rtol"), ({"atol": -1.0}, "atol"), ({"eps": 1.0}, "eps"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    gs = gaussian("vp", correlated=False)
    with pytest.raises(ValueError, match=match):
        log_likelihood(gs, gs.sde, torch.zeros(1, D, dtype=torch.float64), **kwargs)


def test_bad_data_and_score_raise():
    gs = gaussian("vp", correlated=False)
    with pytest.raises(TypeError, match="floating"):
        log_likelihood(gs, gs.sde, torch.zeros(1, D, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        log_likelihood(gs, gs.sde, torch.full((1, D), float("nan")))
    with pytest.raises(TypeError, match="sde"):
        log_likelihood(gs, "vp", torch.zeros(1, D))

    def no_grad_score(x, t):
        with torch.no_grad():
            return gs(x, t)

    with pytest.raises(ValueError, match="differentiable"):
        log_likelihood(no_grad_score, gs.sde, torch.zeros(1, D, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        log_likelihood(lambda x, t: x * float("nan"), gs.sde, torch.zeros(1, D, dtype=torch.float64))


# --- dequantization and bits/dim -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("levels", "data_range", "offset"),
                         [(256, (-1.0, 1.0), 7.0), (256, (0.0, 1.0), 8.0), (17, (0.0, 1.0), math.log2(17))])
def test_bpd_offset_constant(levels, data_range, offset):
    # a model-space density of 1 (log p = 0) is -log2(s) bits/dim, s = (hi - lo) / L the bin width
    _, log_scale = dequantize_levels(torch.zeros(1, 3, dtype=torch.long), levels, data_range)
    assert nats_to_bpd(torch.zeros(1, dtype=torch.float64), 3, log_scale).item() == pytest.approx(offset, abs=1e-12)


@pytest.mark.parametrize(("levels", "data_range"), [(256, (-1.0, 1.0)), (256, (0.0, 1.0)), (17, (0.0, 1.0))])
def test_bpd_equals_density_in_level_space(levels, data_range):
    # a Gaussian model N(m, sigma^2 I) in model space is N((m - lo) / s, (sigma / s)^2 I) in level space: the bpd
    # from model-space nats + offset must equal -log2 of the level-space density of x + u, divided by D
    lo, hi = data_range
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, levels, (5, D), generator=g)
    y, log_scale = dequantize_levels(x, levels, data_range, generator=g, dtype=torch.float64)
    s = (hi - lo) / levels
    u = (y - lo) / s - x
    assert ((u >= -1e-9) & (u < 1 + 1e-9)).all()  # level k owns the bin [lo + k s, lo + (k + 1) s)
    m, sigma = lo + 0.4 * (hi - lo), 0.3 * (hi - lo)
    model_nats = torch.distributions.Normal(m, sigma).log_prob(y).sum(-1)
    level_nats = torch.distributions.Normal((m - lo) / s, sigma / s).log_prob(x + u).sum(-1)
    assert torch.allclose(nats_to_bpd(model_nats, D, log_scale), -level_nats / (D * math.log(2)), atol=1e-10)


def test_dequantized_bpd_bounds_the_discrete_code_length():
    # E_u[bpd] >= -log2 P(x) / D (Jensen), P(x) the exact bin probabilities (Gaussian CDF, 17 levels on [0, 1]).
    # The gap per dim is log E_u[p] - E_u[log p] ~ a^2 / 24 nats, a = (c - m) w / sigma^2 (2nd order in the bin
    # width w, c the bin centre); we allow twice that for higher-order terms.
    levels, n = 17, 400
    w, m, sigma = 1 / levels, 0.5, 0.25
    x = torch.randint(0, levels, (1, D), generator=torch.Generator().manual_seed(0)).expand(n, D)
    y, log_scale = dequantize_levels(x, levels, (0.0, 1.0), generator=torch.Generator().manual_seed(1),
                                     dtype=torch.float64)
    normal = torch.distributions.Normal(m, sigma)
    bpd = nats_to_bpd(normal.log_prob(y).sum(-1), D, log_scale)
    edges = x[0].double() * w
    discrete = -torch.log(normal.cdf(edges + w) - normal.cdf(edges)).sum() / (D * math.log(2))
    gap = ((edges + w / 2 - m) * w / sigma**2).pow(2).sum() / 24 / (D * math.log(2))
    se = bpd.std() / math.sqrt(n)
    assert discrete - 5 * se <= bpd.mean() <= discrete + 2 * gap + 5 * se


def test_bits_per_dim_digits_end_to_end():
    # sklearn digits: 8x8, 17 levels 0..16 on [0, 1] (VE's range). Model: the Gaussian of the dequantized digits,
    # mean (E[x] + 1/2) / 17 and covariance Cov(x) / 17^2 + I / (12 * 17^2) (the uniform noise's variance).
    from sklearn.datasets import load_digits

    digits = torch.as_tensor(load_digits().data, dtype=torch.float64)
    mean, cov = (digits.mean(0) + 0.5) / 17, torch.cov(digits.T) / 17**2 + torch.eye(D, dtype=torch.float64) / 3468
    gs = GaussianScore(mean, cov, get_sde("ve"))
    x, k = digits[:3].reshape(3, 1, 8, 8).long(), 4
    bpd, info = bits_per_dim(GaussianScore(mean.reshape(1, 8, 8), cov, gs.sde), gs.sde, x, num_levels=17,
                             data_range=(0.0, 1.0), num_probes=k, rtol=TOL, atol=TOL, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(0))
    eps = gs.sde.sampling_eps
    y = info["dequantized"]
    exact = nats_to_bpd(gs.log_prob(y, eps) + prior_mismatch(gs, info), D, info["log_scale"])
    sd = (hutchinson_variance(integrated_jacobian(gs, eps), "rademacher") / k).sqrt()
    tol = (5 * sd + solver_tol(info)) / (D * math.log(2))  # nats -> bits/dim
    assert ((bpd - exact).abs() <= tol).all()
    assert torch.allclose(info["stderr"], info["stderr_nats"] / (D * math.log(2)))
    assert ((x / 17 <= y) & (y < (x + 1) / 17)).all()  # level k dequantizes into [k / 17, (k + 1) / 17)


def test_bits_per_dim_without_dequantization_uses_bin_centres():
    y, log_scale = dequantize_levels(torch.tensor([[0, 255, 128]], dtype=torch.uint8), 256, (-1.0, 1.0),
                                     uniform=False, dtype=torch.float64)
    assert torch.allclose(y, -1 + 2 / 256 * (torch.tensor([[0.0, 255.0, 128.0]], dtype=torch.float64) + 0.5))
    assert log_scale == pytest.approx(math.log(2 / 256))


@pytest.mark.parametrize(("levels", "data_range"), [(256, (-1.0, 1.0)), (17, (0.0, 1.0))])
def test_levels_from_data_inverts_the_training_scaling(levels, data_range):
    lo, hi = data_range
    k = torch.arange(levels).reshape(1, -1)
    x = (lo + (hi - lo) * k / (levels - 1)).float()  # how images are scaled for training
    assert torch.equal(levels_from_data(x, levels, data_range), k)
    with pytest.raises(ValueError, match="grid"):
        levels_from_data(x + 0.3 * (hi - lo) / (levels - 1), levels, data_range)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (torch.zeros(1, 2, dtype=torch.long), {"num_levels": 1}, "num_levels"),
        (torch.zeros(1, 2, dtype=torch.long), {"num_levels": 2.5}, "num_levels"),
        (torch.full((1, 2), 256), {"num_levels": 256}, r"\[0, 255\]"),
        (torch.full((1, 2), -1), {"num_levels": 17}, r"\[0, 16\]"),
        (torch.full((1, 2), 0.5), {}, "whole numbers"),
        (torch.zeros(1, 2, dtype=torch.long), {"data_range": (1.0, -1.0)}, "data_range"),
        (torch.zeros(1, 2, dtype=torch.long), {"data_range": 1.0}, "data_range"),
    ],
)
def test_bits_per_dim_bad_input_raises(x, kwargs, match):
    gs = GaussianScore(torch.zeros(2), torch.eye(2), get_sde("vp"))
    with pytest.raises(ValueError, match=match):
        bits_per_dim(gs, gs.sde, x, **kwargs)


# --- the CLI -------------------------------------------------------------------------------------------------------
def _write_pngs(tmp_path, n: int) -> list[str]:
    import numpy as np
    import PIL.Image

    rng, paths = np.random.default_rng(0), []
    for i in range(n):
        paths.append(str(tmp_path / f"img{i}.png"))
        PIL.Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("folder", ["ddpm", pytest.param("ncsnpp", marks=pytest.mark.slow)])
def test_cli_prints_bits_per_dim_of_a_saved_pipeline(tmp_path, folder, capsys):
    import numpy as np
    import PIL.Image
    from hub_layouts import make_ddpm_cifar10_folder, make_ncsnpp_celebahq_folder

    from scorekit import ScoreSDEPipeline
    from scorekit.cli import main

    make = {"ddpm": make_ddpm_cifar10_folder, "ncsnpp": make_ncsnpp_celebahq_folder}[folder]
    model, paths = make(str(tmp_path / "model")), _write_pngs(tmp_path, 2)
    flags = ["--num-probes", "2", "--rtol", "1e-2", "--atol", "1e-2", "--seed", "3"]
    assert main(["likelihood", "--model", model, "--images", *paths, *flags]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    printed = torch.tensor([float(line.split(": ")[1].split()[0]) for line in lines[:2]], dtype=torch.float64)
    # the same numbers from the library: levels straight from the PNGs, the scheduler's data range, the same seed
    pipe = ScoreSDEPipeline.from_pretrained(model)
    levels = torch.stack([torch.from_numpy(np.array(PIL.Image.open(p))).permute(2, 0, 1) for p in paths])
    bpd, _ = bits_per_dim(pipe.score_fn(), pipe.sde, levels, data_range=pipe.scheduler.data_range, num_probes=2,
                          rtol=1e-2, atol=1e-2, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(printed, bpd.double(), atol=6e-5)  # printed with 4 decimals
    mean, se = (float(v) for v in lines[2].split(": ")[1].split()[:3:2])
    assert mean == pytest.approx(printed.mean().item(), abs=1e-4)
    assert se == pytest.approx(printed.std().item() / math.sqrt(2), abs=1e-4)


def test_cli_reports_bad_images(tmp_path, capsys):
    import PIL.Image
    from hub_layouts import make_ddpm_cifar10_folder

    from scorekit.cli import main

    model = make_ddpm_cifar10_folder(str(tmp_path / "model"))
    big = str(tmp_path / "big.png")
    PIL.Image.new("RGB", (16, 16)).save(big)
    assert main(["likelihood", "--model", model, "--images", big]) == 2
    assert "16x16 but the model takes 8x8" in capsys.readouterr().err
    assert main(["likelihood", "--model", model, "--images", *_write_pngs(tmp_path, 1), "--num-probes", "0"]) == 2
    assert "--num-probes" in capsys.readouterr().err
