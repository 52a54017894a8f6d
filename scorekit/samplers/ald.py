"""NCSN annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) as a sampler of its own.

``steps`` noise levels from ``T`` down to ``eps`` (:func:`~scorekit.samplers.grids.level_grid`; NCSN's geometric
sigmas for VE), ``n_corrector_steps`` Langevin steps at each with the step ``step_size * std_i^2 / std_L^2``.
"""

from __future__ import annotations

import torch

from ..utils import append_dims, randn_like
from .base import RunContext
from .grids import Grid
from .options import ALDOptions


def ald_loop(x: torch.Tensor, ctx: RunContext, grid: Grid, opts: ALDOptions) -> torch.Tensor:
    """NCSN annealed Langevin dynamics (Algorithm 1): ``x <- x + alpha_i / 2 score + sqrt(alpha_i) z`` with
    ``alpha_i = step_size sigma_i^2 / sigma_L^2``; step ``i`` ends at level ``i`` (its callback's ``t``). Returns the
    last step's noise-free mean with ``ctx.denoise``."""
    score_fn, condition, generator = ctx.score_fn, ctx.condition, ctx.generator
    levels = ctx.times
    std_last = ctx.sde.marginal_coef(levels[-1:])[1]
    tb = ctx.batch_times(x.shape[0])
    alphas = opts.step_size * (ctx.sde.marginal_coef(tb)[1] / std_last) ** 2  # (steps, B), once per run
    x_mean = x
    for i in ctx.iterate(grid.steps + 1):
        t, alpha = tb[i], alphas[i]
        for _ in range(opts.n_corrector_steps):
            x_mean = x + 0.5 * append_dims(alpha, x.ndim) * score_fn(x, t)  # Langevin move at level i
            x = condition.project(x_mean + append_dims(alpha.sqrt(), x.ndim) * randn_like(x, generator), t, generator)
        if ctx.denoise and i == grid.steps:  # the callback sees (and may replace) what is returned
            return ctx.end_step(i, condition.project_mean(x_mean, t), levels[i])
        x = ctx.end_step(i, x, levels[i])
    return x
