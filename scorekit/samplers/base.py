"""Pieces every few-step sampler shares: the working dtype, the data prediction, the callback, the order schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ..numerics import FiniteGuard, apply_callback
from ..utils import batch_time


class DataPrediction:
    """``x0(x, t) = (x + std(t)^2 score(x, t)) / alpha(t)`` (Tweedie), the data prediction of DPM-Solver++.

    ``x`` is the solver state in the compute dtype of :mod:`scorekit.numerics` (``sample()`` hands it over so, and its
    counted ``score_fn`` calls the model in the model's dtype and casts back); ``t`` is a float or the step's ``(B,)``
    time tensor in that dtype (passed on as is), ``alpha`` and ``std`` Python floats.
    """

    def __init__(self, score_fn: Callable):
        self.score_fn = score_fn

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor, alpha: float, std: float) -> torch.Tensor:
        return (x + std**2 * self.score_fn(x, batch_time(t, x.shape[0], x))) / alpha


def call_back(i: int, t: float, x: torch.Tensor, callback) -> torch.Tensor:
    """End step ``i`` through ``sample()``'s hook (finiteness record + callback rule); returns what the next step
    uses."""
    return x if callback is None else apply_callback(callback, i, torch.tensor(t, dtype=torch.float32), x)


def iterate(n: int, progress) -> Iterable[int]:
    if callable(progress):
        return progress(range(n))
    if progress:
        from tqdm.auto import tqdm

        return tqdm(range(n))
    return range(n)


def batch_grid(ts: torch.Tensor, batch: int) -> torch.Tensor:
    """``(steps + 1, B)`` times built once per run: ``grid[i]`` is a view, no per-step tensor construction."""
    return ts[:, None].expand(-1, batch).contiguous()


class StepHook:
    """What every sampler loop calls after step ``i`` (as ``callback``): the deferred finiteness record of the step
    (:class:`~scorekit.numerics.FiniteGuard`) and then the user's callback under the one callback rule
    (:func:`~scorekit.numerics.apply_callback`). Returns the tensor the next step (or the output) uses."""

    def __init__(self, guard: FiniteGuard, callback: Callable | None):
        self.guard, self.callback, self.calls = guard, callback, 0

    def __call__(self, i: int, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.guard.end_step(x, i)
        self.calls += self.callback is not None
        return apply_callback(self.callback, i, t, x)


def step_order(order: int, i: int, n_steps: int, denoise: bool, warm_up: bool = True) -> int:
    """Order of step ``i`` of ``n_steps`` solver steps, as diffusers' DPMSolverMultistepScheduler lowers it.

    Warm-up (multistep only): step ``i`` has at most ``i + 1`` data predictions. Counting the final denoising step
    (to ``sigma = 0``) as one more step, a run of fewer than 15 steps takes its last step at order 1 and the one
    before at order <= 2 (``lower_order_final``); with ``denoise`` the last step is the denoising itself.
    """
    total = n_steps + int(denoise)
    k = min(order, i + 1) if warm_up else order
    if i == total - 1 and total < 15:
        k = 1
    elif i == total - 2 and total < 15:
        k = min(k, 2)
    return k


def project_fn(condition, stochastic: bool):
    """The replacement hook: ``project`` after stochastic steps, the smooth ``project_ode`` for deterministic ones."""
    if stochastic:
        return condition.project
    return lambda x, t, generator: condition.project_ode(x, t)
