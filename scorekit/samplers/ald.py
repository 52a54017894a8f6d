"""NCSN annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) as a sampler of its own."""

from __future__ import annotations

import torch

from ..numerics import apply_callback
from ..utils import append_dims, randn_like
from .base import batch_grid, iterate


def ald_sampler(x, *, score_fn, sde, eps, generator, condition, progress, callback, steps, n_corrector_steps,
                step_size, denoise):
    """NCSN annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): step ``eps sigma_i^2 / sigma_L^2``."""
    levels = torch.linspace(sde.T, eps, steps, dtype=torch.float64).to(dtype=x.dtype, device=x.device)
    std_last = sde.marginal_coef(levels[-1:])[1]
    tb = batch_grid(levels, x.shape[0])
    alphas = step_size * (sde.marginal_coef(tb)[1] / std_last) ** 2  # (steps, B), once per run
    x_mean = x
    for i in iterate(steps, progress):
        t, alpha = tb[i], alphas[i]
        for _ in range(n_corrector_steps):
            # x <- x + alpha/2 * score + sqrt(alpha) z
            x_mean = x + 0.5 * append_dims(alpha, x.ndim) * score_fn(x, t)
            x = condition.project(x_mean + append_dims(alpha.sqrt(), x.ndim) * randn_like(x, generator), t, generator)
        if denoise and i == steps - 1:  # the callback sees (and may replace) what is returned
            return apply_callback(callback, i, levels[i], condition.project_mean(x_mean, t))
        x = apply_callback(callback, i, levels[i], x)
    return x
