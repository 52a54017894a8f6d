"""Sequential Monte Carlo machinery shared by the particle samplers (``tds``, ``mcgdiff``).

Layout: ``scorekit.sample`` runs a particle sampler on ``B * K`` rows, ``B`` returned samples each with its own group
of ``K`` particles, sample-major (row ``b * K + j`` is particle ``j`` of sample ``b``; the registry's ``particles``
option holds ``K``); weights are log-weights ``(B, K)`` normalized with ``logsumexp``. After each reweighting the
effective sample size ``ESS = (sum_j w_j)^2 / sum_j w_j^2`` of every group is recorded, and a group whose ESS falls
below ``ess_threshold * K`` is resampled by systematic resampling (Douc, Cappé & Moulines 2005; one uniform per
group); its log-weights are then reset to uniform. Resampling is applied per group with ``torch.where``, without a
host synchronisation. At the end one particle per group is drawn by its final weight (or all weighted particles are
returned, ``(B, K, ...)``).

Randomness: every draw comes from the run's generator. ``sample()`` repeats a list of ``B`` generators per particle,
so group ``b`` draws only from generator ``b`` (its particles' noise row by row, its resampling and selection
uniforms from :func:`group_generators`) and a list run equals ``B`` single runs. With ``K = 1`` no resampling or
selection uniform is drawn: the run consumes exactly the draws of its proposal.

The base kernel of both samplers is the ancestral (DDPM posterior) step of the SDE's Gaussian kernel
``x_t = alpha(t) x_0 + std(t) z``: ``q(x_s | x_t, x_0) = N(a x_t + b x_0, var)`` for ``s < t``, evaluated at the
Tweedie estimate ``x_0 = (x_t + std_t^2 score) / alpha_t`` (Ho et al. 2020, eqs. 6-7; any VP, sub-VP or VE kernel).
"""

from __future__ import annotations

import math

import torch

from ..utils import rand

LOG_2PI = math.log(2 * math.pi)


# --- the base kernel -------------------------------------------------------------------------------------------------
def ancestral_coef(alpha_t, std_t, alpha_s, std_s):
    """``(a, b, var)`` of ``q(x_s | x_t, x_0) = N(a x_t + b x_0, var)``, ``s < t`` (floats or tensors).

    With ``r = alpha_t / alpha_s`` and the forward step variance ``v = std_t^2 - r^2 std_s^2``:
    ``a = r std_s^2 / std_t^2``, ``b = alpha_s v / std_t^2``, ``var = std_s^2 v / std_t^2`` (DDPM eq. 7, written for
    any ``(alpha, std)``; for VE ``alpha = 1`` it is SMLD's ancestral step).
    """
    r = alpha_t / alpha_s
    v = std_t**2 - (r * std_s) ** 2
    v = v.clamp_min(0) if isinstance(v, torch.Tensor) else max(v, 0.0)
    return r * std_s**2 / std_t**2, alpha_s * v / std_t**2, std_s**2 * v / std_t**2


def log_normal(x: torch.Tensor, mean, var) -> torch.Tensor:
    """Elementwise ``log N(x; mean, var)`` (``var > 0``, a float or a tensor broadcasting against ``x``)."""
    log_var = var.log() if isinstance(var, torch.Tensor) else math.log(var)
    return -0.5 * ((x - mean) ** 2 / var + log_var + LOG_2PI)


# --- particles -------------------------------------------------------------------------------------------------------
def group_generators(generator, particles: int):
    """The generator of each group: from ``sample()``'s list repeated per particle (``B * K`` entries), every
    ``K``-th; a single generator (or ``None``) as it is."""
    return generator[::particles] if isinstance(generator, (list, tuple)) else generator


def ess(log_w: torch.Tensor) -> torch.Tensor:
    """Effective sample size ``(sum w)^2 / sum w^2`` per group, ``(B,)``, from log-weights ``(B, K)``."""
    return torch.exp(2 * torch.logsumexp(log_w, -1) - torch.logsumexp(2 * log_w, -1))


def systematic_indices(log_w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Systematic resampling: ancestor indices ``(B, K)`` of positions ``(u_b + k) / K`` in each group's weight CDF."""
    k = log_w.shape[-1]
    cdf = torch.softmax(log_w, -1).cumsum(-1)
    positions = (u[:, None] + torch.arange(k, dtype=u.dtype, device=u.device)) / k
    return torch.searchsorted(cdf.contiguous(), positions.to(cdf.dtype).contiguous()).clamp_max(k - 1)


def gather_groups(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``t`` ``(B * K, ...)`` picked per group by ``index`` ``(B, K')``; returns ``(B * K', ...)``."""
    b, k = index.shape
    flat = (index + torch.arange(b, device=index.device)[:, None] * (t.shape[0] // b)).reshape(-1)
    return t.index_select(0, flat)


class ParticleSystem:
    """Log-weights, adaptive resampling and the ESS record of ``B`` groups of ``K`` particles.

    Args:
        groups: ``B``. particles: ``K``. ess_threshold: resample a group when ``ESS < ess_threshold * K``.
        generator: the run's generator(s) (``sample()``'s list of ``B * K``, or one). dtype, device: of the
            log-weights.
    """

    def __init__(self, groups: int, particles: int, ess_threshold: float, generator, dtype, device):
        self.b, self.k, self.threshold = groups, particles, ess_threshold
        self.generator = group_generators(generator, particles)
        self.log_w = torch.zeros(groups, particles, dtype=dtype, device=device)
        self.ess_trace: list[torch.Tensor] = []
        self.resampled: list[torch.Tensor] = []

    def reweight(self, log_increment: torch.Tensor, fold: bool = False) -> None:
        """Add incremental log-weights ``(B * K,)`` and normalize each group with ``logsumexp``; record the ESS
        (``fold``: a further factor of the same step, which replaces that step's ESS record)."""
        log_w = self.log_w + log_increment.reshape(self.b, self.k)
        self.log_w = log_w - torch.logsumexp(log_w, -1, keepdim=True)
        if fold:
            self.ess_trace.pop()
        self.ess_trace.append(ess(self.log_w))

    def _uniforms(self) -> torch.Tensor:
        return rand((self.b,), self.generator, dtype=self.log_w.dtype, device=self.log_w.device)

    def resample(self, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Systematically resample the groups whose ESS fell below the threshold (the others keep their particles
        and weights); returns the ``states`` ``(B * K, ...)`` with the chosen ancestors."""
        if self.k == 1:
            self.resampled.append(torch.zeros(self.b, dtype=torch.bool, device=self.log_w.device))
            return states
        low = self.ess_trace[-1] < self.threshold * self.k
        index = systematic_indices(self.log_w, self._uniforms())
        keep = torch.arange(self.k, device=index.device).expand(self.b, -1)
        index = torch.where(low[:, None], index, keep)
        self.log_w = torch.where(low[:, None], torch.full_like(self.log_w, -math.log(self.k)), self.log_w)
        self.resampled.append(low)
        return tuple(gather_groups(s, index) for s in states)

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """One particle per group drawn by its final weight (inverse CDF of one uniform): ``(B, ...)``."""
        if self.k == 1:
            return x
        cdf = torch.softmax(self.log_w, -1).cumsum(-1)
        index = torch.searchsorted(cdf, self._uniforms()[:, None].to(cdf.dtype)).clamp_max(self.k - 1)
        return gather_groups(x, index)

    def finish(self, x: torch.Tensor, return_particles: bool) -> tuple[torch.Tensor, dict]:
        """The returned tensor (``(B, ...)`` one particle per sample, or ``(B, K, ...)`` all of them) and the SMC
        facts for ``info["particles"]``: ``ess`` ``(n, B)``, the ESS after each reweighting (``n = steps + 1``, the
        initial weighting first); ``resampled`` ``(steps, B)`` bool, whether a group was resampled before step ``i``;
        ``num_resampling`` ``(B,)``; with ``return_particles``, ``log_weights`` ``(B, K)`` (normalized per sample)."""
        out = x.reshape(self.b, self.k, *x.shape[1:]) if return_particles else self.select(x)
        empty = torch.zeros(0, self.b, dtype=torch.bool, device=self.log_w.device)
        resampled = torch.stack(self.resampled) if self.resampled else empty
        facts = {"ess": torch.stack(self.ess_trace), "resampled": resampled, "num_resampling": resampled.sum(0)}
        if return_particles:
            facts["log_weights"] = self.log_w
        return out, facts
