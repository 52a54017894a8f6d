"""Predictors of the PC sampler (Song et al. 2021, Algorithms 2-3 and appendix E/F).

Every predictor is ``update(x, t, t_next, score_fn, sde, generator) -> (x, x_mean)``: one reverse step from ``t`` down
to ``t_next`` (both shape ``(B,)``), returning the noisy sample and its noise-free mean. Per-SDE behaviour comes from
the SDE's ``sde``/``transition_coef``/``ancestral_std``, never from isinstance checks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .sde import SDE
from .utils import append_dims, randn_like

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
