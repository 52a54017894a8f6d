"""Every training loss against a closed form on Gaussian data (closed-form oracles).

For data ``N(mu, Sigma)`` in D dimensions the perturbed marginal is ``N(alpha mu, Sigma_t)``, ``Sigma_t = alpha^2
Sigma + std^2 I``, with score ``s_t``. With the true score plugged in:

- DSM: ``E || std s_t(x_t) + z ||^2 = D - std^2 tr(Sigma_t^{-1})`` (the irreducible constant, since
  ``E[z^T std s_t] = -std^2 E||s_t||^2 = -std^2 tr Sigma_t^{-1}``); a weighting multiplies it by ``lambda / std^2``;
- Hyvärinen / sliced SM: ``E[tr ds/dx + ||s||^2 / 2] = -tr(Sigma^{-1}) / 2`` (its minimum);
- classifier cross-entropy: the exact posterior has zero expected gradient w.r.t. a logit temperature.

Monte Carlo means are compared with ``k`` standard errors estimated from the same per-sample losses.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import bonferroni_k, make_mixture_2d

from scorekit.analytic import GaussianScore
from scorekit.sde import VESDE, VPSDE, SubVPSDE
from scorekit.training import losses

K = bonferroni_k(40)  # about 40 mean checks in this file
SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE(sigma_max=5.0)}
MEAN = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64)
COV = torch.tensor([[0.5, 0.1, 0.0], [0.1, 0.3, 0.05], [0.0, 0.05, 0.2]], dtype=torch.float64)


def _data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (MEAN + torch.randn(n, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(COV).T).float()


def _true_model_fn(sde, parameterization):
    score = GaussianScore(MEAN, COV, sde)

    def model_fn(x, t):
        s = score(x.double(), t.double())
        if parameterization == "epsilon":
            return (-s * sde.marginal_coef(t.double())[1][:, None]).float()  # eps = -std * score
        return s.float()

    return model_fn


def _irreducible(sde, t: torch.Tensor) -> torch.Tensor:
    """``D - std^2 tr(Sigma_t^{-1})`` at each t (float64)."""
    alpha, std = sde.marginal_coef(t.double())
    evals = torch.linalg.eigvalsh(COV)
    return 3 - (std[:, None] ** 2 / (alpha[:, None] ** 2 * evals + std[:, None] ** 2)).sum(-1)


def _expected(sde, weighting: str, eps: float) -> float:
    """``E_{t ~ U(eps, T)} [lambda(t) / std^2 * irreducible(t)]`` by the trapezoid rule in log t (float64)."""
    log_t = torch.linspace(math.log(eps), math.log(sde.T), 200001, dtype=torch.float64)
    t = log_t.exp()
    std2 = sde.marginal_coef(t)[1] ** 2
    w = {"std2": torch.ones_like(t), "g2": sde.sde(t, t)[1] ** 2 / std2, "none": 1 / std2}[weighting]
    f = w * _irreducible(sde, t) * t
    return float(torch.trapezoid(f, log_t) / (sde.T - eps))


def _assert_mc(per_sample: torch.Tensor, expected: float, what: str) -> None:
    per_sample = per_sample.double()
    se = float(per_sample.std() / math.sqrt(len(per_sample)))
    got = float(per_sample.mean())
    assert abs(got - expected) <= K * se, f"{what}: {got:.4f} vs closed form {expected:.4f} (se {se:.4f})"


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("parameterization", ["epsilon", "score", "sigma"])
def test_dsm_true_score_reaches_irreducible_constant(sde_name, parameterization):
    sde = SDES[sde_name]
    g = torch.Generator().manual_seed(1)
    per = losses.dsm_loss(_true_model_fn(sde, parameterization), sde, _data(20000, 0), g, parameterization,
                          reduce="sum", return_per_sample=True)
    _assert_mc(per, _expected(sde, "std2", 1e-5), f"{sde_name}/{parameterization}")


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("weighting", ["g2", "none"])
def test_dsm_weightings(sde_name, weighting):
    sde, eps = SDES[sde_name], 1e-2  # 1/std^2 and g^2/std^2 grow like 1/t: a larger eps keeps the MC variance finite
    g = torch.Generator().manual_seed(2)
    per = losses.dsm_loss(_true_model_fn(sde, "score"), sde, _data(40000, 1), g, "score", weighting, eps=eps,
                          reduce="sum", return_per_sample=True)
    _assert_mc(per, _expected(sde, weighting, eps), f"{sde_name}/{weighting}")


@pytest.mark.parametrize("sde_name", list(SDES))
def test_importance_sampled_likelihood_weighting_has_same_expectation(sde_name):
    sde = SDES[sde_name]
    g = torch.Generator().manual_seed(3)
    per = losses.dsm_loss(_true_model_fn(sde, "epsilon"), sde, _data(20000, 2), g, "epsilon", "g2",
                          importance_sampling=True, reduce="sum", return_per_sample=True)
    _assert_mc(per, _expected(sde, "g2", 1e-5), f"{sde_name}/g2 importance-sampled")


def test_importance_sampler_matches_its_density():
    """Fraction of draws below t0 equals int_eps^t0 q(t) dt, within binomial standard errors."""
    sde, eps = VPSDE(), 1e-5
    sampler = losses.LikelihoodTimeSampler(sde, eps)
    t = sampler.sample(50000, torch.Generator().manual_seed(0), torch.zeros(1))
    for t0 in (1e-3, 0.1, 0.5):
        log_t = torch.linspace(math.log(eps), math.log(t0), 100001, dtype=torch.float64)
        tt = log_t.exp()
        mass = float(torch.trapezoid(sde.sde(tt, tt)[1] ** 2 / sde.marginal_coef(tt)[1] ** 2 * tt, log_t))
        p = mass / sampler.normalizer
        frac = float((t < t0).double().mean())
        assert abs(frac - p) <= K * math.sqrt(p * (1 - p) / len(t)), (t0, frac, p)


def test_dsm_wrong_score_costs_more():
    """A mis-scaled score (0.7 s) has a larger expected loss than the truth: the minimum is at the true score."""
    sde = VPSDE()
    x = _data(20000, 4)
    true_fn = _true_model_fn(sde, "score")
    good = losses.dsm_loss(true_fn, sde, x, torch.Generator().manual_seed(5), "score", return_per_sample=True)
    bad = losses.dsm_loss(lambda x, t: 0.7 * true_fn(x, t), sde, x, torch.Generator().manual_seed(5), "score",
                          return_per_sample=True)
    diff = (bad - good).double()  # same t and z: a paired comparison
    assert diff.mean() > K * diff.std() / math.sqrt(len(diff))


def test_ddpm_loss_irreducible_constant():
    sde = VPSDE(N=1000)
    betas = torch.linspace(sde.beta_min / sde.N, sde.beta_max / sde.N, sde.N, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    evals = torch.linalg.eigvalsh(COV)

    def eps_fn(x, t):  # exact epsilon model of the discrete marginals N(sqrt(abar) mu, abar Sigma + (1 - abar) I)
        i = torch.round(t.double() * (sde.N - 1)).long()
        a, v = abar[i].sqrt()[:, None], (1 - abar[i])[:, None]
        cov_i = a[:, :, None] ** 2 * COV + v[:, :, None] * torch.eye(3, dtype=torch.float64)
        s = -torch.linalg.solve(cov_i, (x.double() - a * MEAN)[..., None])[..., 0]
        return (-v.sqrt() * s).float()

    per = losses.ddpm_loss(eps_fn, sde, _data(20000, 6), torch.Generator().manual_seed(7), reduce="sum",
                           return_per_sample=True)
    expected = float((3 - ((1 - abar)[:, None] / (abar[:, None] * evals + (1 - abar)[:, None])).sum(-1)).mean())
    _assert_mc(per, expected, "ddpm")


def test_smld_loss_irreducible_constant():
    sde = VESDE(sigma_max=5.0, N=50)
    per = losses.smld_loss(_true_model_fn(sde, "sigma"), sde, _data(20000, 8), torch.Generator().manual_seed(9),
                           reduce="sum", return_per_sample=True)
    t = torch.arange(sde.N, dtype=torch.float64) / (sde.N - 1)
    _assert_mc(per, float(_irreducible(sde, t).mean()), "smld")


def test_ncsn_loss_irreducible_constant():
    sigmas = losses.geometric_sigmas(0.05, 3.0, 8)
    assert torch.allclose(sigmas[[0, -1]], torch.tensor([3.0, 0.05]))
    evals = torch.linalg.eigvalsh(COV)

    def score_fn(x, sigma):
        cov = COV + sigma.double()[:, None, None] ** 2 * torch.eye(3, dtype=torch.float64)
        return -torch.linalg.solve(cov, (x.double() - MEAN)[..., None])[..., 0].float()

    per = losses.ncsn_loss(score_fn, sigmas, _data(20000, 10), torch.Generator().manual_seed(11),
                           return_per_sample=True)
    s2 = sigmas.double()[:, None] ** 2
    _assert_mc(per, float(0.5 * (3 - (s2 / (evals + s2)).sum(-1)).mean()), "ncsn")


def _clean_score(x):
    return -torch.linalg.solve(COV.float(), (x - MEAN.float()).T).T  # linear: differentiable in x


@pytest.mark.parametrize("kind", ["hyvarinen", "gaussian", "rademacher", "gaussian-vr", "rademacher-vr"])
def test_score_matching_minimum(kind):
    x = _data(20000, 12)
    if kind == "hyvarinen":
        per = losses.hyvarinen_loss(_clean_score, x, return_per_sample=True)
    else:
        proj, _, vr = kind.partition("-")
        per = losses.sliced_score_matching_loss(_clean_score, x, torch.Generator().manual_seed(13), num_projections=2,
                                                projection=proj, variance_reduced=bool(vr), return_per_sample=True)
    _assert_mc(per.detach(), -0.5 * float(torch.linalg.inv(COV).trace()), kind)


def test_sliced_loss_trains():
    """The sliced loss keeps the graph: its gradient w.r.t. a score scale c at c = 1 is zero in expectation."""
    x = _data(20000, 14)

    def per_sample(c):
        return losses.sliced_score_matching_loss(lambda y: c * _clean_score(y), x, torch.Generator().manual_seed(15),
                                                 projection="rademacher", return_per_sample=True)

    c = torch.ones((), requires_grad=True)
    (grad,) = torch.autograd.grad(per_sample(c).mean(), c)
    # per sample L(c) = c A + c^2 B with A = v^T J v, B = (v^T s)^2 / 2: read A, B off c = 1 and c = 2
    l1, l2 = per_sample(torch.tensor(1.0)).detach().double(), per_sample(torch.tensor(2.0)).detach().double()
    b = (l2 - 2 * l1) / 2
    per_grad = l1 - b + 2 * b  # dL/dc at c = 1 = A + 2 B
    assert torch.allclose(grad.double(), per_grad.mean(), atol=1e-4)
    _assert_mc(per_grad, 0.0, "d sliced / d c")


def test_classifier_loss_exact_posterior_is_stationary():
    """With the exact posterior as logits, d CE / d tau at a logit temperature tau = 1 has zero mean."""
    sde = VPSDE()
    mixture = make_mixture_2d().score(sde)
    x0, y = mixture.sample(20000, torch.Generator().manual_seed(16))
    tau = torch.ones((), dtype=torch.float64, requires_grad=True)
    seen = {}

    def logits_fn(x, t):
        seen["logp"] = mixture.class_log_posterior(x.double(), t.double())
        return tau * seen["logp"]

    per = losses.classifier_loss(logits_fn, sde, x0.float(), y, torch.Generator().manual_seed(17), eps=1e-3,
                                 return_per_sample=True)
    (grad,) = torch.autograd.grad(per.mean(), tau)
    logp = seen["logp"]
    # per sample: d/dtau [-tau logp_y + logsumexp(tau logp)] = sum_k p_k logp_k - logp_y, mean zero when y ~ p(.|x_t)
    per_grad = (logp.exp() * logp).sum(-1) - logp.gather(1, y[:, None])[:, 0]
    assert torch.allclose(grad, per_grad.mean(), atol=1e-8)
    _assert_mc(per_grad, 0.0, "d CE / d tau")


@pytest.mark.parametrize("kwargs, match", [
    ({"weighting": "bad"}, "weighting"),
    ({"parameterization": "eps"}, "parameterization"),
    ({"reduce": "median"}, "reduce"),
    ({"importance_sampling": True}, "importance_sampling"),
    ({"eps": 0.0}, "eps"),
])
def test_dsm_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        losses.dsm_loss(_true_model_fn(VPSDE(), "score"), VPSDE(), _data(4, 0), None, **kwargs)
