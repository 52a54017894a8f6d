"""The run context every sampler loop gets: counted score, finiteness guard, conditioning hooks, progress, callback.

A loop is a plain function ``loop(x, ctx, grid, opts) -> x`` (k-diffusion's shape):

- ``x``: the starting state ``(B, ...)`` (``(B * K, ...)`` particles for a particle sampler), in the compute dtype;
- ``ctx``: a :class:`RunContext`: ``ctx.score_fn(x, t)`` (``t`` of shape ``(B,)``) counts every evaluation (NFE),
  calls the model in its own dtype, watches its finiteness and includes the condition's score wrapper (guidance);
  ``ctx.condition`` holds the projection hooks; ``ctx.iterate(n)`` wraps the step range in the progress bar;
  ``ctx.end_step(i, x)`` ends step ``i`` (finiteness record, then the user's callback, whose returned tensor the
  loop must use); ``ctx.generator`` makes every draw;
- ``grid``: the :class:`~scorekit.samplers.grids.Grid` built by ``sample()`` before the loop (``None`` for an
  adaptive sampler), whose times run from the grid's first time down to ``eps``;
- ``opts``: the sampler's validated :class:`~scorekit.samplers.options.SamplerOptions`.

The numeric policy (:mod:`scorekit.numerics`) is the caller's job: ``x`` and the times arrive in the compute dtype,
``ctx.score_fn`` casts for the model, and the grid's coefficients are float64 host tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from ..conditioning.base import Condition
from ..numerics import FiniteGuard, apply_callback
from ..sde import SDE
from ..utils import batch_time
from .grids import Grid
from .kernels import tweedie_x0


@dataclass
class RunContext:
    """Everything a loop needs besides ``x``, its grid and its options (see the module docstring).

    Args:
        score_fn: the counted, guarded, condition-wrapped ``score_fn(x, t)``.
        sde: the SDE.
        eps: the final time.
        generator: a ``torch.Generator``, a list of them (one per row of ``x``) or ``None``.
        condition: the :class:`~scorekit.conditioning.Condition` whose hooks the loop calls.
        denoise: finish with the noise-free output (see each sampler).
        guard: the :class:`~scorekit.numerics.FiniteGuard` watching ``score_fn``.
        callback: the user's ``callback(i, t, x)`` or ``None``.
        progress: ``True`` for a tqdm bar, or a callable wrapping the step range.
        times: the grid times in the compute dtype on the state's device (``(steps + 1,)``), or ``None``.
        callback_steps: the callback calls made so far (``info["callback_steps"]``).
        particle_info: what a particle sampler's loop reports (its ESS trace, resampling steps, log-weights):
            ``sample()`` returns it in ``info["particles"]`` beside the particle count and the NFE per particle and
            per returned sample.
    """

    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    sde: SDE
    eps: float
    generator: torch.Generator | list[torch.Generator] | None
    condition: Condition
    denoise: bool
    guard: FiniteGuard
    callback: Callable | None = None
    progress: bool | Callable[[Iterable], Iterable] = False
    times: torch.Tensor | None = None
    callback_steps: int = 0
    particle_info: dict = field(default_factory=dict)

    def iterate(self, n: int) -> Iterable[int]:
        """``range(n)`` through the progress bar."""
        if callable(self.progress):
            return self.progress(range(n))
        if self.progress:
            from tqdm.auto import tqdm

            return tqdm(range(n))
        return range(n)

    def end_step(self, i: int, x: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
        """End step ``i`` at time ``t`` (default ``times[i + 1]``): record whether ``x`` is finite, then apply the
        callback rule (:func:`~scorekit.numerics.apply_callback`); returns the tensor the next step uses. The
        callback's ``t`` is a 0-dim tensor in the compute dtype for every sampler."""
        if t is None:
            t = self.times[i + 1]
        elif not isinstance(t, torch.Tensor):
            self.guard.at_time(i, float(t))
            t = torch.tensor(t, dtype=x.dtype, device=x.device)
        self.guard.end_step(x, i)
        self.callback_steps += self.callback is not None
        return apply_callback(self.callback, i, t, x)

    def fraction_progress(self) -> FractionProgress:
        """A progress bar for a solve that chooses its own steps: it counts percent of the way to the end."""
        return FractionProgress(self.iterate(100))

    def batch_times(self, batch: int) -> torch.Tensor:
        """``(steps + 1, B)`` times built once per run: row ``i`` is a view, no per-step tensor construction."""
        return self.times[:, None].expand(-1, batch).contiguous()

    def x0(self, x: torch.Tensor, t: float | torch.Tensor, alpha: float, std: float) -> torch.Tensor:
        """Tweedie's data prediction ``(x + std^2 score(x, t)) / alpha`` at a grid time (``alpha``, ``std``
        floats; ``t`` a float or the step's ``(B,)`` times), the ``D(x; sigma)`` of DPM-Solver++ and EDM."""
        return tweedie_x0(x, self.score_fn(x, batch_time(t, x.shape[0], x)), alpha, std)

    def project_fn(self, stochastic: bool) -> Callable:
        """The replacement hook: ``project`` after stochastic steps, the smooth ``project_ode`` for deterministic
        ones."""
        if stochastic:
            return self.condition.project
        return lambda x, t, generator: self.condition.project_ode(x, t)

    def finish(self, x: torch.Tensor, grid: Grid, project: Callable) -> torch.Tensor:
        """Project at ``eps`` and, with ``denoise``, take the step to ``sigma = 0``: ``x0(x, eps)`` (one NFE)."""
        t_end = batch_time(float(grid.t[-1]), x.shape[0], x)
        x = project(x, t_end, self.generator)
        return self.x0(x, t_end, float(grid.alpha[-1]), float(grid.std[-1])) if self.denoise else x



class FractionProgress:
    """Progress of an adaptive solve as percent of the way (in time, or in lambda) from its start to its end."""

    def __init__(self, ticks: Iterable[int]):
        self.it, self.done = iter(ticks), 0

    def advance(self, fraction: float) -> None:
        """Move the bar to ``fraction`` in [0, 1] of the way (never backwards)."""
        for _ in range(min(int(100 * fraction), 100) - self.done):
            next(self.it, None)
            self.done += 1

    def close(self) -> None:
        for _ in self.it:
            pass
