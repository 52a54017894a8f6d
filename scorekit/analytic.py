"""Closed-form scores: Gaussian data and Gaussian mixtures perturbed by any of the SDEs.

For data ``N(mu, Sigma)`` the perturbed marginal is ``p_t = N(alpha mu, alpha^2 Sigma + std^2 I)`` (DESIGN.md §6), so
its score, log-density and class posteriors are exact. These are ordinary ``score_fn(x, t)`` callables: they are
how samplers, likelihoods and conditioning are tested and benchmarked. Any event shape works (``(D,)`` or
``(C, H, W)``): the covariance is over the flattened event.
"""

from __future__ import annotations

import math

import torch

from .sde import SDE


class GaussianMixtureScore:
    """Score of a mixture ``sum_k w_k N(mu_k, Sigma_k)`` perturbed by ``sde``; a Gaussian is the ``K = 1`` case.

    Args:
        weights: ``(K,)`` mixture weights (normalized here).
        means: ``(K, *event_shape)`` component means.
        covs: ``(K, D, D)`` component covariances, ``D = prod(event_shape)``, symmetric positive semi-definite.
        sde: the forward SDE whose marginals ``p_t`` are scored.
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor, sde: SDE):
        self.weights = torch.as_tensor(weights, dtype=torch.float64) / torch.as_tensor(weights).sum()
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.event_shape = tuple(self.means.shape[1:])
        self.dim = math.prod(self.event_shape)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.shape != (len(self.weights), self.dim, self.dim):
            raise ValueError(f"covs must have shape (K, D, D) = {(len(self.weights), self.dim, self.dim)}, "
                             f"got {tuple(covs.shape)}")
        self.covs = covs
        self.evals, self.evecs = torch.linalg.eigh(covs)  # Sigma_k = U diag(lambda) U^T
        self.evals = self.evals.clamp_min(0)
        self.sde = sde

    @property
    def num_components(self) -> int:
        return len(self.weights)

    def _flat_means(self) -> torch.Tensor:
        return self.means.reshape(self.num_components, self.dim)

    def _component_terms(self, x: torch.Tensor, t: torch.Tensor):
        """Per-component log N(x; alpha mu_k, alpha^2 Sigma_k + std^2 I) and score, for flattened x (B, D)."""
        alpha, std = self.sde.marginal_coef(t.to(torch.float64))
        a, s2 = alpha[:, None, None], (std**2)[:, None, None]
        var = a**2 * self.evals[None] + s2  # (B, K, D) eigenvalues of the perturbed covariance
        diff = x[:, None, :] - a * self._flat_means()[None]  # (B, K, D)
        proj = torch.einsum("kde,bkd->bke", self.evecs, diff)  # U^T (x - alpha mu)
        logp = -0.5 * ((proj**2 / var).sum(-1) + var.log().sum(-1) + self.dim * math.log(2 * math.pi))
        score = -torch.einsum("kde,bke->bkd", self.evecs, proj / var)
        return logp, score

    def _flatten(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        return x.reshape(x.shape[0], -1).to(torch.float64), t

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Score ``grad_x log p_t(x)``, shaped like ``x``."""
        xf, t = self._flatten(x, t)
        logp, score = self._component_terms(xf, t)
        post = torch.softmax(logp + self.weights.log(), dim=-1)  # p_t(k | x)
        return (post[..., None] * score).sum(1).reshape(x.shape).to(x.dtype)

    def log_prob(self, x: torch.Tensor, t: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Exact ``log p_t(x)`` in nats, shape ``(B,)``."""
        xf, t = self._flatten(x, t)
        logp, _ = self._component_terms(xf, t)
        return torch.logsumexp(logp + self.weights.log(), dim=-1)

    def class_log_posterior(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Exact noise-conditional classifier ``log p_t(y = k | x)``, shape ``(B, K)``."""
        xf, t = self._flatten(x, t)
        logp, _ = self._component_terms(xf, t)
        return torch.log_softmax(logp + self.weights.log(), dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None):
        """Exact draws from the data distribution (t = 0); returns ``(x, labels)``, ``x`` of ``(n, *event_shape)``."""
        if labels is None:
            labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        root = self.evecs * self.evals.sqrt()[:, None, :]  # Sigma_k^{1/2} = U diag(sqrt(lambda))
        x = self._flat_means()[labels] + torch.einsum("nde,ne->nd", root[labels], z)
        return x.reshape(n, *self.event_shape), labels


class GaussianScore(GaussianMixtureScore):
    """Score of data ``N(mean, cov)`` perturbed by ``sde`` (mean of any event shape, cov over the flattened event)."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, sde: SDE):
        super().__init__(torch.ones(1), torch.as_tensor(mean)[None], torch.as_tensor(cov)[None], sde)

    @property
    def mean(self) -> torch.Tensor:
        return self.means[0]

    @property
    def cov(self) -> torch.Tensor:
        return self.covs[0]

    def marginal(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(D,)`` and covariance ``(D, D)`` of ``p_t``: ``alpha mu`` and ``alpha^2 Sigma + std^2 I``."""
        alpha, std = self.sde.marginal_coef(torch.tensor([float(t)], dtype=torch.float64))
        eye = torch.eye(self.dim, dtype=torch.float64)
        return alpha * self.mean.reshape(-1), alpha**2 * self.cov + std**2 * eye


def gaussian_conditional(
    mean: torch.Tensor, cov: torch.Tensor, observed: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``N(m, S)`` of the unobserved coordinates of ``N(mean, cov)`` given ``x[observed] = y``.

    Schur complement: ``m = mu_u + S_uo S_oo^{-1} (y - mu_o)``, ``S = S_uu - S_uo S_oo^{-1} S_ou``; ``mean`` ``(D,)``,
    ``cov`` ``(D, D)``, ``observed`` a bool ``(D,)``, ``y`` ``(n_observed,)``.
    """
    cross = cov[observed][:, ~observed]
    gain = torch.linalg.solve(cov[observed][:, observed], cross).T
    return mean[~observed] + gain @ (y - mean[observed]), cov[~observed][:, ~observed] - gain @ cross


def gaussian_posterior(
    mean: torch.Tensor, cov: torch.Tensor, operator, y: torch.Tensor, sigma_y: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior ``N(m, S)`` of ``x ~ N(mean, cov)`` given ``y = A x + sigma_y e``, ``e ~ N(0, I)`` (Kalman).

    ``K = Sigma A^T (A Sigma A^T + sigma_y^2 I)^+``, ``m = mu + K (y - A mu)``, ``S = Sigma - K A Sigma`` (the
    pseudo-inverse covers noiseless observations whose ``A Sigma A^T`` is singular, e.g. the zero rows of a mask;
    :func:`gaussian_conditional` is the case of a coordinate selection). ``S`` is singular along the observed
    directions when ``sigma_y = 0``.

    Args:
        mean: ``(*event_shape)`` or ``(D,)``.
        cov: ``(D, D)``.
        operator: a :class:`~scorekit.conditioning.linear.LinearOperator` (its dense matrix is formed: small ``D``
            only) or a ``(d_y, D)`` matrix.
        y: ``d_y`` values (any shape, flattened).
        sigma_y: observation noise std, ``>= 0``.

    Returns:
        ``(m, S)``: ``(D,)`` and ``(D, D)``, float64.
    """
    a = torch.as_tensor(operator.matrix() if hasattr(operator, "matrix") else operator, dtype=torch.float64)
    mean, cov = torch.as_tensor(mean, dtype=torch.float64).reshape(-1), torch.as_tensor(cov, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    innovation = a @ cov @ a.T + sigma_y**2 * torch.eye(a.shape[0], dtype=torch.float64)
    gain = cov @ a.T @ torch.linalg.pinv(innovation, hermitian=True)
    post = cov - gain @ a @ cov
    return mean + gain @ (y - a @ mean), 0.5 * (post + post.T)


def image_gaussian(
    h: int = 4,
    w: int = 4,
    channel_std: tuple[float, float, float] = (1.0, 0.7, 0.4),
    channel_corr: tuple[float, float, float] = (0.7, 0.4, 0.6),
    length: float = 1.5,
    nugget: float = 0.1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A Gaussian over RGB images ``(3, h, w)`` for conditioning tests: mean ``(3, h, w)`` (seeded, scale 0.5) and
    covariance ``(D, D)`` = ``(1 - nugget) * channel ⊗ spatial + nugget * I``.

    The spatial kernel is squared-exponential with ``length`` pixels; the channel covariance has standard deviations
    ``channel_std`` and correlations (RG, RB, GB) = ``channel_corr``. Unequal channel variances make the gray value
    informative about the chroma (R^2 = 0.56 per pixel with the defaults), so colorization is a real test.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1).to(torch.float64)
    spatial = torch.exp(-torch.cdist(pos, pos) ** 2 / (2 * length**2))
    rg, rb, gb = channel_corr
    corr = torch.tensor([[1.0, rg, rb], [rg, 1.0, gb], [rb, gb, 1.0]], dtype=torch.float64)
    std = torch.tensor(channel_std, dtype=torch.float64)
    cov = (1 - nugget) * torch.kron(std[:, None] * corr * std[None], spatial) + nugget * torch.eye(3 * h * w,
                                                                                                   dtype=torch.float64)
    return 0.5 * torch.randn(3, h, w, generator=g, dtype=torch.float64), cov
