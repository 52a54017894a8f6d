"""Pieces every few-step sampler shares: the working dtype, the data prediction, the callback, the order schedule."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..utils import batch_time


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the solver state lives in: float32 for half-precision models, else the model's own (DESIGN §6)."""
    return torch.promote_types(dtype, torch.float32)


class DataPrediction:
    """``x0(x, t) = (x + std(t)^2 score(x, t)) / alpha(t)`` (Tweedie), the data prediction of DPM-Solver++.

    The score is evaluated in the model's ``dtype`` and its output cast to the solver's working dtype; ``t`` is
    passed as a ``(B,)`` tensor in the working dtype (float32 at least), ``alpha`` and ``std`` as Python floats.
    """

    def __init__(self, score_fn: Callable, model_dtype: torch.dtype):
        self.score_fn, self.model_dtype = score_fn, model_dtype

    def __call__(self, x: torch.Tensor, t: float, alpha: float, std: float) -> torch.Tensor:
        score = self.score_fn(x.to(self.model_dtype), batch_time(t, x.shape[0], x)).to(x.dtype)
        return (x + std**2 * score) / alpha


def call_back(i: int, t: float, x: torch.Tensor, callback, model_dtype: torch.dtype) -> torch.Tensor:
    """Run the step callback on ``x`` in the model dtype; a returned tensor replaces the state (cast back)."""
    if callback is None:
        return x
    from ..sampling import _after_step  # the shared callback convention (imported late: sampling imports us)

    shown = x.to(model_dtype)
    out = _after_step(i, torch.tensor(t, dtype=torch.float32), shown, callback)
    return x if out is shown else out.to(x.dtype)


def iterate(n: int, progress):
    from ..sampling import _iterate

    return _iterate(n, progress)


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
