"""Shared closed-form targets and statistical checks for the scorekit test suite.

Targets (DESIGN.md §6): a correlated Gaussian in D = 16 and a well-separated 2-D Gaussian mixture, both built from
fixed seeds, whose perturbed scores are exact (``scorekit.analytic``). Checks compare sample moments with the truth
using tolerances derived from the sample size:

- a sample mean of ``n`` i.i.d. draws has standard error ``sqrt(Sigma_ii / n)``;
- a sample covariance entry of Gaussian draws has standard error ``sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / n)``
  (Isserlis' theorem: ``Var[(x_i - mu_i)(x_j - mu_j)] = Sigma_ii Sigma_jj + Sigma_ij^2``);
- a component proportion has standard error ``sqrt(w (1 - w) / n)``.

All entries are checked at once with a Bonferroni ``k``: the family of ``m`` two-sided z-tests fails by chance with
probability at most ``alpha`` when each entry is allowed ``k = Phi^{-1}(1 - alpha / (2 m))`` standard errors. A
sampler's own discretization bias can be allowed for with ``allowance`` (in units of the per-sample standard deviation,
i.e. the same scale as ``1 / sqrt(n)``); every use must state where its value was measured.

The builders are plain functions so the benchmark (``benchmarks/samplers.py``) measures the very same targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import pytest
import torch

import scorekit
from scorekit.analytic import GaussianMixtureScore, GaussianScore, gaussian_conditional, image_gaussian
from scorekit.conditioning import rgb_to_gray_chroma
from scorekit.sde import SDE, VESDE, VPSDE, SubVPSDE

DEFAULT_ALPHA = 1e-4  # family-wise probability that one statistical assert fails by chance


# --- targets -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianTarget:
    """Data ``N(mean, cov)``; ``mean`` is ``(D,)``, ``cov`` is ``(D, D)``, float64."""

    mean: torch.Tensor
    cov: torch.Tensor

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def score(self, sde: SDE) -> GaussianScore:
        """The exact score of ``p_t`` under ``sde``."""
        return GaussianScore(self.mean, self.cov, sde)


@dataclass(frozen=True)
class MixtureTarget:
    """Data ``sum_k w_k N(mu_k, Sigma_k)``; ``weights`` ``(K,)``, ``means`` ``(K, D)``, ``covs`` ``(K, D, D)``."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def score(self, sde: SDE) -> GaussianMixtureScore:
        """The exact score of ``p_t`` under ``sde``."""
        return GaussianMixtureScore(self.weights, self.means, self.covs, sde)


def make_correlated_gaussian(dim: int = 16, seed: int = 0) -> GaussianTarget:
    """A Gaussian with a dense covariance ``A A^T / D + 0.1 I`` (eigenvalues ~0.1 to ~3 for D = 16), fixed seed."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    cov = a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)
    mean = torch.randn(dim, generator=g, dtype=torch.float64)
    return GaussianTarget(mean=mean, cov=cov)


def make_mixture_2d() -> MixtureTarget:
    """Two unequal, correlated 2-D components with Bayes misclassification rate ~5e-6 (see :func:`label`)."""
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    means = torch.tensor([[-2.0, -1.0], [1.5, 1.5]], dtype=torch.float64)
    covs = torch.tensor([[[0.25, 0.10], [0.10, 0.25]], [[0.16, -0.05], [-0.05, 0.36]]], dtype=torch.float64)
    return MixtureTarget(weights=weights, means=means, covs=covs)


def make_sdes() -> dict[str, SDE]:
    """The three SDEs with the paper's default hyper-parameters."""
    return {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}


# --- statistics ----------------------------------------------------------------------------------------------------
def bonferroni_k(m: int, alpha: float = DEFAULT_ALPHA) -> float:
    """Standard errors allowed per entry so that ``m`` two-sided z-tests fail jointly with probability <= alpha."""
    return NormalDist().inv_cdf(1 - alpha / (2 * m))


def mean_cov_zscores(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample-scaled errors of the sample mean ``(D,)`` and covariance ``(D, D)`` of ``x`` ``(n, ...)``.

    Returns ``|mean_hat - mean| / sqrt(Sigma_ii)`` and ``|cov_hat - cov| / sqrt(Sigma_ii Sigma_jj + Sigma_ij^2)``:
    each has standard deviation ``1 / sqrt(n)`` under exact sampling.
    """
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    var = cov.diagonal()
    z_mean = (x.mean(0) - mean.reshape(-1)).abs() / var.sqrt()
    z_cov = (torch.cov(x.T) - cov).abs() / (torch.outer(var, var) + cov**2).sqrt()
    return z_mean, z_cov


def assert_mean_cov(
    x: torch.Tensor,
    mean: torch.Tensor,
    cov: torch.Tensor,
    *,
    alpha: float = DEFAULT_ALPHA,
    allowance: float = 0.0,
    what: str = "samples",
) -> None:
    """Assert the sample mean and covariance of ``x`` ``(n, ...)`` match ``N(mean, cov)`` within k standard errors.

    Every mean entry and every covariance entry ``i <= j`` is one of ``m = D + D (D + 1) / 2`` tests; each may be off
    by ``k / sqrt(n) + allowance`` in the scaled units of :func:`mean_cov_zscores`.
    """
    assert torch.isfinite(x).all(), f"{what}: non-finite samples"
    n, dim = x.shape[0], mean.numel()
    k = bonferroni_k(dim + dim * (dim + 1) // 2, alpha)
    tol = k / math.sqrt(n) + allowance
    z_mean, z_cov = mean_cov_zscores(x, mean, cov)
    assert z_mean.max() <= tol, f"{what}: mean off by {z_mean.max():.4f} sd > tol {tol:.4f} (k={k:.2f}, n={n})"
    assert z_cov.max() <= tol, f"{what}: cov off by {z_cov.max():.4f} se-units > tol {tol:.4f} (k={k:.2f}, n={n})"


def label(x: torch.Tensor, target: MixtureTarget) -> torch.Tensor:
    """Bayes-classifier component labels ``(n,)`` at t = 0 (``argmax_k p(k | x)``).

    For :func:`make_mixture_2d` each mean lies >= 7.4 Mahalanobis units from the other component, and the Bayes
    error measured on 10^6 exact draws is 5e-6: the labelled groups equal the true components up to a truncation far
    below one standard error at the sample sizes used.
    """
    scorer = target.score(VPSDE())
    t0 = torch.zeros(x.shape[0], dtype=torch.float64)
    return scorer.class_log_posterior(x, t0).argmax(-1)


def assert_mixture(x: torch.Tensor, target: MixtureTarget, *, alpha: float = DEFAULT_ALPHA, what: str = "samples"):
    """Assert component proportions (se ``sqrt(w (1 - w) / n)``) and per-component means (se ``sqrt(S_ii / n_k)``)."""
    assert torch.isfinite(x).all(), f"{what}: non-finite samples"
    labels, n = label(x, target), x.shape[0]
    n_comp, dim = target.weights.numel(), target.dim
    k = bonferroni_k(n_comp * (1 + dim), alpha)
    for c in range(n_comp):
        w, share = float(target.weights[c]), float((labels == c).double().mean())
        se_w = math.sqrt(w * (1 - w) / n)
        assert abs(share - w) <= k * se_w, f"{what}: component {c} share {share:.4f} vs {w:.4f} (tol {k * se_w:.4f})"
        xc = x[labels == c].reshape(-1, dim).double()
        se_mu = (target.covs[c].diagonal() / xc.shape[0]).sqrt()
        err = (xc.mean(0) - target.means[c]).abs()
        assert (err <= k * se_mu).all(), f"{what}: component {c} mean {xc.mean(0).tolist()} err {err.tolist()}"


# --- fixtures ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def gaussian16() -> GaussianTarget:
    """The correlated Gaussian target in D = 16 (fixed seed)."""
    return make_correlated_gaussian(16, seed=0)


@pytest.fixture(scope="session")
def mixture2d() -> MixtureTarget:
    """The 2-D two-component mixture target."""
    return make_mixture_2d()


@pytest.fixture(params=["vp", "subvp", "ve"])
def sde(request) -> SDE:
    """Each of VP, sub-VP and VE with the paper's defaults."""
    return make_sdes()[request.param]


@pytest.fixture(scope="session", autouse=True)
def single_thread():
    """Run every test's torch ops on one intra-op thread, then restore the previous count.

    The tests work on tensors of ~10^5 elements or tiny UNets, where a second thread buys nothing; on the shared
    2-core machine, two threads per process oversubscribe the cores and were measured 5-30x slower than one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator seeded with 0."""
    return torch.Generator().manual_seed(0)


# --- conditioning problems (tests/test_conditioning.py and benchmarks/conditional.py) -------------------------------
def basis_matrix(kind: str, h: int = 4, w: int = 4) -> torch.Tensor:
    """``P`` with ``u = P x`` for flattened ``(3, h, w)`` images: identity (pixels) or gray/chroma per pixel."""
    eye = torch.eye(3 * h * w, dtype=torch.float64)
    return eye if kind == "inpaint" else rgb_to_gray_chroma(eye.reshape(-1, 3, h, w)).reshape(3 * h * w, -1).T


def image_problem(kind: str, seed: int = 1, cov=None):
    """Gaussian image data (``image_gaussian``), an observation of one exact draw, the condition and the exact
    conditional of the unobserved coordinates in the basis of ``kind`` (``"inpaint"`` or ``"colorize"``).

    Returns ``(gauss, condition, p, observed, y, m, s)``: ``u = p x``, ``u[observed] = y``, unobserved ``~ N(m, s)``.
    """
    mean, default_cov = image_gaussian()
    gauss = GaussianScore(mean, default_cov if cov is None else cov, VPSDE())
    x0, _ = gauss.sample(1, torch.Generator().manual_seed(seed))
    if kind == "inpaint":
        mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
        mask[..., :2] = True  # the left half is known, in all channels
        observed, condition = mask.expand(1, 3, 4, 4).reshape(-1), scorekit.Inpaint(x0, mask)
    else:
        observed = torch.zeros(3, 16, dtype=torch.bool)
        observed[0] = True  # the gray coordinate of every pixel
        observed, condition = observed.reshape(-1), scorekit.Colorize(x0.mean(1, keepdim=True))
    p = basis_matrix(kind)
    y = (p @ x0.reshape(-1))[observed]
    m, s = gaussian_conditional(p @ mean.reshape(-1), p @ gauss.cov @ p.T, observed, y)
    return gauss, condition, p, observed, y, m, s


def assert_gaussian(xs: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, what: str, alpha: float = 1e-3) -> None:
    """Mean and covariance tests of ``xs`` ``(n, d)`` against ``N(mean, cov)`` at level ``alpha`` each
    (:func:`gaussian_fit_statistics`: chi-square with ``d`` and ``d (d + 1) / 2`` degrees of freedom)."""
    from scipy.stats import chi2

    d = xs.shape[1]
    t_mean, t_cov = gaussian_fit_statistics(xs, mean, cov)
    q_mean, q_cov = chi2.ppf(1 - alpha, d), chi2.ppf(1 - alpha, d * (d + 1) // 2)
    assert t_mean < q_mean, f"{what}: mean statistic {t_mean:.1f} >= chi2_{d} quantile {q_mean:.1f}"
    assert t_cov < q_cov, f"{what}: covariance statistic {t_cov:.1f} >= chi2_{d * (d + 1) // 2} quantile {q_cov:.1f}"


def gaussian_fit_statistics(xs: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> tuple[float, float]:
    """Test statistics of samples ``xs`` ``(n, d)`` against ``N(mean, cov)``.

    Returns ``(t_mean, t_cov)``: ``t_mean = n |L^{-1}(mean_hat - mean)|^2 ~ chi2_d`` and the Bartlett-corrected
    likelihood-ratio statistic for ``Sigma = cov`` (Anderson 2003, §10.8), ``~ chi2_{d(d+1)/2}``.
    """
    n, d = xs.shape
    chol = torch.linalg.cholesky(cov)
    white = torch.linalg.solve_triangular(chol, (xs.mean(0) - mean)[:, None], upper=False)[:, 0]
    t_mean = n * white.square().sum().item()
    w = torch.linalg.solve_triangular(chol, torch.linalg.solve_triangular(chol, torch.cov(xs.T), upper=False).T,
                                      upper=False)
    rho = 1 - (2 * d * d + 3 * d - 1) / (6 * (n - 1) * (d + 1))
    return t_mean, rho * (n - 1) * (torch.trace(w) - torch.logdet(w) - d).item()


# --- inverse problems (tests/test_inverse_methods.py and benchmarks/conditional.py --section inverse) --------------
INVERSE_TASKS = ("inpaint", "colorize", "superres", "projection")


@dataclass(frozen=True)
class InverseProblem:
    """An observation of one draw of Gaussian image data, and the exact posterior in the operator's SVD coordinates.

    ``spectral(x)`` maps samples ``(n, 3, 4, 4)`` to their coordinates ``(V^T x)[keep]`` ``(n, d)``, whose exact
    posterior is ``N(mean, cov)``; ``keep`` is the null space for a noiseless observation (the observed coordinates
    are then fixed) and every coordinate for a noisy one.
    """

    gauss: GaussianScore
    observation: object
    vt: torch.Tensor
    keep: torch.Tensor
    mean: torch.Tensor
    cov: torch.Tensor

    def spectral(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1).to(torch.float64) @ self.vt.T)[:, self.keep]


def inverse_operator(task: str):
    """The operator of ``task`` on ``(3, 4, 4)`` images: the left half (inpaint), the channel mean (colorize), 2x
    average pooling (superres) or a seeded Gaussian ``(12, 48)`` matrix scaled by ``1 / sqrt(48)`` (projection)."""
    from scorekit.conditioning import Downsample, Gray, Mask, Matrix

    if task == "inpaint":
        mask = torch.zeros(3, 4, 4, dtype=torch.bool)
        mask[..., :2] = True
        return Mask(mask)
    if task == "colorize":
        return Gray((3, 4, 4))
    if task == "superres":
        return Downsample((3, 4, 4), 2)
    g = torch.Generator().manual_seed(7)
    return Matrix(torch.randn(12, 48, generator=g, dtype=torch.float64) / math.sqrt(48), (3, 4, 4))


def independent_blocks(cov: torch.Tensor, operator) -> torch.Tensor:
    """``cov`` with the correlations between observed (``s > 0``) and unobserved SVD coordinates removed."""
    vt = operator.svd.V_adjoint(torch.eye(operator.in_dim, dtype=torch.float64).reshape(-1, *operator.in_shape)).T
    obs = operator.svd.support
    cov_c = vt @ cov @ vt.T
    cov_c[obs[:, None] & ~obs[None]] = 0
    cov_c[~obs[:, None] & obs[None]] = 0
    return vt.T @ cov_c @ vt


def inverse_problem(task: str, sigma_y: float, cov=None, mean=None, seed: int = 1) -> InverseProblem:
    """``task`` (:data:`INVERSE_TASKS`) observed with noise ``sigma_y`` on one draw of ``image_gaussian()`` data (or of
    ``N(mean, cov)``), VP SDE; the exact posterior by :func:`scorekit.analytic.gaussian_posterior`."""
    from scorekit.analytic import gaussian_posterior
    from scorekit.conditioning import Observation

    default_mean, default_cov = image_gaussian()
    mean = default_mean if mean is None else mean
    gauss = GaussianScore(mean, default_cov if cov is None else cov, VPSDE())
    operator = inverse_operator(task)
    g = torch.Generator().manual_seed(seed)
    x0, _ = gauss.sample(1, g)
    y = operator.forward(x0) + sigma_y * torch.randn(1, *operator.out_shape, generator=g, dtype=torch.float64)
    m, s = gaussian_posterior(gauss.mean, gauss.cov, operator, y, sigma_y)
    vt = operator.svd.V_adjoint(torch.eye(operator.in_dim, dtype=torch.float64).reshape(-1, *operator.in_shape)).T
    keep = ~operator.svd.support if sigma_y == 0 else torch.ones(operator.in_dim, dtype=torch.bool)
    return InverseProblem(gauss, Observation(operator, y, sigma_y), vt, keep, (vt @ m)[keep],
                          (vt @ s @ vt.T)[keep][:, keep])


def run_ddrm(score_fn, sde, shape, condition, steps: int = 20, seed: int = 0, dtype=torch.float64):
    """``scorekit.sample``'s front door for the DDRM loop until it is registered there: prior draw, ``bind``, counted
    score, the loop, ``finalize``; returns ``(x, nfe)``."""
    from scorekit.numerics import CountedScore
    from scorekit.samplers.ddrm import ddrm

    generator = torch.Generator().manual_seed(seed)
    x = sde.prior_sampling(shape, generator=generator, dtype=dtype)
    condition.bind(sde, x, generator)
    counted = CountedScore(score_fn, model_dtype=dtype)
    with torch.no_grad():
        x = ddrm(x, score_fn=condition.wrap_score(counted), sde=sde, eps=sde.sampling_eps, generator=generator,
                 condition=condition, progress=False, callback=None, steps=steps, denoise=True)
    return condition.finalize(x), counted.nfe
