"""PF-ODE encode / decode / interpolate against the closed-form flow of Gaussian data.

For data ``N(mu, Sigma)``, ``Sigma = U diag(lambda) U^T``, the PF-ODE is affine and its flow from ``s`` to ``t`` is
``x_t = alpha_t mu + U diag(sqrt(c(t) / c(s))) U^T (x_s - alpha_s mu)`` with ``c_i = alpha^2 lambda_i + std^2``: in
the eigenbasis ``d/dt u_i = (f + 1/2 g^2 / c_i) u_i = (d/dt 1/2 log c_i) u_i`` (variance ODE ``c' = 2 f c + g^2``).

Solver tolerance: the global error is at most the sum of the per-step error allowances,
``n_steps (atol + rtol max|y|)``, ``n_steps <= nfe / 6`` for dopri5 / RK45 (six new stages per step).
"""

from __future__ import annotations

import math

import pytest
import torch

from scorekit.analytic import GaussianScore
from scorekit.latents import decode, encode, interpolate, slerp
from scorekit.samplers.ddim import tweedie_denoise
from scorekit.sde import get_sde
from scorekit.utils import batch_time

D = 64
TOL = 1e-6


def gaussian(sde_name: str, seed: int = 0) -> GaussianScore:
    g = torch.Generator().manual_seed(seed)
    mean = 0.5 * torch.randn(D, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    lam = torch.logspace(math.log10(0.05), 0, D, dtype=torch.float64)
    return GaussianScore(mean, q @ torch.diag(lam) @ q.T, get_sde(sde_name))


def exact_flow(gs: GaussianScore, x: torch.Tensor, s: float, t: float) -> torch.Tensor:
    """The PF-ODE flow map from time ``s`` to ``t`` for Gaussian data (module docstring)."""
    alpha, std = gs.sde.marginal_coef(torch.tensor([s, t], dtype=torch.float64))
    c = alpha[:, None] ** 2 * gs.evals[0] + std[:, None] ** 2
    mu, u = gs.mean.reshape(-1), gs.evecs[0]
    proj = (x.reshape(len(x), -1) - alpha[0] * mu) @ u
    return (alpha[1] * mu + (proj * (c[1] / c[0]).sqrt()) @ u.T).reshape(x.shape)


def solver_tol(info: dict, y: torch.Tensor, rtol: float = TOL, atol: float = TOL) -> float:
    return info["nfe"] / 6 * (atol + rtol * y.abs().max().item())


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("method", ["dopri5", "scipy_RK45"])
def test_encode_matches_exact_flow_and_decode_inverts(sde_name, method):
    gs = gaussian(sde_name)
    x, _ = gs.sample(3, torch.Generator().manual_seed(1))
    z, enc = encode(gs, gs.sde, x, method=method, rtol=TOL, atol=TOL)
    z_exact = exact_flow(gs, x, gs.sde.sampling_eps, gs.sde.T)
    assert (z - z_exact).abs().max() <= solver_tol(enc, z_exact)
    x_rec, dec = decode(gs, gs.sde, z, method=method, rtol=TOL, atol=TOL)
    # decode starts from the encode's endpoint: both solves' errors add up
    assert (x_rec - x).abs().max() <= solver_tol(dec, z) + solver_tol(enc, z_exact)
    assert enc["nfe"] > 0 and dec["nfe"] > 0 and enc["eps"] == gs.sde.sampling_eps


def test_decode_denoise_applies_tweedie_with_one_extra_evaluation():
    gs = gaussian("vp")
    z = gs.sde.prior_sampling((2, D), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, info = decode(gs, gs.sde, z, rtol=1e-4, atol=1e-4)
    x_den, info_den = decode(gs, gs.sde, z, rtol=1e-4, atol=1e-4, denoise=True)
    t = batch_time(gs.sde.sampling_eps, 2, x)
    assert torch.allclose(x_den, tweedie_denoise(x, t, gs, gs.sde))
    assert info_den["nfe"] == info["nfe"] + 1


def test_encode_any_shape_and_dtype():
    gs = gaussian("ve")
    gs_img = GaussianScore(gs.mean.reshape(1, 8, 8), gs.cov, gs.sde)
    x, _ = gs.sample(2, torch.Generator().manual_seed(1))
    z_flat, _ = encode(gs, gs.sde, x, rtol=1e-4, atol=1e-4)
    z_img, _ = encode(gs_img, gs.sde, x.reshape(2, 1, 8, 8), rtol=1e-4, atol=1e-4)
    assert torch.allclose(z_flat.reshape(2, 1, 8, 8), z_img)
    z32, _ = encode(gs, gs.sde, x, rtol=1e-4, atol=1e-4, dtype=torch.float32)
    assert z32.dtype == torch.float32


def test_slerp_endpoints_norm_and_shapes():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 5, generator=g,
                                                                               dtype=torch.float64)
    assert torch.allclose(slerp(z0, z1, 0.0), z0) and torch.allclose(slerp(z0, z1, 1.0), z1)
    path = slerp(z0, z1, torch.linspace(0, 1, 7))
    assert path.shape == (7, 3, 4, 5)
    # equal-norm end points: slerp stays on the sphere (great-circle arc), lerp would cut inside it
    z1n = z1 / z1.flatten(1).norm(dim=1)[:, None, None] * z0.flatten(1).norm(dim=1)[:, None, None]
    norms = slerp(z0, z1n, torch.linspace(0, 1, 7)).flatten(2).norm(dim=-1)
    assert torch.allclose(norms, z0.flatten(1).norm(dim=1).expand(7, 3))
    # the angle moves uniformly: angle(z0, slerp(alpha)) = alpha * angle(z0, z1)
    mid = slerp(z0, z1n, 0.25).flatten(1)
    cos = lambda a, b: (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))  # noqa: E731
    assert torch.allclose(torch.arccos(cos(z0.flatten(1), mid)), 0.25 * torch.arccos(cos(z0.flatten(1),
                                                                                          z1n.flatten(1))))
    # parallel latents fall back to linear interpolation (no 0 / 0)
    assert torch.allclose(slerp(z0, 2 * z0, 0.5), 1.5 * z0)
    with pytest.raises(ValueError, match="same shape"):
        slerp(z0, z1[:2], 0.5)


def test_interpolate_shape_endpoints_and_nfe():
    gs = gaussian("vp")
    g = torch.Generator().manual_seed(1)
    (x0, _), (x1, _) = gs.sample(2, g), gs.sample(2, g)
    x, info = interpolate(gs, gs.sde, x0, x1, 5, rtol=TOL, atol=TOL)
    assert x.shape == (5, 2, D) and info["latents"].shape == (5, 2, D)
    assert (x[0] - x0).abs().max() <= 2 * solver_tol(info, info["latents"])
    assert (x[-1] - x1).abs().max() <= 2 * solver_tol(info, info["latents"])
    # interior points decode the slerped latents: check one against the exact inverse flow
    mid = exact_flow(gs, info["latents"][2], gs.sde.T, gs.sde.sampling_eps)
    assert (x[2] - mid).abs().max() <= 2 * solver_tol(info, info["latents"])


@pytest.mark.parametrize(
    ("fn", "kwargs", "error", "match"),
    [
        (encode, {"method": "euler"}, ValueError, "method"),
        (encode, {"rtol": 0.0}, ValueError, "rtol"),
        (decode, {"atol": float("nan")}, ValueError, "atol"),
        (decode, {"eps": 2.0}, ValueError, "eps"),
    ],
)
def test_bad_arguments_raise(fn, kwargs, error, match):
    gs = gaussian("vp")
    with pytest.raises(error, match=match):
        fn(gs, gs.sde, torch.zeros(1, D, dtype=torch.float64), **kwargs)


def test_bad_inputs_raise():
    gs = gaussian("vp")
    x = torch.zeros(1, D, dtype=torch.float64)
    with pytest.raises(TypeError, match="floating"):
        encode(gs, gs.sde, torch.zeros(1, D, dtype=torch.long))
    with pytest.raises(TypeError, match="sde"):
        decode(gs, "vp", x)
    with pytest.raises(TypeError, match="score_fn"):
        encode("not a function", gs.sde, x)
    with pytest.raises(ValueError, match="n must be >= 2"):
        interpolate(gs, gs.sde, x, x, 1)
    with pytest.raises(ValueError, match="same shape"):
        interpolate(gs, gs.sde, x, torch.zeros(2, D, dtype=torch.float64), 3)
