"""Exact likelihoods through the probability-flow ODE (Song et al. 2021, Sec. 4.3 and App. D.2).

``log_likelihood`` integrates the PF-ODE (eq. 13) from ``eps`` to ``T`` together with the divergence of its drift
(the instantaneous change of variables, eq. 39-40):

    log p_eps(x(eps)) = log p_T(x(T)) + int_eps^T div f~(x(t), t) dt.

The divergence is estimated with Hutchinson's trick, ``div f~ = E_v[v^T (d f~ / dx) v]``, one vector-Jacobian product
per probe, with the probes drawn once and held fixed for the whole solve (a fixed probe keeps the right-hand side a
smooth ODE). ``bits_per_dim`` adds uniform dequantization of discrete data with any number of levels and the
matching change-of-variables offset.

Standard error. With ``K = num_probes`` probes the solve carries ``K`` divergence integrals, one per probe, next to
the shared trajectory ``x(t)`` (which does not depend on the probes). For a fixed ``x`` the ``K`` estimates
``L_k = log pi(z) + int v_k^T (d f~ / dx) v_k dt = log pi(z) + v_k^T A v_k`` (``pi`` the prior, ``sde.prior_logp``,
standing in for ``p_T``; ``A`` the time-integrated Jacobian) are i.i.d., so ``logp = mean_k L_k`` (identical to
averaging the probes at every evaluation, by linearity of the integral) and ``stderr = std_k(L_k) / sqrt(K)`` is an
honest standard error of ``logp`` - at the cost of one solve and one score evaluation per step, not ``K`` solves.
The solver error is shared by all ``L_k`` and is not in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from .checks import PROBES  # the probe names live torch-free, for the CLI
from .latents import ScoreFn, check_data, check_ode_args
from .numerics import CountedScore, compute_dtype
from .samplers.ode import odeint_adaptive, pf_ode_drift
from .sde import SDE
from .utils import batch_time, check_choice, check_positive, rademacher, rand, randn


def draw_probes(num_probes: int, x: torch.Tensor, probe: str = "rademacher",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``num_probes`` Hutchinson probes shaped like ``x``: ``(K, B, ...)``, entries +-1 (Rademacher) or N(0, 1)."""
    shape = (num_probes, *x.shape)
    draw = randn if probe == "gaussian" else rademacher  # on the generator's device, then moved to x's
    return draw(shape, generator, dtype=x.dtype, device=x.device)


def hutchinson_divergence(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, probes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate ``fn(x)`` and Hutchinson estimates of its per-sample divergence ``tr(d fn / dx)``.

    Each estimate is ``v^T (d fn / dx) v`` (eq. 40's trace, Hutchinson 1990), computed with one vector-Jacobian
    product per probe through autograd, so ``fn`` is evaluated once for all probes. ``fn`` must act on each sample
    independently (true of score networks and analytic scores).

    Args:
        fn: a differentiable map ``(B, ...) -> (B, ...)``.
        x: ``(B, ...)`` point of evaluation.
        probes: ``(K, B, ...)`` probe vectors with ``E[v v^T] = I``.

    Returns:
        ``(fn(x), estimates)``: ``fn(x)`` detached, shape of ``x``, and estimates of shape ``(K, B)``.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        if not out.requires_grad:
            raise ValueError("fn is not differentiable in x: the Hutchinson divergence needs autograd through it")
        estimates = []
        for k, v in enumerate(probes):
            (vjp,) = torch.autograd.grad(out, x, v, retain_graph=k < len(probes) - 1, allow_unused=True)
            vjp = torch.zeros_like(x) if vjp is None else vjp
            estimates.append((vjp * v).reshape(x.shape[0], -1).sum(-1))  # v^T J v per sample
    return out.detach(), torch.stack(estimates)


def log_likelihood(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    num_probes: int = 1,
    probe: str = "rademacher",
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Log-density ``log p_eps(x)`` in nats per sample through the PF-ODE (eq. 39-40), unbiased in the probes.

    Args:
        score_fn: ``score_fn(x, t) -> score`` shaped like ``x``, differentiable in ``x``; ``t`` of shape ``(B,)``.
        sde: the forward SDE the score model was trained with.
        x: ``(B, ...)`` data in the model's range, any shape.
        num_probes: ``K >= 1`` Hutchinson probes, fixed for the solve; ``K > 1`` also gives a standard error.
        probe: ``"rademacher"`` (lower variance: ``2 sum_{i != j} A_ij^2``) or ``"gaussian"`` (``2 ||A||_F^2``).
        method: an adaptive solver: torchdiffeq's ``"dopri5"`` (and friends) or ``"scipy_RK45"`` (the paper's).
        rtol, atol: solver tolerances (the state is the flattened data plus ``K`` integrals per sample).
        eps: start time of the ODE (the density is that of ``p_eps``); defaults to ``sde.sampling_eps``.
        generator: draws the probes (on its own device; then moved).
        dtype: the model's dtype (defaults to ``x.dtype``). The solve, the probes and the divergence integrals run
            in float32 (float64 for float64 models), see :mod:`scorekit.numerics`; ``logp`` is in that dtype.

    Returns:
        ``(logp, info)``: ``logp`` of shape ``(B,)`` and a dict with
        ``nfe`` (score evaluations: one per drift evaluation, shared by all probes), ``nvjp`` (vector-Jacobian
        products, ``K`` per evaluation), ``latent`` (``z = x(T)``, shape of ``x``), ``nats`` (``logp`` again),
        ``prior_logp`` (``sde.prior_logp(z)``, standing in for ``log p_T(z)``, ``(B,)``), ``delta_logp`` (mean
        divergence integral, ``(B,)``), ``per_probe`` (the ``K`` i.i.d. estimates, ``(K, B)``) and ``stderr``
        (``std_k / sqrt(K)``, ``(B,)``; ``None`` when ``K = 1``). The module docstring says why it is honest.
    """
    eps = check_ode_args(sde, method, rtol, atol, eps)
    check_positive("num_probes", num_probes, integer=True)
    check_choice("probe", probe, PROBES)
    x, model_dtype = check_data("x", x, dtype)
    counted = CountedScore(score_fn, model_dtype=model_dtype)

    def differentiable_score(x_, t_):
        score = counted(x_, t_)
        if not score.requires_grad:
            raise ValueError("score_fn is not differentiable in x (is it run under torch.no_grad()?); the Hutchinson "
                             "divergence needs autograd through the score")
        return score

    probes = draw_probes(num_probes, x, probe, generator)
    batch, n = x.shape[0], x.numel()
    nvjp = 0

    def joint_drift(t, y):  # d/dt (x, delta_1..K) = (f~(x, t), v_k^T (d f~ / dx) v_k), eq. 13 and 40
        nonlocal nvjp
        x_t = y[:n].reshape(x.shape)
        t_b = batch_time(t, batch, x_t)
        pf_drift = partial(pf_ode_drift, t=t_b, score_fn=differentiable_score, sde=sde)
        drift, div = hutchinson_divergence(pf_drift, x_t, probes)
        nvjp += num_probes
        return torch.cat([drift.reshape(-1), div.reshape(-1)])

    y0 = torch.cat([x.reshape(-1), x.new_zeros(num_probes * batch)])
    with torch.no_grad():
        y_T = odeint_adaptive(joint_drift, y0, eps, sde.T, method, rtol, atol, guard=counted.guard)
    z, delta = y_T[:n].reshape(x.shape), y_T[n:].reshape(num_probes, batch)
    prior_logp = sde.prior_logp(z)
    per_probe = prior_logp + delta  # eq. 40: log p_eps(x) = log p_T(z) + int_eps^T div f~ dt, one per probe
    logp = per_probe.mean(0)
    stderr = per_probe.std(0) / math.sqrt(num_probes) if num_probes > 1 else None
    info = {"nfe": counted.nfe, "nvjp": nvjp, "latent": z, "nats": logp, "prior_logp": prior_logp,
            "delta_logp": delta.mean(0), "per_probe": per_probe, "stderr": stderr, "eps": eps}
    return logp, info


def dequantize_levels(
    x: torch.Tensor,
    num_levels: int = 256,
    data_range: tuple[float, float] = (-1.0, 1.0),
    *,
    uniform: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, float]:
    """Map integer levels ``x in {0, .., L-1}`` to model space: ``y = lo + (hi - lo) (x + u) / L``.

    Args:
        x: ``(B, ...)`` integer tensor (e.g. ``uint8``) or floats on the level grid (whole numbers).
        num_levels: ``L >= 2`` (256 for 8-bit images, 17 for sklearn digits 0..16).
        data_range: ``(lo, hi)`` of the model's data space; ``[0, L)`` maps onto ``[lo, hi)``.
        uniform: add ``u ~ U[0, 1)`` (uniform dequantization); ``False`` uses the bin centre ``u = 1/2``.
        generator: draws ``u``.
        dtype: floating dtype of ``y``.

    Returns:
        ``(y, log_scale)``: ``y`` of the shape of ``x`` and ``log((hi - lo) / L)``, the per-dimension log-Jacobian
        of the map from level space to model space.
    """
    check_positive("num_levels", num_levels, integer=True)
    if num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2, got {num_levels}")
    lo, hi = _check_range(data_range)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of integer levels, got {type(x).__name__}")
    levels = x.to(torch.float64)
    if not torch.isfinite(levels).all() or (levels != levels.round()).any():
        raise ValueError("x must hold whole numbers (integer levels 0..num_levels-1); got non-integer values")
    if x.numel() and (levels.min() < 0 or levels.max() > num_levels - 1):
        raise ValueError(f"x must lie in [0, {num_levels - 1}] for num_levels={num_levels}, got values in "
                         f"[{levels.min().item():g}, {levels.max().item():g}]")
    u = rand(tuple(x.shape), generator, dtype=torch.float64, device=x.device) if uniform else 0.5
    scale = (hi - lo) / num_levels
    return (lo + scale * (levels + u)).to(dtype), math.log(scale)


def levels_from_data(
    x: torch.Tensor, num_levels: int = 256, data_range: tuple[float, float] = (-1.0, 1.0), atol: float = 1e-2
) -> torch.Tensor:
    """Integer levels of data scaled for a model: pixel ``k`` at ``lo + (hi - lo) k / (L - 1)`` -> ``k``.

    The inverse of the usual training scaling (``pipe.preprocess`` maps an 8-bit pixel ``k`` to
    ``lo + (hi - lo) k / 255``), to feed :func:`bits_per_dim`. Values more than ``atol`` levels off the grid (resized
    or non-8-bit data) raise a ValueError.

    Args:
        x: ``(B, ...)`` data in the model's range.
        num_levels: ``L >= 2``.
        data_range: ``(lo, hi)``, the model's data range.
        atol: accepted distance to the grid, in levels.

    Returns:
        ``(B, ...)`` int64 levels in ``{0, .., L-1}``.
    """
    check_positive("num_levels", num_levels, integer=True)
    lo, hi = _check_range(data_range)
    k = (x.detach().to(torch.float64) - lo) / (hi - lo) * (num_levels - 1)
    off = (k - k.round()).abs().max().item() if k.numel() else 0.0
    if not off <= atol:
        raise ValueError(f"x is not on the {num_levels}-level grid of data_range={data_range} (off by {off:.3g} "
                         f"levels > atol={atol}); was it resized or not {num_levels}-level data?")
    return k.round().long()


def _check_range(data_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data_range must be a pair (lo, hi) of numbers, got {data_range!r}") from err
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"data_range must be finite with lo < hi, got {data_range!r}")
    return lo, hi


def nats_to_bpd(logp: torch.Tensor, num_dims: int, log_scale: float) -> torch.Tensor:
    """``bpd = -(log p(y) + D log scale) / (D ln 2)``: model-space nats to bits/dim of level-space data."""
    return -(logp + num_dims * log_scale) / (num_dims * math.log(2))


def bits_per_dim(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    num_levels: int = 256,
    data_range: tuple[float, float] = (-1.0, 1.0),
    dequantize: bool = True,
    num_probes: int = 1,
    probe: str = "rademacher",
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Bits per dimension of discrete data under the PF-ODE density, with uniform dequantization (App. D.2).

    Input convention: ``x`` holds the *integer levels* ``{0, .., L-1}`` of the data (``L = num_levels``), e.g. the
    raw ``uint8`` pixels of an 8-bit image (``L = 256``) or sklearn digits' values 0..16 (``L = 17``), as an integer
    tensor or as whole-number floats. It is mapped to the model's space by ``y = lo + s (x + u)``, ``u ~ U[0, 1)``,
    ``s = (hi - lo) / L``: level ``k`` owns the bin ``[lo + k s, lo + (k + 1) s)`` and the ``L`` bins tile
    ``[lo, hi)``. The dequantized ``x + u`` has density ``p(y) s^D`` in level space (change of variables, ``D`` the
    number of dimensions per sample), and ``E_u[log p(y) + D log s] <= log P(x)`` (Jensen), so

        bpd = -(log p(y) + D log s) / (D ln 2)

    is an unbiased estimate of an upper bound on ``-log2 P(x) / D``. For 8-bit data on [-1, 1] (``s = 2/256``)
    the offset ``-log2 s`` is ``+log2(128) = 7`` bits; on [0, 1] it is 8; for 17 levels on [0, 1] ``log2 17``.
    The paper's VE models use ``data_range=(0, 1)``, its VP / sub-VP models (and DDPM checkpoints) ``(-1, 1)``.

    Args:
        score_fn: ``score_fn(x, t) -> score`` shaped like ``x``, differentiable in ``x``.
        sde: the forward SDE of the model.
        x: ``(B, ...)`` integer levels (see above).
        num_levels: ``L >= 2``.
        data_range: ``(lo, hi)``, the model's data range.
        dequantize: add uniform noise (recommended). ``False`` evaluates the density at bin centres, an
            approximation that is not a bound (the reference code's negative bpd came from skipping this).
        num_probes, probe, method, rtol, atol, eps, dtype: as in :func:`log_likelihood` (``dtype``, the model's
            dtype, defaults to ``x.dtype`` for floating ``x``, else float32; ``y`` is in the compute dtype).
        generator: draws the dequantization noise, then the probes.

    Returns:
        ``(bpd, info)``: ``bpd`` of shape ``(B,)`` and :func:`log_likelihood`'s info with ``nats`` = ``log p(y)``
        in model space, ``stderr`` converted to bits/dim (the standard error of ``bpd`` over the probes, ``None``
        for one probe), ``stderr_nats`` (of ``log p(y)``), ``log_scale`` = ``log s`` and ``dequantized`` = ``y``.
    """
    out_dtype = dtype or (x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() else torch.float32)
    y, log_scale = dequantize_levels(x, num_levels, data_range, uniform=dequantize, generator=generator,
                                     dtype=compute_dtype(out_dtype))  # y in the compute dtype, never float16
    logp, info = log_likelihood(score_fn, sde, y, num_probes=num_probes, probe=probe, method=method, rtol=rtol,
                                atol=atol, eps=eps, generator=generator, dtype=out_dtype)
    num_dims = y[0].numel()
    stderr = info["stderr"]
    info.update(stderr_nats=stderr, log_scale=log_scale, dequantized=y,
                stderr=None if stderr is None else stderr / (num_dims * math.log(2)))
    return nats_to_bpd(logp, num_dims, log_scale), info
