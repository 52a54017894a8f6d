"""The diffusers-style sampling loop over a scorekit scheduler (``set_timesteps``, model, ``step_correct``, ``step``).

This is what ``DDPMPipeline``, ``DDIMPipeline`` and ``ScoreSdeVePipeline`` do with their schedulers; with
``discretization="discrete"`` it reproduces them step for step on the same weights and the same noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ..utils import check_finite, check_positive


def scheduler_loop(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    x: torch.Tensor,
    num_inference_steps: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> tuple[torch.Tensor, int]:
    """Run ``scheduler`` from ``x = x_T`` ``(B, ...)``: per timestep ``n_corrector_steps`` corrector steps (corrector
    before predictor, as Algorithm 1 and ``ScoreSdeVePipeline``), then one ``step``.

    Args:
        model: ``model(x, model_timestep) -> raw output`` shaped like ``x``.
        scheduler: a :class:`ScoreSDEPCScheduler` or :class:`ScoreSDEODEScheduler`.
        x: the starting sample at ``T``.
        num_inference_steps: steps for ``scheduler.set_timesteps``.
        generator: random generator(s) for the step noise.
        progress: wraps the timestep iterable (e.g. a pipeline's progress bar).

    Returns:
        ``(x0, nfe)``: the noise-free mean of the last step ``(B, ...)`` and the number of model calls.
    """
    check_positive("num_inference_steps", num_inference_steps, integer=True)
    scheduler.set_timesteps(num_inference_steps, device=x.device)
    n_correct = 0
    if scheduler.config.get("corrector", "none") != "none":
        n_correct = scheduler.config.n_corrector_steps
    nfe, x_mean = 0, x

    def call(x_, t_):
        out = model(x_, scheduler.model_timestep(t_, x_))
        return check_finite("model", getattr(out, "sample", out).to(x_.dtype), t_)

    for t in progress(scheduler.timesteps) if progress is not None else scheduler.timesteps:
        for _ in range(n_correct):
            x = scheduler.step_correct(call(x, t), t, x, generator=generator).prev_sample
        out = scheduler.step(call(x, t), t, x, generator=generator)
        x, x_mean = out.prev_sample, out.prev_sample_mean
        nfe += n_correct + 1
    return x_mean, nfe
