"""Probability-flow ODE latents (Song et al. 2021, Sec. 4.3): encode, decode and interpolate.

The PF-ODE (eq. 13) is a deterministic, invertible map between data at ``t = eps`` and latents at ``t = T``:
``encode`` integrates it forwards (eps -> T), ``decode`` backwards (T -> eps), so ``decode(encode(x)) = x`` up to
the solver tolerance. Latents are distributed like the prior ``N(0, prior_std^2 I)``, where spherical interpolation
(``slerp``) keeps interpolants at a typical norm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .numerics import CountedScore, compute_dtype
from .samplers.ode import ADAPTIVE_METHODS, odeint_adaptive, pf_ode_drift
from .sampling import check_eps, sample
from .sde import SDE
from .utils import batch_time, check_choice, check_positive

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_ode_args(sde: SDE, method: str, rtol: float, atol: float, eps: float | None) -> float:
    """Validate the shared PF-ODE solve arguments; returns ``eps`` (``sde.sampling_eps`` when ``None``)."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a scorekit SDE (VPSDE, SubVPSDE, VESDE), got {type(sde).__name__}")
    check_choice("method", method, ADAPTIVE_METHODS)
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    return float(check_eps(sde, eps))


def check_data(name: str, x: Any, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.dtype]:
    """Check ``x`` is a finite floating tensor ``(B, ...)``; returns it in the compute dtype and the model dtype.

    The model dtype is ``dtype`` if given, else ``x.dtype``; the returned tensor is in
    :func:`~scorekit.numerics.compute_dtype` of it (float32, or float64 for float64 models), where the solve runs.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, ...), got {type(x).__name__}")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    model_dtype = dtype or x.dtype
    if not model_dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating tensor (or pass dtype=...), got dtype {x.dtype}")
    x = x.to(compute_dtype(model_dtype))
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (B, ...) with B >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x, model_dtype


def pf_ode_solve(score_fn: CountedScore, sde: SDE, x: torch.Tensor, t0: float, t1: float, method: str,
                 rtol: float, atol: float) -> torch.Tensor:
    """Integrate the PF-ODE ``dx/dt = f - 1/2 g^2 score`` (eq. 13) from ``t0`` to ``t1``; no gradients."""

    def drift(t, y):
        return pf_ode_drift(y, batch_time(t, y.shape[0], y), score_fn, sde)

    with torch.no_grad():
        return odeint_adaptive(drift, x, t0, t1, method, rtol, atol, guard=score_fn.guard)


def encode(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Encode data into PF-ODE latents: integrate eq. 13 from ``eps`` to ``T``.

    Args:
        score_fn: ``score_fn(x, t) -> score`` shaped like ``x``; ``t`` of shape ``(B,)``.
        sde: the forward SDE the score model was trained with.
        x: ``(B, ...)`` data in the model's range (e.g. [-1, 1] for VP models), read as a sample of ``p_eps``.
        method: an adaptive solver: torchdiffeq's ``"dopri5"`` (and friends) or ``"scipy_RK45"`` (the paper's).
        rtol, atol: solver tolerances.
        eps: start time; defaults to ``sde.sampling_eps``.
        dtype: the model's dtype (defaults to ``x.dtype``); the solve runs in float32 (float64 for float64 models).

    Returns:
        ``(z, info)``: latents ``z`` shaped like ``x``, in the compute dtype (float32 / float64, see
        :mod:`scorekit.numerics`), and ``{"nfe": score evaluations, "eps": eps}``.
    """
    eps = check_ode_args(sde, method, rtol, atol, eps)
    x, model_dtype = check_data("x", x, dtype)
    counted = CountedScore(score_fn, model_dtype=model_dtype)
    z = pf_ode_solve(counted, sde, x, eps, sde.T, method, rtol, atol)
    return z, {"nfe": counted.nfe, "eps": eps}


def decode(
    score_fn: ScoreFn,
    sde: SDE,
    z: torch.Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    dtype: torch.dtype | None = None,
    denoise: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Decode PF-ODE latents into data: integrate eq. 13 from ``T`` down to ``eps``; the inverse of :func:`encode`.

    Args:
        score_fn: ``score_fn(x, t) -> score`` shaped like ``x``; ``t`` of shape ``(B,)``.
        sde: the forward SDE the score model was trained with.
        z: ``(B, ...)`` latents at time ``T`` (from :func:`encode`, :func:`slerp` or ``sde.prior_sampling``).
        method, rtol, atol, eps: as in :func:`encode`.
        dtype: the model's dtype (defaults to ``z.dtype``); ``x`` is returned in it.
        denoise: apply Tweedie's formula at ``eps`` (one extra NFE, as ``sample(..., denoise=True)`` does). Leave
            ``False`` to invert :func:`encode` exactly.

    Returns:
        ``(x, info)``: data ``x`` shaped like ``z`` and ``{"nfe": score evaluations, "eps": eps}``.
    """
    eps = check_ode_args(sde, method, rtol, atol, eps)
    z, model_dtype = check_data("z", z, dtype)
    # decoding is PF-ODE sampling started from the given latents
    x, info = sample(score_fn, sde, tuple(z.shape), sampler="ode", method=method, rtol=rtol, atol=atol, eps=eps,
                     x_T=z, denoise=denoise, dtype=model_dtype, device=z.device)
    return x, {"nfe": info["nfe"], "eps": eps}


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation between latents, per sample over all non-batch dims.

    ``slerp = sin((1 - a) theta) / sin(theta) z0 + sin(a theta) / sin(theta) z1`` with ``theta`` the angle between
    ``z0`` and ``z1``; falls back to linear interpolation where ``theta`` is ~0 (parallel latents).

    Args:
        z0, z1: latents of the same shape ``(B, ...)``; ``alpha = 0`` gives ``z0``, ``alpha = 1`` gives ``z1``.
        alpha: a float, or a 1-D tensor of ``n`` weights.

    Returns:
        Shape ``(B, ...)`` for a float ``alpha``, ``(n, B, ...)`` for a tensor of ``n`` weights.
    """
    if not isinstance(z0, torch.Tensor) or not isinstance(z1, torch.Tensor) or z0.shape != z1.shape:
        got = [tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__ for z in (z0, z1)]
        raise ValueError(f"z0 and z1 must be tensors of the same shape (B, ...), got {got[0]} and {got[1]}")
    scalar = not isinstance(alpha, torch.Tensor)
    a = torch.as_tensor(alpha, dtype=z0.dtype, device=z0.device).reshape(-1)
    f0, f1 = z0.reshape(z0.shape[0], -1), z1.reshape(z1.shape[0], -1)
    cos = (f0 * f1).sum(-1) / (f0.norm(dim=-1) * f1.norm(dim=-1)).clamp_min(torch.finfo(z0.dtype).tiny)
    theta = torch.arccos(cos.clamp(-1, 1))[None, :, None]  # (1, B, 1)
    a = a[:, None, None]  # (n, 1, 1)
    small = theta.abs() < 1e-4
    sin = torch.where(small, torch.ones_like(theta), theta.sin())
    w0 = torch.where(small, 1 - a, ((1 - a) * theta).sin() / sin)
    w1 = torch.where(small, a, (a * theta).sin() / sin)
    out = (w0 * f0 + w1 * f1).reshape(-1, *z0.shape)
    return out[0] if scalar else out


def interpolate(
    score_fn: ScoreFn,
    sde: SDE,
    x0: torch.Tensor,
    x1: torch.Tensor,
    n: int,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Interpolate between data points through the PF-ODE latent space: encode, ``slerp``, decode.

    Args:
        score_fn, sde, method, rtol, atol, eps, dtype: as in :func:`encode`.
        x0, x1: end points, the same shape ``(B, ...)`` (``B`` pairs).
        n: number of interpolants, >= 2, at weights ``linspace(0, 1, n)`` (both ends included).

    Returns:
        ``(x, info)``: ``x`` of shape ``(n, B, ...)`` (``x[0] ~ x0``, ``x[-1] ~ x1``) and ``{"nfe", "latents"}`` where
        ``nfe`` sums the encode and decode solves and ``latents`` are the slerped latents ``(n, B, ...)``.
    """
    check_positive("n", n, integer=True)
    if n < 2:
        raise ValueError(f"n must be >= 2 (both end points are included), got {n}")
    (x0, model_dtype), (x1, _) = check_data("x0", x0, dtype), check_data("x1", x1, dtype)
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    kwargs = dict(method=method, rtol=rtol, atol=atol, eps=eps, dtype=model_dtype)
    z, enc = encode(score_fn, sde, torch.cat([x0, x1]), **kwargs)
    z0, z1 = z.chunk(2)
    latents = slerp(z0, z1, torch.linspace(0, 1, n, dtype=torch.float64))
    x, dec = decode(score_fn, sde, latents.reshape(-1, *x0.shape[1:]), **kwargs)
    return x.reshape(n, *x0.shape), {"nfe": enc["nfe"] + dec["nfe"], "latents": latents}
