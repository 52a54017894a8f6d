"""The predictor-corrector sampler (Song et al. 2021, Algorithm 1): predictors (Algorithms 2-3, appendix E/F),
correctors (Algorithms 4-5) and the PC loop.

Every predictor is ``update(x, t, t_next, score_fn, sde, generator) -> (x, x_mean)``: one reverse step from ``t`` down
to ``t_next`` (both shape ``(B,)``), returning the noisy sample and its noise-free mean. Per-SDE behaviour comes from
the SDE's ``sde``/``transition_coef``/``ancestral_std``, never from isinstance checks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from ..numerics import apply_callback
from ..sde import SDE
from ..utils import append_dims, batch_norm_mean, check_choice, randn_like
from .base import batch_grid, iterate
from .grids import time_grid

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def reverse_drift(x: torch.Tensor, t: torch.Tensor, score_fn: ScoreFn, sde: SDE, probability_flow: bool = False):
    """Drift and diffusion of the reverse-time SDE (eq. 6), or of the probability-flow ODE (eq. 13)."""
    f, g = sde.sde(x, t)
    weight = 0.5 if probability_flow else 1.0
    drift = f - append_dims(weight * g**2, x.ndim) * score_fn(x, t)
    return drift, torch.zeros_like(g) if probability_flow else g


def euler_maruyama(x, t, t_next, score_fn, sde, generator=None, probability_flow: bool = False):
    """Euler-Maruyama step of the reverse SDE (eq. 6); with ``probability_flow`` an Euler step of eq. 13."""
    drift, g = reverse_drift(x, t, score_fn, sde, probability_flow)
    dt = append_dims(t_next - t, x.ndim)  # negative: time runs backwards
    x_mean = x + drift * dt
    if probability_flow:
        return x_mean, x_mean
    return x_mean + append_dims(g, x.ndim) * (-dt).sqrt() * randn_like(x, generator), x_mean


def reverse_diffusion(x, t, t_next, score_fn, sde, generator=None, probability_flow: bool = False):
    """Reverse diffusion predictor (eq. 46): ``x_{i} = x_{i+1} - f_{i+1} + G G^T score + G z``."""
    f, G = sde.discretize(x, t, t_next)
    weight = 0.5 if probability_flow else 1.0
    x_mean = x - f + append_dims(weight * G**2, x.ndim) * score_fn(x, t)
    if probability_flow:
        return x_mean, x_mean
    return x_mean + append_dims(G, x.ndim) * randn_like(x, generator), x_mean


def ancestral_sampling(x, t, t_next, score_fn, sde, generator=None):
    """Ancestral sampling (eq. 47; DDPM's step for VP): posterior mean ``(x + v score) / r`` plus posterior noise."""
    r, v = sde.transition_coef(t, t_next)
    x_mean = (x + append_dims(v, x.ndim) * score_fn(x, t)) / append_dims(r, x.ndim)
    std = sde.ancestral_std(t, t_next)
    return x_mean + append_dims(std, x.ndim) * randn_like(x, generator), x_mean


def none_predictor(x, t, t_next, score_fn, sde, generator=None):
    """No predictor (corrector-only sampling): costs no score evaluation."""
    return x, x


PREDICTORS: dict[str, Callable] = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral_sampling": ancestral_sampling,
    "none": none_predictor,
}
PREDICTOR_ALIASES = {"euler": "euler_maruyama", "em": "euler_maruyama", "ancestral": "ancestral_sampling"}


# --- correctors (Algorithms 4-5) ---
def _langevin_move(x, grad, step, z):
    # x <- x + eps * grad + sqrt(2 eps) z  (Algorithms 4-5, inner loop)
    step = append_dims(step, x.ndim)
    x_mean = x + step * grad
    return x_mean + (2 * step).sqrt() * z, x_mean


def langevin(x, t, score_fn, sde: SDE, generator=None, snr: float = 0.16, n_steps: int = 1):
    """Langevin corrector (Algorithm 4): step ``eps = 2 alpha (snr ||z|| / ||score||)^2``, batch-mean norms.

    A score that is exactly zero (``||score|| = 0``) gives a zero step (``x`` unchanged), not an infinite one.
    """
    alpha = sde.langevin_alpha(t)
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        z = randn_like(x, generator)
        grad_norm = batch_norm_mean(grad)
        # ||z|| / ||score||, with 0 where the score vanishes (a zero step); computed without a host sync
        ratio = batch_norm_mean(z) / torch.where(grad_norm > 0, grad_norm, torch.ones_like(grad_norm))
        step = 2 * alpha * (snr * torch.where(grad_norm > 0, ratio, torch.zeros_like(ratio))) ** 2
        x, x_mean = _langevin_move(x, grad, step, z)
    return x, x_mean


def annealed_langevin(x, t, score_fn, sde: SDE, generator=None, snr: float = 0.16, n_steps: int = 1):
    """Annealed Langevin corrector (Algorithm 5's NCSN variant): step ``eps = 2 alpha (snr * std(t))^2``."""
    alpha = sde.langevin_alpha(t)
    _, std = sde.marginal_coef(t)
    step = 2 * alpha * (snr * std) ** 2
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        x, x_mean = _langevin_move(x, grad, step, randn_like(x, generator))
    return x, x_mean


def none_corrector(x, t, score_fn, sde, generator=None, snr: float = 0.16, n_steps: int = 1):
    """No corrector: costs no score evaluation."""
    return x, x


CORRECTORS: dict[str, Callable] = {"langevin": langevin, "ald": annealed_langevin, "none": none_corrector}
CORRECTOR_ALIASES = {"annealed_langevin": "ald"}


def resolve_predictor(name: str) -> Callable:
    name = PREDICTOR_ALIASES.get(name, name)
    check_choice("predictor", name, list(PREDICTORS) + list(PREDICTOR_ALIASES))
    return PREDICTORS[name]


def resolve_corrector(name: str) -> Callable:
    name = CORRECTOR_ALIASES.get(name, name)
    check_choice("corrector", name, list(CORRECTORS) + list(CORRECTOR_ALIASES))
    return CORRECTORS[name]


def pc_sampler(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, predictor, corrector, snr,
               n_corrector_steps, probability_flow, denoise):
    """Predictor-corrector sampling (Algorithm 1): corrector at t_i, then predictor t_i -> t_{i+1}."""
    predictor_fn = resolve_predictor(predictor)
    corrector_fn = resolve_corrector(corrector)
    if probability_flow:
        predictor_fn = partial(predictor_fn, probability_flow=True)
    ts = time_grid(sde, steps, eps, x.dtype, x.device)
    tb = batch_grid(ts, x.shape[0])
    x_mean = x
    for i in iterate(steps, progress):
        t, t_next = tb[i], tb[i + 1]
        for _ in range(n_corrector_steps):  # replacement after every Langevin step, not only the last
            x, x_mean = corrector_fn(x, t, score_fn, sde, generator, snr=snr, n_steps=1)
            x = condition.project(x, t, generator)
        x, x_pred_mean = predictor_fn(x, t, t_next, score_fn, sde, generator)
        x_mean = x_mean if predictor_fn is none_predictor else x_pred_mean  # corrector-only: keep Langevin's mean
        x, x_mean = condition.project(x, t_next, generator), condition.project_mean(x_mean, t_next)
        if denoise and i == steps - 1:  # the callback sees (and may replace) what is returned
            x_mean = apply_callback(callback, i, ts[i + 1], x_mean)
        else:
            x = apply_callback(callback, i, ts[i + 1], x)
    return x_mean if denoise else x
