"""Exact posteriors of Gaussian-mixture priors under a linear-Gaussian observation: the particle samplers' oracle.

Prior ``x ~ sum_k w_k N(mu_k, Sigma_k)`` over the flattened event (``D = prod(event_shape)``), observation
``y = A x + sigma_y e`` with ``A`` of shape ``(m, D)`` and ``e ~ N(0, I_m)``. Each component is conditioned by the
Kalman update and re-weighted by its evidence (Bishop 2006, eqs. 2.113-2.117):

- ``S_k = A Sigma_k A^T + sigma_y^2 I``, gain ``G_k = Sigma_k A^T S_k^{-1}``;
- ``mu_k' = mu_k + G_k (y - A mu_k)``, ``Sigma_k' = Sigma_k - G_k A Sigma_k``;
- ``w_k' ∝ w_k N(y; A mu_k, S_k)``.

``sigma_y = 0`` (noiseless) is allowed when every ``A Sigma_k A^T`` is invertible. Exact draws use Matheron's rule
(pathwise conditioning): ``x' = x + G_k (y - A x - sigma_y e)`` with ``x ~ N(mu_k, Sigma_k)``, which needs no square
root of the (possibly singular) posterior covariance.

:class:`IsotropicMixtureScore` is the exact perturbed score of a mixture with scalar covariances ``v_k I``, computed
with one matrix product per call (no ``(B, K, D, D)`` work), for the benchmark's ``D = 800`` mixtures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sde import SDE

F64 = torch.float64


def dense_matrix(operator, dtype: torch.dtype = F64) -> torch.Tensor:
    """``A`` as a dense ``(m, D)`` matrix: a tensor is returned as is (in ``dtype``); a linear operator with
    ``forward`` and ``in_shape`` is applied to the ``D`` basis vectors (``m = prod(out_shape)``)."""
    if isinstance(operator, torch.Tensor):
        if operator.ndim != 2:
            raise ValueError(f"operator must be a (d_y, d_x) matrix or a linear operator, got shape "
                             f"{tuple(operator.shape)}")
        return operator.to(dtype)
    if not hasattr(operator, "forward") or not hasattr(operator, "in_shape"):
        raise TypeError(f"operator must be a (d_y, d_x) tensor or a linear operator with forward and in_shape, got "
                        f"{type(operator).__name__}")
    d = math.prod(operator.in_shape)
    eye = torch.eye(d, dtype=dtype).reshape(d, *operator.in_shape)
    return operator.forward(eye).reshape(d, -1).T.to(dtype)


@dataclass
class GaussianMixturePosterior:
    """A Gaussian mixture over the flattened event: ``weights`` ``(K,)``, ``means`` ``(K, D)``, ``covs``
    ``(K, D, D)``, float64, with what exact draws need (the prior components and the gains of Matheron's rule)."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor
    event_shape: tuple[int, ...]
    _prior: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # prior means, prior roots Sigma_k^{1/2}, gains G_k
    _obs: tuple[torch.Tensor, torch.Tensor, float]  # A, y, sigma_y

    @property
    def log_weights(self) -> torch.Tensor:
        return self.weights.log()

    def mean(self) -> torch.Tensor:
        """Mixture mean ``sum_k w_k mu_k``, ``(D,)``."""
        return self.weights @ self.means

    def cov(self) -> torch.Tensor:
        """Mixture covariance ``sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T``, ``(D, D)``."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs)
        second = second + torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        return second - torch.outer(m, m)

    def component_log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(k | x)`` under this mixture, ``(n, K)``, for samples ``x`` ``(n, ...)``: labels the modes of
        draws (well-separated modes give near-one-hot rows)."""
        xf = x.reshape(x.shape[0], -1).to(F64)
        evals, evecs = torch.linalg.eigh(self.covs)
        evals = evals.clamp_min(1e-12 * evals.amax(-1, keepdim=True).clamp_min(1e-300))
        proj = torch.einsum("kde,nkd->nke", evecs, xf[:, None, :] - self.means[None])
        logp = -0.5 * ((proj**2 / evals).sum(-1) + evals.log().sum(-1))
        return torch.log_softmax(logp + self.log_weights, dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` exact draws ``(n, *event_shape)`` and their component labels ``(n,)`` (Matheron's rule)."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        prior_means, roots, gains = self._prior
        a, y, sigma_y = self._obs
        z = torch.randn(n, prior_means.shape[1], generator=generator, dtype=F64)
        e = torch.randn(n, a.shape[0], generator=generator, dtype=F64)
        x = prior_means[labels] + torch.einsum("nde,ne->nd", roots[labels], z)  # x ~ N(mu_k, Sigma_k)
        residual = y - x @ a.T - sigma_y * e  # y - A x - sigma_y e
        x = x + torch.einsum("ndm,nm->nd", gains[labels], residual)
        return x.reshape(n, *self.event_shape), labels


def gaussian_mixture_posterior(weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor, operator,
                               y: torch.Tensor, sigma_y: float) -> GaussianMixturePosterior:
    """Exact posterior of ``sum_k w_k N(mu_k, Sigma_k)`` given ``y = A x + sigma_y e`` (module docstring).

    Args:
        weights: ``(K,)`` prior weights (normalized here).
        means: ``(K, *event_shape)`` prior means.
        covs: ``(K, D, D)`` prior covariances.
        operator: ``A`` as a ``(m, D)`` tensor or a linear operator (see :func:`dense_matrix`).
        y: the observation, ``m`` values in any shape (e.g. ``(1, *out_shape)``).
        sigma_y: observation noise std, ``>= 0``.

    Returns:
        The posterior mixture (weights, means ``(K, D)``, covariances ``(K, D, D)``), with exact draws.
    """
    if not (isinstance(sigma_y, (int, float)) and math.isfinite(sigma_y) and sigma_y >= 0):
        raise ValueError(f"sigma_y must be a finite number >= 0, got {sigma_y!r}")
    weights = torch.as_tensor(weights, dtype=F64)
    weights = weights / weights.sum()
    means = torch.as_tensor(means, dtype=F64)
    event_shape = tuple(means.shape[1:])
    mu = means.reshape(len(weights), -1)
    covs = torch.as_tensor(covs, dtype=F64)
    a = dense_matrix(operator)
    if a.shape[1] != mu.shape[1] or covs.shape != (len(weights), mu.shape[1], mu.shape[1]):
        raise ValueError(f"operator must have {mu.shape[1]} columns and covs shape (K, D, D) = "
                         f"{(len(weights), mu.shape[1], mu.shape[1])}; got A {tuple(a.shape)}, covs "
                         f"{tuple(covs.shape)}")
    y = torch.as_tensor(y, dtype=F64).reshape(-1)
    if y.numel() != a.shape[0]:
        raise ValueError(f"y must hold d_y = {a.shape[0]} values, got {y.numel()}")
    s = a @ covs @ a.T + sigma_y**2 * torch.eye(a.shape[0], dtype=F64)  # S_k, (K, m, m)
    chol = torch.linalg.cholesky(s)
    cross = covs @ a.T  # Sigma_k A^T, (K, D, m)
    gains = torch.cholesky_solve(cross.transpose(1, 2), chol).transpose(1, 2)  # G_k = Sigma_k A^T S_k^{-1}
    residual = y - mu @ a.T  # (K, m)
    white = torch.linalg.solve_triangular(chol, residual[..., None], upper=False)[..., 0]
    log_evidence = -0.5 * (white.square().sum(-1) + 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
                           + a.shape[0] * math.log(2 * math.pi))  # log N(y; A mu_k, S_k)
    post_w = torch.softmax(weights.log() + log_evidence, dim=0)
    post_mu = mu + torch.einsum("kdm,km->kd", gains, residual)
    post_cov = covs - gains @ cross.transpose(1, 2)
    post_cov = 0.5 * (post_cov + post_cov.transpose(1, 2))
    evals, evecs = torch.linalg.eigh(covs)
    roots = evecs * evals.clamp_min(0).sqrt()[:, None, :]
    return GaussianMixturePosterior(post_w, post_mu, post_cov, event_shape, (mu, roots, gains),
                                    (a, y, float(sigma_y)))


class IsotropicMixtureScore:
    """Exact score of ``sum_k w_k N(mu_k, v_k I)`` perturbed by ``sde``: ``p_t = sum_k w_k N(alpha mu_k, V_k I)``
    with ``V_k = alpha^2 v_k + std^2``, so ``score = sum_k p_t(k | x) (alpha mu_k - x) / V_k``.

    One ``(B, D) x (D, K)`` product per call; any event shape. Differentiable in ``x`` (TDS takes its gradient).

    Args:
        weights: ``(K,)`` mixture weights (normalized here).
        means: ``(K, *event_shape)`` component means.
        variances: ``(K,)`` component variances ``v_k > 0`` (covariance ``v_k I``).
        sde: the forward SDE whose marginals are scored.
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, sde: SDE):
        self.weights = torch.as_tensor(weights, dtype=F64) / torch.as_tensor(weights, dtype=F64).sum()
        self.means = torch.as_tensor(means, dtype=F64)
        self.event_shape = tuple(self.means.shape[1:])
        self.variances = torch.as_tensor(variances, dtype=F64).reshape(-1)
        self.sde = sde
        self._mu = self.means.reshape(len(self.weights), -1)
        self._mu_sq = self._mu.square().sum(-1)

    @property
    def covs(self) -> torch.Tensor:
        """``(K, D, D)`` covariances ``v_k I`` (dense; for the posterior oracle)."""
        eye = torch.eye(self._mu.shape[1], dtype=F64)
        return self.variances[:, None, None] * eye

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xf = x.reshape(x.shape[0], -1).to(F64)
        t = torch.as_tensor(t, dtype=F64).expand(x.shape[0])
        alpha, std = self.sde.marginal_coef(t)
        var = alpha[:, None] ** 2 * self.variances + std[:, None] ** 2  # V_k, (B, K)
        dot = xf @ self._mu.T  # x . mu_k
        sq = xf.square().sum(-1, keepdim=True) - 2 * alpha[:, None] * dot + alpha[:, None] ** 2 * self._mu_sq
        logp = -0.5 * (sq / var + xf.shape[1] * var.log()) + self.weights.log()
        post = torch.softmax(logp, dim=-1) / var  # p_t(k | x) / V_k
        score = alpha[:, None] * (post @ self._mu) - post.sum(-1, keepdim=True) * xf
        return score.reshape(x.shape).to(x.dtype)


@dataclass
class MixtureInverseProblem:
    """A Gaussian-mixture prior with isotropic components, an observation ``y = A x* + sigma_y e`` of one prior draw
    ``x*``, and its exact posterior."""

    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, D)
    variances: torch.Tensor  # (K,)
    matrix: torch.Tensor  # A, (d_y, D)
    y: torch.Tensor  # (1, d_y)
    sigma_y: float
    posterior: GaussianMixturePosterior

    def score(self, sde: SDE) -> IsotropicMixtureScore:
        return IsotropicMixtureScore(self.weights, self.means, self.variances, sde)

    def marginal_sample(self, n: int, sde: SDE, t: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact draws ``(n, D)`` of the prior perturbed to time ``t``: ``alpha x_0 + std z`` (e.g. ``p_T``)."""
        alpha, std = (float(v) for v in sde.marginal_coef(torch.tensor([float(t)], dtype=F64)))
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=F64)
        return alpha * self.means[labels] + (alpha**2 * self.variances[labels, None] + std**2).sqrt() * z


def grid_mixture_problem(d_x: int, d_y: int, seed: int = 0, spacing: float = 8.0) -> MixtureInverseProblem:
    """The Gaussian-mixture inverse problem of Cardoso et al. (2024, MCGdiff, Sec. 4.1), built here from ``seed``.

    25 unit-variance components with means ``spacing * (i, j, i, j, ...)`` for ``i, j in {-2, ..., 2}`` (``d_x``
    even) and weights ``∝ z_k^2`` (``z ~ N(0, 1)``); ``A = U diag(s) V^T`` with ``U``, ``V`` from the SVD of a
    Gaussian ``(d_y, d_x)`` matrix and singular values ``s`` uniform on (0, 1), sorted; noise
    ``sigma_y = u * max(s)``, ``u ~ U(0, 1)``; ``y = A x* + sigma_y e`` for one prior draw ``x*``.
    """
    if d_x % 2 or d_x < 2 or d_y < 1 or d_y > d_x:
        raise ValueError(f"need an even d_x >= 2 and 1 <= d_y <= d_x, got d_x={d_x}, d_y={d_y}")
    g = torch.Generator().manual_seed(seed)
    grid = torch.arange(-2, 3, dtype=F64)
    ij = torch.cartesian_prod(grid, grid)  # (25, 2)
    means = spacing * ij.repeat(1, d_x // 2)
    weights = torch.randn(25, generator=g, dtype=F64) ** 2
    weights = weights / weights.sum()
    variances = torch.ones(25, dtype=F64)
    u, _, vh = torch.linalg.svd(torch.randn(d_y, d_x, generator=g, dtype=F64), full_matrices=False)
    s = torch.rand(d_y, generator=g, dtype=F64).sort(descending=True).values
    a = u @ torch.diag(s) @ vh
    sigma_y = float(torch.rand((), generator=g, dtype=F64)) * float(s.max())
    label = torch.multinomial(weights, 1, generator=g)
    x_star = means[label] + torch.randn(1, d_x, generator=g, dtype=F64)
    y = x_star @ a.T + sigma_y * torch.randn(1, d_y, generator=g, dtype=F64)
    covs = variances[:, None, None] * torch.eye(d_x, dtype=F64)
    post = gaussian_mixture_posterior(weights, means, covs, a, y, sigma_y)
    return MixtureInverseProblem(weights, means, variances, a, y, sigma_y, post)
