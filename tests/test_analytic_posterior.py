"""The Gaussian-mixture posterior oracle (scorekit.analytic_posterior) against independent closed forms.

- A one-component prior observed through a mask, noiseless, is the Schur-complement conditional
  (``scorekit.analytic.gaussian_conditional``); noisy, it is the conditional of the joint Gaussian of ``(x, y)``.
- For a mixture, ``log p(x) + log N(y; A x, sigma_y^2 I) - log p(x | y)`` is the log-evidence at every ``x``: a
  constant, up to float error.
- Exact draws match the posterior's mean and covariance within tolerances from the sample size (conftest).
- ``IsotropicMixtureScore`` equals ``GaussianMixtureScore`` with covariances ``v_k I`` (float error).
"""

import math

import pytest
import torch
from conftest import assert_mean_cov

from scorekit import VESDE, VPSDE, SubVPSDE
from scorekit.analytic import GaussianMixtureScore, gaussian_conditional
from scorekit.analytic_posterior import (
    IsotropicMixtureScore,
    dense_matrix,
    gaussian_mixture_posterior,
    grid_mixture_problem,
)

F64 = torch.float64


def _mixture(d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(k, d, generator=g, dtype=F64)
    root = torch.randn(k, d, d, generator=g, dtype=F64) / math.sqrt(d)
    covs = root @ root.transpose(1, 2) + 0.2 * torch.eye(d, dtype=F64)
    weights = torch.rand(k, generator=g, dtype=F64) + 0.2
    return weights / weights.sum(), means, covs


def test_one_gaussian_under_a_noiseless_mask_is_the_schur_complement():
    weights, means, covs = _mixture(k=1)
    observed = torch.tensor([True, False, True, False, False])
    a = torch.eye(5, dtype=F64)[observed]
    y = torch.tensor([[0.3, -1.2]], dtype=F64)
    post = gaussian_mixture_posterior(weights, means, covs, a, y, 0.0)
    m, s = gaussian_conditional(means[0], covs[0], observed, y[0])
    torch.testing.assert_close(post.means[0][~observed], m, rtol=0, atol=1e-12)
    torch.testing.assert_close(post.means[0][observed], y[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(post.covs[0][~observed][:, ~observed], s, rtol=0, atol=1e-12)
    assert post.covs[0][observed].abs().max() < 1e-12  # observed coordinates are known exactly


def test_one_gaussian_with_noise_is_the_joint_gaussian_conditional():
    weights, means, covs = _mixture(k=1)
    a = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    sigma_y, y = 0.4, torch.tensor([1.0, -0.5], dtype=F64)
    # joint of (x, y): cov [[S, S A^T], [A S, A S A^T + s^2 I]]; condition on the last two coordinates
    joint = torch.cat([torch.cat([covs[0], covs[0] @ a.T], 1),
                       torch.cat([a @ covs[0], a @ covs[0] @ a.T + sigma_y**2 * torch.eye(2, dtype=F64)], 1)])
    mean = torch.cat([means[0], a @ means[0]])
    observed = torch.tensor([False] * 5 + [True] * 2)
    m, s = gaussian_conditional(mean, joint, observed, y)
    post = gaussian_mixture_posterior(weights, means, covs, a, y, sigma_y)
    torch.testing.assert_close(post.means[0], m, rtol=0, atol=1e-12)
    torch.testing.assert_close(post.covs[0], s, rtol=0, atol=1e-12)


def test_mixture_posterior_density_is_prior_times_likelihood_over_the_evidence():
    weights, means, covs = _mixture()
    a = torch.randn(1, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    sigma_y, y = 0.7, torch.tensor([[0.8]], dtype=F64)
    post = gaussian_mixture_posterior(weights, means, covs, a, y, sigma_y)
    x = 2 * torch.randn(50, 5, generator=torch.Generator().manual_seed(3), dtype=F64)

    def log_mix(w, mu, cov):
        return torch.logsumexp(torch.stack([w[k].log() + torch.distributions.MultivariateNormal(mu[k], cov[k])
                                            .log_prob(x) for k in range(len(w))]), 0)

    log_lik = torch.distributions.Normal(x @ a.T[:, 0], sigma_y).log_prob(y[0, 0])
    log_evidence = log_mix(weights, means, covs) + log_lik - log_mix(post.weights, post.means, post.covs)
    assert (log_evidence - log_evidence.mean()).abs().max() < 1e-10


def test_exact_draws_match_the_posterior_moments_and_mode_weights():
    weights, means, covs = _mixture()
    a = torch.randn(1, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    post = gaussian_mixture_posterior(weights, means, covs, a, torch.tensor([[0.8]], dtype=F64), 0.7)
    x, labels = post.sample(20000, torch.Generator().manual_seed(4))
    assert_mean_cov(x, post.mean(), post.cov(), what="exact posterior draws")
    shares = torch.bincount(labels, minlength=3).double() / len(labels)
    se = (post.weights * (1 - post.weights) / len(labels)).sqrt()
    assert ((shares - post.weights).abs() <= 4.5 * se).all()  # 3 z-tests at family-wise level ~2e-5


def test_noiseless_draws_satisfy_the_observation_exactly():
    weights, means, covs = _mixture()
    a = torch.randn(2, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    y = torch.tensor([0.5, -0.3], dtype=F64)
    post = gaussian_mixture_posterior(weights, means, covs, a, y, 0.0)
    x, _ = post.sample(100, torch.Generator().manual_seed(6))
    torch.testing.assert_close(x @ a.T, y.expand(100, 2), rtol=0, atol=1e-10)


def test_dense_matrix_of_an_operator_and_errors():
    class Op:
        in_shape, out_shape = (2, 3), (2,)

        def forward(self, x):
            return x.reshape(x.shape[0], 2, 3).sum(-1)

    a = dense_matrix(Op())
    torch.testing.assert_close(a, torch.tensor([[1.0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=F64))
    with pytest.raises(ValueError, match="sigma_y"):
        gaussian_mixture_posterior(*_mixture(), torch.ones(1, 5, dtype=F64), torch.zeros(1), -1.0)
    with pytest.raises(ValueError, match="y must hold"):
        gaussian_mixture_posterior(*_mixture(), torch.ones(1, 5, dtype=F64), torch.zeros(2), 1.0)
    with pytest.raises(TypeError, match="operator"):
        dense_matrix("A")


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_isotropic_mixture_score_equals_the_general_mixture_score(sde):
    g = torch.Generator().manual_seed(7)
    weights = torch.rand(4, generator=g, dtype=F64) + 0.1
    means = torch.randn(4, 2, 3, generator=g, dtype=F64)
    variances = torch.rand(4, generator=g, dtype=F64) + 0.2
    iso = IsotropicMixtureScore(weights, means, variances, sde)
    full = GaussianMixtureScore(weights, means, iso.covs, sde)
    x = torch.randn(30, 2, 3, generator=g, dtype=F64)
    t = torch.rand(30, generator=g, dtype=F64) * (1 - 1e-3) + 1e-3
    torch.testing.assert_close(iso(x, t), full(x, t), rtol=1e-9, atol=1e-9)


def test_grid_mixture_problem_observes_a_prior_draw():
    p = grid_mixture_problem(8, 2, seed=0)
    assert p.means.shape == (25, 8) and p.matrix.shape == (2, 8) and p.y.shape == (1, 2)
    s = torch.linalg.svdvals(p.matrix)
    assert (s > 0).all() and (s < 1).all() and 0 <= p.sigma_y <= s.max()
    torch.testing.assert_close(p.posterior.weights.sum(), torch.tensor(1.0, dtype=F64))
    with pytest.raises(ValueError, match="d_x"):
        grid_mixture_problem(7, 1)
