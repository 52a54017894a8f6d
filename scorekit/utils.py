"""Small shared helpers: broadcasting, argument checks, NaN detection."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .checks import check_choice, check_count, check_positive  # noqa: F401  (re-exported: the library's validators)


def append_dims(x: torch.Tensor, target_ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to ``x`` (shape ``(B,)``) so it broadcasts against ``target_ndim`` dims."""
    missing = target_ndim - x.ndim
    if missing < 0:
        raise ValueError(f"append_dims: input has {x.ndim} dims, more than the target {target_ndim}")
    return x.reshape(x.shape + (1,) * missing)


def batch_time(t: float | torch.Tensor, batch_size: int, like: torch.Tensor, dtype: torch.dtype | None = None
               ) -> torch.Tensor:
    """Return ``t`` as a float tensor of shape ``(batch_size,)`` on ``like``'s device, in ``dtype`` (default
    ``like``'s)."""
    t = torch.as_tensor(t, dtype=dtype or like.dtype, device=like.device)
    return t.expand(batch_size).clone() if t.ndim == 0 else t


def batch_norm_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the per-sample L2 norm (the norm used by Song et al.'s Langevin step size)."""
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=-1).mean()


def check_finite(name: str, x: torch.Tensor, t: torch.Tensor | float | None = None) -> torch.Tensor:
    """Raise a ValueError when ``x`` holds NaN or inf (e.g. a diverging or broken score model)."""
    if not torch.isfinite(x).all():
        where = "" if t is None else f" at t={float(torch.as_tensor(t).reshape(-1)[0]):.4g}"
        raise ValueError(
            f"{name} returned non-finite values (NaN or inf){where}; check the model, its weights and the data scaling"
        )
    return x


Generator = torch.Generator | list[torch.Generator] | None


def _draw(draw: Callable, shape: tuple[int, ...], generator: Generator, dtype, device) -> torch.Tensor:
    """Draw on the generator's device, then move (diffusers' convention); a list draws row ``i`` from
    ``generator[i]``."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"generator is a list of {len(generator)} generators but the batch size is {shape[0]}")
        return torch.cat([_draw(draw, (1, *shape[1:]), g, dtype, device) for g in generator])
    where = device if generator is None else generator.device
    return draw(shape, generator=generator, dtype=dtype, device=where).to(device)


def randn(shape: tuple[int, ...], generator: Generator, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device`` (drawn on the generator's device; see :func:`_draw`)."""
    return _draw(torch.randn, tuple(shape), generator, dtype, device)


def rand(shape: tuple[int, ...], generator: Generator, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Uniform ``U[0, 1)`` noise of ``shape`` on ``device`` (drawn on the generator's device)."""
    return _draw(torch.rand, tuple(shape), generator, dtype, device)


def rademacher(shape: tuple[int, ...], generator: Generator, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Entries +-1 with probability 1/2 each, of ``shape`` on ``device`` (drawn on the generator's device)."""

    def draw(shape_, generator, dtype, device):
        return torch.randint(0, 2, shape_, generator=generator, device=device).to(dtype) * 2 - 1

    return _draw(draw, tuple(shape), generator, dtype, device)


def randn_like(x: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` (same seed, same bytes on CPU)."""
    return randn(tuple(x.shape), generator, dtype=x.dtype, device=x.device)
