"""Score-matching losses as pure functions (layer 7 of docs/architecture.md).

Conventions shared by every loss here:

- ``x0`` is a data batch of any shape ``(B, ...)``; every random draw (times, noise, projections) takes ``generator``.
- Time-conditional losses call ``model_fn(x_t, t) -> raw network output`` with ``t`` the continuous SDE time ``(B,)``;
  :func:`unet_model_fn` builds one from a ``UNet2DModel`` (it feeds ``t * (N - 1)`` or ``sigma`` as
  :mod:`scorekit.score` does, so a model trained here loads in every scorekit pipeline). The raw output is read under
  ``parameterization`` (``"epsilon"``, ``"score"``, ``"sigma"``) exactly as the samplers read it.
- ``reduce`` sums (``"sum"``, the paper's default) or averages (``"mean"``) the squared error over the data
  dimensions; the batch is always averaged. Pass ``return_per_sample=True`` to get the ``(B,)`` losses instead.

Perturbation kernel: ``x_t = alpha(t) x0 + std(t) z`` with ``z ~ N(0, I)``, whose score is ``-z / std(t)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from scorekit.score import PARAMETERIZATIONS, model_time_input, output_to_score
from scorekit.sde import SDE, VESDE, VPSDE
from scorekit.utils import append_dims, check_choice, randn_like

WEIGHTINGS = ("std2", "g2", "none")
REDUCTIONS = ("mean", "sum")
PROJECTIONS = ("gaussian", "rademacher")

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def unet_model_fn(
    unet: Callable, sde: SDE, parameterization: str, class_labels: torch.Tensor | None = None
) -> ModelFn:
    """``model_fn(x, t)`` for a diffusers ``UNet2DModel``: feeds ``t * (N - 1)`` (or ``sigma``) as a float tensor.

    Args:
        unet: called as ``unet(x, timestep, class_labels=...)``; ``.sample`` is read when present.
        sde: the SDE whose time ``t`` the losses pass.
        parameterization: ``"epsilon"``, ``"score"`` or ``"sigma"`` (sets the time input, see scorekit.score).
        class_labels: ``(B,)`` integer labels for a class-conditional UNet, or None.
    """
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        timestep = model_time_input(sde, t, parameterization).to(x.dtype)  # float tensor (not a python float)
        kwargs = {} if class_labels is None else {"class_labels": class_labels}
        out = unet(x, timestep, **kwargs)
        return getattr(out, "sample", out)

    return model_fn


def _reduce(sq: torch.Tensor, reduce: str) -> torch.Tensor:
    sq = sq.reshape(sq.shape[0], -1)
    return sq.mean(-1) if reduce == "mean" else sq.sum(-1)


def _finish(per_sample: torch.Tensor, return_per_sample: bool) -> torch.Tensor:
    return per_sample if return_per_sample else per_sample.mean()


def uniform_time(batch_size: int, sde: SDE, eps: float, generator, like: torch.Tensor) -> torch.Tensor:
    """``t ~ U(eps, T)``, shape ``(B,)``, float32 (coefficients are never computed in a half dtype)."""
    u = torch.rand(batch_size, generator=generator, device=like.device, dtype=torch.float32)
    return eps + (sde.T - eps) * u


def _scaled_residual(out: torch.Tensor, z: torch.Tensor, t: torch.Tensor, sde: SDE, parameterization: str):
    """``std(t) * s(x_t, t) + z`` in float32 (``-eps_hat + z`` for epsilon models, without dividing by std)."""
    out = out.float()
    if parameterization == "epsilon":
        return z - out
    std = append_dims(sde.marginal_coef(t)[1], out.ndim)
    return std * output_to_score(out, t, sde, parameterization) + z


def dsm_loss(
    model_fn: ModelFn,
    sde: SDE,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    parameterization: str = "epsilon",
    weighting: str = "std2",
    importance_sampling: bool = False,
    eps: float = 1e-5,
    reduce: str = "mean",
    t: torch.Tensor | None = None,
    return_per_sample: bool = False,
) -> torch.Tensor:
    """Continuous denoising score matching (Song et al. 2021, eq. 7) with t ~ U(eps, T).

    ``L = E_t E_{x0, z} [ lambda(t) || s(x_t, t) + z / std(t) ||^2 ]`` with ``lambda(t)``:

    - ``"std2"``: ``std(t)^2`` (the paper's default; for epsilon models ``|| eps_hat - z ||^2``);
    - ``"g2"``: ``g(t)^2``, the likelihood weighting (Song et al. 2021b, "Maximum likelihood training"); with
      ``importance_sampling`` t is drawn from ``q(t) ∝ g(t)^2 / std(t)^2`` and the loss is reweighted by
      ``g^2 / ((T - eps) q(t)) = std(t)^2 Z / (T - eps)`` (same expectation, bounded weights);
    - ``"none"``: 1.

    Args:
        model_fn: ``model_fn(x_t, t) -> (B, ...)`` raw network output under ``parameterization``.
        sde: VP, sub-VP or VE SDE.
        x0: data ``(B, ...)`` in the model's data range.
        generator: draws t and z.
        parameterization: ``"epsilon"``, ``"score"`` or ``"sigma"``.
        weighting: ``"std2"``, ``"g2"`` or ``"none"``.
        importance_sampling: draw t from the likelihood weighting's density (only with ``weighting="g2"``).
        eps: smallest training time (paper: 1e-5).
        reduce: ``"mean"`` or ``"sum"`` over the data dimensions.
        t: fixed times ``(B,)`` instead of a draw (for tests and analysis).
        return_per_sample: return the ``(B,)`` losses instead of their mean.

    Returns:
        Scalar loss (or ``(B,)`` losses), float32.
    """
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    check_choice("weighting", weighting, WEIGHTINGS)
    check_choice("reduce", reduce, REDUCTIONS)
    if importance_sampling and weighting != "g2":
        raise ValueError(f"importance_sampling=True needs weighting='g2' (the likelihood weighting), "
                         f"got {weighting!r}")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must be in (0, T={sde.T}), got {eps!r}")
    sampler = LikelihoodTimeSampler(sde, eps) if importance_sampling else None
    if t is None:
        draw = sampler.sample if sampler else lambda n, g, like: uniform_time(n, sde, eps, g, like)
        t = draw(x0.shape[0], generator, x0)
    z = randn_like(x0.float(), generator)
    alpha, std = sde.marginal_coef(t)
    x_t = append_dims(alpha, x0.ndim) * x0.float() + append_dims(std, x0.ndim) * z  # perturbation kernel, eq. 29/31/33
    sq = _reduce(_scaled_residual(model_fn(x_t.to(x0.dtype), t), z, t, sde, parameterization) ** 2, reduce)
    return _finish(sq * _weight_over_std2(sde, t, weighting, sampler), return_per_sample)


def _weight_over_std2(sde: SDE, t: torch.Tensor, weighting: str, sampler) -> torch.Tensor:
    """``lambda(t) / std(t)^2``: the factor applied to ``|| std s + z ||^2``."""
    if sampler is not None:
        return torch.full_like(t, sampler.normalizer / (sde.T - sampler.eps))
    if weighting == "std2":
        return torch.ones_like(t)
    std2 = sde.marginal_coef(t)[1] ** 2
    return diffusion(sde, t) ** 2 / std2 if weighting == "g2" else 1 / std2


def diffusion(sde: SDE, t: torch.Tensor) -> torch.Tensor:
    """``g(t)`` ``(B,)`` of eq. 5 (the drift is evaluated on a dummy ``x = t`` and discarded)."""
    return sde.sde(t, t)[1]


class LikelihoodTimeSampler:
    """Draw t on ``[eps, T]`` with density ``q(t) = g(t)^2 / (std(t)^2 Z)`` by inverting its CDF on a grid.

    The density behaves like ``1 / t`` near 0 for VP / sub-VP, so the grid is uniform in ``log t`` (4096 points,
    trapezoid rule in float64); ``Z = int_eps^T g^2 / std^2 dt``.
    """

    def __init__(self, sde: SDE, eps: float, num_points: int = 4096):
        self.sde, self.eps = sde, float(eps)
        log_t = torch.linspace(torch.log(torch.tensor(eps, dtype=torch.float64)), torch.log(torch.tensor(sde.T,
                               dtype=torch.float64)), num_points, dtype=torch.float64)
        t = log_t.exp()
        density_dlogt = diffusion(sde, t) ** 2 / sde.marginal_coef(t)[1] ** 2 * t  # q(t) dt = q(t) t d(log t)
        steps = 0.5 * (density_dlogt[1:] + density_dlogt[:-1]) * (log_t[1:] - log_t[:-1])
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(steps, 0)])
        self.normalizer = float(cdf[-1])
        self._tables = {torch.device("cpu"): (cdf / cdf[-1], log_t)}  # per device: no host round trip per batch

    def sample(self, batch_size: int, generator, like: torch.Tensor) -> torch.Tensor:
        if like.device not in self._tables:
            self._tables[like.device] = tuple(v.to(like.device) for v in self._tables[torch.device("cpu")])
        cdf, log_t = self._tables[like.device]
        u = torch.rand(batch_size, generator=generator, device=like.device, dtype=torch.float64)
        i = torch.searchsorted(cdf, u).clamp(1, len(cdf) - 1)
        c0, c1 = cdf[i - 1], cdf[i]
        frac = (u - c0) / (c1 - c0).clamp_min(1e-300)
        log_t = log_t[i - 1] + frac * (log_t[i] - log_t[i - 1])  # inverse CDF, linear in log t
        return log_t.exp().clamp(self.eps, self.sde.T).to(dtype=torch.float32)


def _discrete_time(batch_size: int, n: int, generator, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Level index ``i ~ U{0, ..., N-1}`` and its time ``t_i = i / (N - 1)`` (the label the adapters feed)."""
    i = torch.randint(0, n, (batch_size,), generator=generator, device=like.device)
    return i, i.float() / max(n - 1, 1)


def ddpm_loss(
    model_fn: ModelFn, sde: VPSDE, x0: torch.Tensor, generator: torch.Generator | None = None,
    reduce: str = "mean", return_per_sample: bool = False,
) -> torch.Tensor:
    """Discrete DDPM loss (Ho et al. 2020, eq. 14): ``|| eps_hat(x_i, i) - z ||^2`` with ``i ~ U{0..N-1}``.

    ``x_i = sqrt(abar_i) x0 + sqrt(1 - abar_i) z``, ``abar_i = prod_{j<=i} (1 - beta_j)``, ``beta_j`` linear from
    ``beta_min / N`` to ``beta_max / N`` (the VP SDE's discretization). The model is called at ``t_i = i / (N - 1)``,
    so an epsilon model trained here runs in the pipelines with time label ``t (N - 1) = i``.
    """
    if not isinstance(sde, VPSDE):
        raise TypeError(f"ddpm_loss needs a VPSDE, got {type(sde).__name__}")
    check_choice("reduce", reduce, REDUCTIONS)
    betas = torch.linspace(sde.beta_min / sde.N, sde.beta_max / sde.N, sde.N, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).to(device=x0.device, dtype=torch.float32)
    i, t = _discrete_time(x0.shape[0], sde.N, generator, x0)
    z = randn_like(x0.float(), generator)
    x_i = append_dims(abar[i].sqrt(), x0.ndim) * x0.float() + append_dims((1 - abar[i]).sqrt(), x0.ndim) * z
    return _finish(_reduce((model_fn(x_i.to(x0.dtype), t).float() - z) ** 2, reduce), return_per_sample)


def smld_loss(
    model_fn: ModelFn, sde: VESDE, x0: torch.Tensor, generator: torch.Generator | None = None,
    parameterization: str = "sigma", reduce: str = "mean", return_per_sample: bool = False,
) -> torch.Tensor:
    """Discrete SMLD / NCSN loss (Song & Ermon 2019): ``sigma_i^2 || s(x, sigma_i) + z / sigma_i ||^2``.

    ``sigma_i = sigma_min (sigma_max / sigma_min)^(i / (N - 1))``, ``i ~ U{0..N-1}``, is the VE SDE's noise level at
    ``t_i = i / (N - 1)``; the model is called at ``t_i``.
    """
    if not isinstance(sde, VESDE):
        raise TypeError(f"smld_loss needs a VESDE, got {type(sde).__name__}")
    _, t = _discrete_time(x0.shape[0], sde.N, generator, x0)
    return dsm_loss(model_fn, sde, x0, generator, parameterization, "std2", reduce=reduce, t=t * sde.T,
                    return_per_sample=return_per_sample)


def geometric_sigmas(sigma_min: float, sigma_max: float, num_levels: int) -> torch.Tensor:
    """The NCSN ladder ``sigma_max = sigma_1 > ... > sigma_L = sigma_min``, geometric, ``(L,)`` float32."""
    if not 0 < sigma_min < sigma_max or num_levels < 2:
        raise ValueError(f"need 0 < sigma_min < sigma_max and num_levels >= 2, got {sigma_min}, {sigma_max}, "
                         f"{num_levels}")
    return torch.logspace(torch.log10(torch.tensor(sigma_max)), torch.log10(torch.tensor(sigma_min)), num_levels)


def ncsn_loss(
    score_fn: ModelFn, sigmas: torch.Tensor, x0: torch.Tensor, generator: torch.Generator | None = None,
    reduce: str = "sum", return_per_sample: bool = False,
) -> torch.Tensor:
    """Noise-conditional DSM over a sigma ladder (Song & Ermon 2019, eq. 6), weighting ``sigma^2``.

    ``L = E_i E [ sigma_i^2 || s(x0 + sigma_i z, sigma_i) + z / sigma_i ||^2 ] / 2`` (the 1/2 of their eq. 5).

    Args:
        score_fn: ``score_fn(x, sigma) -> score``, ``sigma`` of shape ``(B,)``.
        sigmas: ``(L,)`` noise levels (see :func:`geometric_sigmas`).
        x0: data ``(B, ...)``.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32, device=x0.device)
    i = torch.randint(0, len(sigmas), (x0.shape[0],), generator=generator, device=x0.device)
    sigma = append_dims(sigmas[i], x0.ndim)
    z = randn_like(x0.float(), generator)
    residual = sigma * score_fn(x0 + sigma * z, sigmas[i]).float() + z
    return _finish(0.5 * _reduce(residual**2, reduce), return_per_sample)


def _projections(x: torch.Tensor, n: int, kind: str, generator) -> torch.Tensor:
    v = randn_like(x.unsqueeze(0).expand(n, *x.shape).contiguous(), generator)
    return v.sign() if kind == "rademacher" else v  # the sign of a Gaussian is a Rademacher draw


def sliced_score_matching_loss(
    score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, generator: torch.Generator | None = None,
    num_projections: int = 1, projection: str = "gaussian", variance_reduced: bool = False,
    return_per_sample: bool = False,
) -> torch.Tensor:
    """Sliced score matching (Song et al. 2019): ``E_v [ v^T (d s / d x) v + (v^T s)^2 / 2 ]``, ``E[v v^T] = I``.

    ``v^T (ds/dx) v`` costs one vector-Jacobian product per projection. ``variance_reduced`` replaces
    ``(v^T s)^2 / 2`` by its expectation ``||s||^2 / 2`` (SSM-VR). Both estimate Hyvärinen's objective
    ``E[tr(ds/dx) + ||s||^2 / 2]`` (up to a constant of the data); the graph is kept, so the loss trains ``score_fn``.

    Args:
        score_fn: ``score_fn(x) -> (B, ...)`` (close over any noise level).
        x: data ``(B, ...)``.
        num_projections: directions per sample.
        projection: ``"gaussian"`` or ``"rademacher"``.
        variance_reduced: use the SSM-VR form.
    """
    check_choice("projection", projection, PROJECTIONS)
    x = x.detach().requires_grad_(True)
    s = score_fn(x)
    v = _projections(x, num_projections, projection, generator)  # (n, B, ...)
    terms = []
    for vk in v:
        (grad_vs,) = torch.autograd.grad((s * vk).sum(), x, create_graph=True)  # v^T ds/dx, one VJP
        jvp = (grad_vs * vk).reshape(x.shape[0], -1).sum(-1)
        norm = (s.reshape(x.shape[0], -1) ** 2).sum(-1) if variance_reduced else (s * vk).reshape(x.shape[0], -1).sum(
            -1) ** 2
        terms.append(jvp + 0.5 * norm)
    return _finish(torch.stack(terms).mean(0), return_per_sample)


def hyvarinen_loss(
    score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, return_per_sample: bool = False
) -> torch.Tensor:
    """Exact score matching (Hyvärinen 2005): ``E[ tr(d s / d x) + ||s||^2 / 2 ]`` with the full Jacobian trace.

    Costs one backward pass per data dimension: for low-dimensional data only. ``x`` is ``(B, D)``.
    """
    if x.ndim != 2:
        raise ValueError(f"hyvarinen_loss takes flat data (B, D), got shape {tuple(x.shape)}")
    x = x.detach().requires_grad_(True)
    s = score_fn(x)
    trace = torch.zeros(x.shape[0], dtype=s.dtype, device=x.device)
    for d in range(x.shape[1]):
        (grad_d,) = torch.autograd.grad(s[:, d].sum(), x, create_graph=True)  # row d of the Jacobian
        trace = trace + grad_d[:, d]
    return _finish(trace + 0.5 * (s**2).sum(-1), return_per_sample)


def classifier_loss(
    logits_fn: ModelFn, sde: SDE, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None,
    eps: float = 1e-5, t: torch.Tensor | None = None, return_per_sample: bool = False,
) -> torch.Tensor:
    """Cross-entropy of a noise-conditional classifier on perturbed data: ``-log p_t(y | x_t)``, t ~ U(eps, T).

    Args:
        logits_fn: ``logits_fn(x_t, t) -> (B, K)`` with ``t`` the SDE time (see scorekit.models.classifier_log_prob_fn
            for the timestep a ``TimeClassifierModel`` takes).
        sde: the forward SDE of the score model the classifier will guide.
        x0: data ``(B, ...)``; labels: ``(B,)`` integers.
    """
    if t is None:
        t = uniform_time(x0.shape[0], sde, eps, generator, x0)
    mean, std = sde.marginal_prob(x0.float(), t)
    x_t = mean + append_dims(std, x0.ndim) * randn_like(x0.float(), generator)
    ce = F.cross_entropy(logits_fn(x_t.to(x0.dtype), t).float(), labels.long(), reduction="none")
    return _finish(ce, return_per_sample)
