"""The hook interface every sampler calls, so conditioning never changes a solver (dpm-solver's wrapper idea)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..sde import SDE


class Condition:
    """A condition on the sample. Samplers call, in order:

    1. ``bind(sde, x_T, generator)`` once before sampling (validate shapes, draw any fixed noise);
    2. ``wrap_score(score_fn)`` once, to steer the score (classifier guidance);
    3. ``project(x, t, generator)`` after every stochastic predictor / corrector / DDIM step (replacement method),
       and ``project_mean(x_mean, t)`` on the step's noise-free mean;
    4. ``project_ode(x, t)`` on every state a deterministic ODE solver evaluates (a smooth observation path);
    5. ``finalize(x)`` on the returned sample (e.g. known pixels equal the observation exactly).

    Every hook defaults to the identity.
    """

    def bind(self, sde: SDE, x_T: torch.Tensor, generator: torch.Generator | None) -> None:
        pass

    def wrap_score(self, score_fn: Callable) -> Callable:
        return score_fn

    def project(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x

    def project_mean(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x

    def project_ode(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x

    def finalize(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Compose(Condition):
    """Apply several conditions in sequence (e.g. class guidance plus inpainting)."""

    def __init__(self, conditions: Sequence[Condition]):
        for i, c in enumerate(conditions):
            if not isinstance(c, Condition):
                raise TypeError(f"conditions[{i}] must be a scorekit Condition, got {type(c).__name__}")
        self.conditions = list(conditions)

    def bind(self, sde, x_T, generator):
        for c in self.conditions:
            c.bind(sde, x_T, generator)

    def wrap_score(self, score_fn):
        for c in self.conditions:
            score_fn = c.wrap_score(score_fn)
        return score_fn

    def project(self, x, t, generator):
        for c in self.conditions:
            x = c.project(x, t, generator)
        return x

    def project_mean(self, x, t):
        for c in self.conditions:
            x = c.project_mean(x, t)
        return x

    def project_ode(self, x, t):
        for c in self.conditions:
            x = c.project_ode(x, t)
        return x

    def finalize(self, x):
        for c in self.conditions:
            x = c.finalize(x)
        return x


def find_condition(condition: Condition, kind: type) -> Condition | None:
    """The one ``kind`` condition in ``condition`` (itself or inside a :class:`Compose`), or ``None``."""
    found = [c for c in (condition.conditions if isinstance(condition, Compose) else [condition])
             if isinstance(c, kind)]
    if len(found) > 1:
        raise ValueError(f"condition holds {len(found)} {kind.__name__} conditions; give one")
    return found[0] if found else None


def refuse_inference_mode(method: str) -> None:
    """A RuntimeError, before any network call, for a method that takes gradients through a network under
    ``torch.inference_mode()`` (which a local ``torch.enable_grad()`` cannot undo, unlike ``torch.no_grad()``)."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{method} takes gradients through the score network, which torch.inference_mode() "
                           f"forbids; run it under torch.no_grad() instead")
