"""Every sampler of ``scorekit.sample`` against closed-form targets (scorekit.analytic).

Distribution tests draw n = 4000 float64 samples from the exact-score sampler and compare moments with the truth
through ``conftest.assert_mean_cov``: each entry may be off by ``k / sqrt(n) = 0.079`` in units of its per-sample
standard deviation (k = 4.97, Bonferroni over the 152 mean and covariance entries at family-wise alpha = 1e-4).
Step counts are chosen so the sampler's own discretization bias, measured on n = 20000 samples (where the noise
alone reaches ~0.02), is under a third of that tolerance; no discretization allowance is then needed. The
measured figures are quoted next to each choice. Deterministic solvers are also checked pathwise against a tight
adaptive solve of the same ODE from the same x_T, with their convergence order.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_mean_cov, assert_mixture, make_sdes

import scorekit
from scorekit.analytic import GaussianScore
from scorekit.samplers.grids import time_grid
from scorekit.sde import VPSDE

N_SAMPLES = 4000
PREDICTORS = ("euler_maruyama", "reverse_diffusion", "ancestral_sampling")
CORRECTORS = ("langevin", "ald", "none")


def draw(score, sde, shape, seed: int = 1, **kwargs) -> tuple[torch.Tensor, dict]:
    """``scorekit.sample`` in float64 with a fresh generator seeded ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return scorekit.sample(score, sde, shape, generator=gen, dtype=torch.float64, **kwargs)


def check_gaussian(target, sde, what: str, **kwargs) -> None:
    x, _ = draw(target.score(sde), sde, (N_SAMPLES, target.dim), **kwargs)
    assert_mean_cov(x, target.mean, target.cov, what=what)


# --- predictor-corrector -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("corrector", CORRECTORS)
@pytest.mark.parametrize("predictor", PREDICTORS)
def test_pc_reproduces_gaussian(sde, gaussian16, predictor, corrector):
    # 400 steps. At 200 steps (n = 20000) the worst entry was 0.047 (VE reverse_diffusion + none), 0.043 (VE
    # ancestral + none), <= 0.031 with a corrector, noise included; the schemes are first order, so <= ~0.025 here.
    check_gaussian(gaussian16, sde, f"{sde.name} pc {predictor}+{corrector}", sampler="pc", steps=400,
                   predictor=predictor, corrector=corrector)


@pytest.mark.parametrize("predictor", ["euler_maruyama", "reverse_diffusion"])
def test_probability_flow_pc_reproduces_gaussian(sde, gaussian16, predictor):
    # PF predictor + Langevin corrector, 400 steps: worst entry 0.023 at 400 steps (n = 20000, all three SDEs).
    # Predictor-only PF runs are deterministic ODE integrators: they are checked pathwise in test_converges_to_ode.
    check_gaussian(gaussian16, sde, f"{sde.name} pf-pc {predictor}", sampler="pc", steps=400, predictor=predictor,
                   corrector="langevin", probability_flow=True)


# Corrector-only sampling (predictor "none"): Langevin alone carries x from the prior to p_0. Its step is
# eps = 2 alpha (snr |z| / |score|)^2 ~ 2 snr^2 <lambda> (<lambda> the harmonic mean of the covariance eigenvalues,
# 0.36 for gaussian16), and the slowest direction (lambda_max = 3.05) contracts by 1 - eps / lambda_max per step, so
# it needs sum(eps) >> lambda_max. Measured: snr 0.16 with 100 levels x 5 steps leaves the gaussian16 mean 0.13-0.33
# sd off and the mixture's first component mean 0.1 off (VE: its share 0.41 instead of 0.30); snr 0.25 with
# 200 x 3 still biases the mixture share by +0.012 to +0.019 (n = 20000); 400 x 3 gets within 0.011 (share) and
# 0.025 (gaussian16 VP / sub-VP, n = 12000, noise included). Unadjusted Langevin also keeps an O(eps) variance
# excess, largest (eps / (2 lambda_min) ~ 20 %) in gaussian16's smallest eigen-direction: ~0.02 in the entry-wise
# units tested.
CORRECTOR_ONLY = dict(sampler="pc", predictor="none", corrector="langevin", steps=400, n_corrector_steps=3, snr=0.25)


def test_corrector_only_langevin_mixture(sde, mixture2d):
    x, _ = draw(mixture2d.score(sde), sde, (N_SAMPLES, 2), **CORRECTOR_ONLY)
    assert_mixture(x, mixture2d, what=f"{sde.name} corrector-only mixture")


@pytest.mark.slow
def test_corrector_only_langevin_gaussian(sde, gaussian16):
    check_gaussian(gaussian16, sde, f"{sde.name} corrector-only", **CORRECTOR_ONLY)


@pytest.mark.slow
def test_corrector_only_annealed_langevin_ve(gaussian16):
    # NCSN's step 2 (snr std)^2 suits VE, where std(t) spans the data scale. On VP / sub-VP std -> 0 near the data
    # while the data variance stays O(1), so the chain freezes before reaching p_0 (measured: mean 0.38 sd off with
    # 100 x 5 steps): not tested there. On VE with 100 levels the covariance excess was 0.072 (10 steps per level)
    # and 0.040 (20, n = 12000, noise ~0.025 included); 40 steps per level are used here.
    sde = make_sdes()["ve"]
    check_gaussian(gaussian16, sde, "ve corrector-only ald", sampler="pc", steps=100, predictor="none",
                   corrector="ald", snr=0.25, n_corrector_steps=40)


@pytest.mark.slow
def test_ald_sampler_ve(gaussian16):
    """NCSN annealed Langevin (``sampler="ald"``, 100 noise levels, NCSN's step_size 2e-5) on VE.

    Known bias: at the low levels the step ``step_size * std_i^2 / std_L^2`` is tiny against the data variance, so the
    chain stops mixing and keeps the excess variance of the level where it froze, an excess on the diagonal that
    shrinks with more steps per level. Measured (n = 12000): mean diagonal excess 0.24 with 5 steps per level, 0.046
    with 20 and 0.028 with 40, the mean unbiased throughout. So: 40 steps per level pass the standard tolerance,
    and the diagonal excess with 5 steps is significant (> 5 se) and at least 4x the one with 40.
    """
    sde, score = make_sdes()["ve"], gaussian16.score(make_sdes()["ve"])
    x40, _ = draw(score, sde, (N_SAMPLES, 16), sampler="ald", steps=100, n_corrector_steps=40)
    assert_mean_cov(x40, gaussian16.mean, gaussian16.cov, what="ve ald sampler, 40 steps per level")
    x5, _ = draw(score, sde, (N_SAMPLES, 16), sampler="ald", steps=100, n_corrector_steps=5)
    excess5, excess40 = ((torch.cov(x.T) - gaussian16.cov).diagonal().mean() for x in (x5, x40))
    se = math.sqrt(2 / N_SAMPLES) * gaussian16.cov.diagonal().pow(2).mean().sqrt() / 4  # se of a mean of 16 entries
    assert excess5 > 5 * se and excess5 > 4 * excess40, (excess5, excess40, se)


# --- probability-flow ODE and DDIM ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method,steps", [("euler", 1000), ("heun", 100), ("dopri5", None), ("scipy_RK45", None)])
def test_ode_reproduces_gaussian(sde, gaussian16, method, steps):
    # Euler needs 1000 steps on VE (uniform t, geometric sigma); Heun at 100 and the adaptive solvers at their
    # default tolerances (1e-5) sit on the noise floor of the shared prior draw (0.019 at n = 20000).
    check_gaussian(gaussian16, sde, f"{sde.name} ode {method}", sampler="ode", method=method, steps=steps)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_reproduces_gaussian(sde, gaussian16, eta):
    # 400 steps: worst entry 0.023 (eta 0) and 0.029 (eta 1) at n = 20000, first order in the step.
    check_gaussian(gaussian16, sde, f"{sde.name} ddim eta={eta}", sampler="ddim", steps=400, eta=eta)


@pytest.mark.parametrize(
    "kwargs",
    [dict(sampler="pc", steps=400), dict(sampler="ode", method="dopri5"), dict(sampler="ddim", steps=400)],
    ids=["pc", "ode", "ddim"],
)
def test_mixture_proportions_and_means(sde, mixture2d, kwargs):
    x, _ = draw(mixture2d.score(sde), sde, (N_SAMPLES, 2), **kwargs)
    assert_mixture(x, mixture2d, what=f"{sde.name} {kwargs['sampler']} mixture")


# --- deterministic solvers converge to the adaptive ODE solution ---------------------------------------------------
# label: (sample kwargs, expected order, bound on the relative RMS error at 320 steps). The bounds sit ~1.2-2x
# above the measured worst case over VP / sub-VP / VE (in brackets): they guard the error constant, the order
# test guards the convergence.
CONVERGENCE = {
    "ddim_eta0": (dict(sampler="ddim", eta=0.0), 1, 0.01),  # [0.0052, VE]
    "ode_euler": (dict(sampler="ode", method="euler"), 1, 0.05),  # [0.043, VE: uniform t, geometric sigma]
    "ode_heun": (dict(sampler="ode", method="heun"), 2, 1e-3),  # [2.8e-4, VE]
    "pf_euler_maruyama": (dict(sampler="pc", predictor="euler_maruyama", corrector="none", probability_flow=True),
                          1, 0.05),  # [0.043, VE; the same Euler step as "ode_euler"]
    "pf_reverse_diffusion": (dict(sampler="pc", predictor="reverse_diffusion", corrector="none",
                                  probability_flow=True), 1, 0.05),  # [0.040, sub-VP]
}


@pytest.fixture(scope="module")
def ode_reference(gaussian16):
    """Per SDE: ``(x_T, x_eps)`` for 64 prior draws, solved by dopri5 at rtol = atol = 1e-10 (no denoising)."""
    refs = {}
    for name, sde in make_sdes().items():
        x_t = sde.prior_sampling((64, 16), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        x_eps, _ = draw(gaussian16.score(sde), sde, (64, 16), sampler="ode", method="dopri5", rtol=1e-10,
                        atol=1e-10, x_T=x_t, denoise=False)
        refs[name] = (x_t, x_eps)
    return refs


def test_scipy_rk45_matches_dopri5(gaussian16, ode_reference):
    sde = make_sdes()["vp"]
    x_t, ref = ode_reference["vp"]
    x, _ = draw(gaussian16.score(sde), sde, (64, 16), sampler="ode", method="scipy_RK45", rtol=1e-9, atol=1e-9,
                x_T=x_t, denoise=False)
    assert (x - ref).abs().max() < 1e-6


@pytest.mark.parametrize("label", list(CONVERGENCE))
@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_converges_to_ode(name, label, gaussian16, ode_reference):
    """From the same x_T, the error to the dopri5 solution falls at the scheme's order as steps double.

    Observed orders between 40 and 320 steps (log2 of successive error ratios) were 0.92-1.12 for the first-order
    schemes and 1.97-2.11 for Heun; each must be at least ``order - 0.2``. Probability-flow reverse diffusion has a
    first-order constant ~50x Euler's on VP: the VP PF-ODE drift vanishes when the data covariance is I, which
    Euler integrates exactly and reverse diffusion's ``(2 - r) x + (1 - r^2) / 2 score`` does not.
    """
    sde, (kwargs, order, bound) = make_sdes()[name], CONVERGENCE[label]
    x_t, ref = ode_reference[name]
    errors = []
    for steps in (40, 80, 160, 320):
        x, _ = draw(gaussian16.score(sde), sde, (64, 16), steps=steps, x_T=x_t, denoise=False, **kwargs)
        errors.append(((x - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item())
    observed = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(observed) >= order - 0.2, f"{name} {label}: errors {errors}, observed orders {observed}"
    assert errors[-1] < bound, f"{name} {label}: relative RMS error {errors[-1]:.4f} at 320 steps"


# --- reproducibility, NFE, low step counts, event shapes -----------------------------------------------------------
CONFIGS = {
    "pc_rd_langevin": dict(sampler="pc"),
    "pc_em_ald": dict(sampler="pc", predictor="euler_maruyama", corrector="ald"),
    "pc_ancestral_none": dict(sampler="pc", predictor="ancestral_sampling", corrector="none"),
    "pc_none_langevin": dict(sampler="pc", predictor="none", corrector="langevin", n_corrector_steps=3),
    "pc_pf_rd_langevin": dict(sampler="pc", probability_flow=True, n_corrector_steps=2),
    "ode_euler": dict(sampler="ode", method="euler"),
    "ode_heun": dict(sampler="ode", method="heun"),
    "ode_dopri5": dict(sampler="ode", method="dopri5"),
    "ode_scipy_RK45": dict(sampler="ode", method="scipy_RK45"),
    "ddim_eta0": dict(sampler="ddim", eta=0.0),
    "ddim_eta1": dict(sampler="ddim", eta=1.0),
    "ald": dict(sampler="ald", n_corrector_steps=2),
}


@pytest.mark.parametrize("label", list(CONFIGS))
def test_same_seed_same_tensor(label, gaussian16):
    sde = make_sdes()["ve"]
    run = [draw(gaussian16.score(sde), sde, (32, 16), seed=s, steps=10, **CONFIGS[label])[0] for s in (7, 7, 8)]
    assert torch.equal(run[0], run[1])
    assert not torch.equal(run[0], run[2])


def expected_nfe(kwargs: dict, steps: int, denoise: bool) -> int | None:
    """NFE each sampler must report; ``None`` for adaptive solvers (checked against the counted calls only)."""
    sampler, n_corr = kwargs["sampler"], kwargs.get("n_corrector_steps", 1)
    if sampler == "pc":
        per_step = (kwargs.get("predictor", "reverse_diffusion") != "none") + n_corr * (
            kwargs.get("corrector", "langevin") != "none")
        return steps * per_step
    if sampler == "ald":
        return steps * n_corr
    if sampler == "ode" and kwargs["method"] not in ("euler", "heun"):
        return None
    per_step = 2 if kwargs.get("method") == "heun" else 1
    return steps * per_step + int(denoise)  # + Tweedie's final denoising call


class CallCounter:
    """An independent count of score evaluations."""

    def __init__(self, score_fn):
        self.score_fn, self.calls = score_fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score_fn(x, t)


@pytest.mark.parametrize("denoise", [True, False])
@pytest.mark.parametrize("label", list(CONFIGS) + ["pc_rd_none", "pc_none_ald"])
def test_nfe_is_exact(label, denoise, gaussian16):
    extra = {"pc_rd_none": dict(sampler="pc", corrector="none"),
             "pc_none_ald": dict(sampler="pc", predictor="none", corrector="ald", n_corrector_steps=2)}
    kwargs = {**CONFIGS, **extra}[label]
    sde = make_sdes()["vp"]
    counter = CallCounter(gaussian16.score(sde))
    _, info = draw(counter, sde, (8, 16), steps=7, denoise=denoise, **kwargs)
    assert info["nfe"] == counter.calls
    want = expected_nfe(kwargs, 7, denoise)
    assert want is None or info["nfe"] == want, f"{label}: nfe {info['nfe']} != {want}"


LOW_STEP_CONFIGS = [dict(sampler="pc", predictor=p, corrector=c) for p in (*PREDICTORS, "none") for c in CORRECTORS
                    if not p == c == "none"]
LOW_STEP_CONFIGS += [dict(sampler="pc", predictor=p, probability_flow=True) for p in PREDICTORS[:2]]
LOW_STEP_CONFIGS += [CONFIGS[k] for k in ("ode_euler", "ode_heun", "ddim_eta0", "ddim_eta1", "ald")]


@pytest.mark.parametrize("n_train", [1000, 20])
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_low_step_counts_stay_finite(steps, n_train, gaussian16):
    sde = VPSDE(N=n_train)
    for kwargs in LOW_STEP_CONFIGS:
        x, _ = draw(gaussian16.score(sde), sde, (64, 16), steps=steps, **kwargs)
        assert torch.isfinite(x).all(), f"VPSDE(N={n_train}) steps={steps} {kwargs}"


def test_small_n_vp_discretization_stays_below_one(gaussian16):
    # The paper's discrete betas reach beta_max / N = 1 at N = 20 (sqrt(1 - beta) = 0): ours integrate beta over each
    # step, so 0 < beta_i < 1 on the N-step grid and the ancestral (DDPM) step samples finite values.
    sde = VPSDE(N=20)
    ts = time_grid(sde, 20, sde.sampling_eps, torch.float64)
    r, v = sde.transition_coef(ts[:-1], ts[1:])
    assert ((v > 0) & (v < 1)).all() and ((r > 0) & (r < 1)).all()
    for kwargs in LOW_STEP_CONFIGS:
        x, _ = draw(gaussian16.score(sde), sde, (64, 16), steps=20, **kwargs)
        assert torch.isfinite(x).all(), f"VPSDE(N=20) steps=20 {kwargs}"


@pytest.mark.parametrize("shape", [(1, 16), (5, 2), (3, 3, 4, 4)])
@pytest.mark.parametrize("label", list(CONFIGS))
def test_any_event_shape(label, shape):
    event = shape[1:]
    dim = math.prod(event)
    sde = make_sdes()["subvp"]
    score = GaussianScore(torch.zeros(event, dtype=torch.float64),
                                            0.5 * torch.eye(dim, dtype=torch.float64), sde)
    x, info = draw(score, sde, shape, steps=3, **CONFIGS[label])
    assert x.shape == shape and x.dtype == torch.float64 and torch.isfinite(x).all()
