"""Inpainting by the replacement method (Song et al., ICLR 2021, Appendix I.2), for every sampler.

A linear observation fixes some coordinates ``u_obs = y`` of the sample in an orthonormal basis ``u = P x`` (the
pixel basis for inpainting, the gray/chroma basis for colorization). Since the perturbation kernel is
``N(alpha(t) x_0, std(t)^2 I)`` and ``P`` is orthonormal, the observed coordinates of ``x_t`` are distributed as
``alpha(t) y + std(t) z``. The replacement method overwrites them with such a draw after every step:

- stochastic samplers (PC predictor and corrector steps, DDIM with eta > 0, annealed Langevin): a fresh ``z`` each
  time (``project``); the noise-free mean ``x_mean`` gets the noise-free ``alpha(t) y`` (``project_mean``);
- deterministic ODE solvers (PF-ODE, DDIM with eta = 0): one ``z`` drawn when first needed and kept, so the solver
  sees the smooth path ``alpha(t) y + std(t) z_fixed`` (``project_ode``);
- at the end (``finalize``) the observed coordinates equal ``y`` exactly; the unknown ones keep the sampler's final
  denoising step (PC's noise-free last predictor mean, Tweedie's formula after the ODE / DDIM).

The method is an approximation: it scores the unknown part under ``p_t(x_unknown | x_known(t))`` with a noisy known
part instead of the exact ``p_t(x_unknown | y)``. Langevin corrector steps reduce the bias a predictor-only run
shows (see ``benchmarks/conditional.py`` for measured errors against the exact Gaussian conditional).
"""

from __future__ import annotations

import numpy as np
import torch

from ..sde import SDE
from ..utils import append_dims, randn_like
from .base import Condition


def _as_tensor(name: str, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a tensor (or array-like), got {type(value).__name__}") from err


def _check_binary_mask(name: str, mask) -> torch.Tensor:
    """A 0/1 (or bool) mask as a bool tensor; anything else is a ValueError naming ``name``."""
    mask = _as_tensor(name, mask)
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex() or not ((mask == 0) | (mask == 1)).all():
        bad = mask[(mask != 0) & (mask != 1)].reshape(-1)[:3].tolist()
        raise ValueError(f"{name} must be binary (0/1 or bool), got values such as {bad}")
    return mask == 1


class Replacement(Condition):
    """Fix coordinates ``u[mask] = observation[mask]`` of ``u = to_basis(x)`` by the replacement method.

    Subclasses choose the orthonormal basis (:class:`Inpaint`: pixels; :class:`~scorekit.Colorize`: gray/chroma).

    Args:
        observation: ``(B or 1, *event_shape)`` values in the basis; entries where ``mask`` is False are ignored
            (they may be NaN).
        mask: bool, broadcastable to the observation; True marks an observed coordinate.
    """

    def __init__(self, observation: torch.Tensor, mask: torch.Tensor, name: str = "image"):
        self.name = name
        self.observation, self.mask = observation, mask
        self._sde, self._generator, self._z_ode = None, None, None

    # --- the basis: identity here, overridden by colorization ----------------------------------------------------
    def to_basis(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def from_basis(self, u: torch.Tensor) -> torch.Tensor:
        return u

    # --- hooks ------------------------------------------------------------------------------------------------------
    def bind(self, sde: SDE, x_T: torch.Tensor, generator: torch.Generator | None) -> None:
        obs = self.observation
        if obs.ndim == x_T.ndim - 1:  # an unbatched observation applies to every sample
            obs = obs[None]
        self._check_shapes(obs, tuple(x_T.shape))
        mask = self.mask.to(x_T.device)
        self._mask = mask
        # y in the sampling dtype, zero where unobserved (so NaN placeholders never leak through 0 * NaN)
        self._y = torch.where(mask, obs.to(device=x_T.device, dtype=x_T.dtype), 0).expand(x_T.shape)
        self._sde, self._generator, self._z_ode = sde, generator, None

    def project(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Replace the observed coordinates by a fresh draw of ``alpha(t) y + std(t) z``."""
        return self._replace(x, self._observed(t, randn_like(x, generator)))

    def project_mean(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Replace the observed coordinates of a noise-free mean by ``alpha(t) y``."""
        return self._replace(x, self._observed(t, None))

    def project_ode(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Replace the observed coordinates by the smooth path ``alpha(t) y + std(t) z_fixed``."""
        if self._z_ode is None:
            self._z_ode = randn_like(x, self._generator)
        return self._replace(x, self._observed(t, self._z_ode))

    def finalize(self, x: torch.Tensor) -> torch.Tensor:
        """Observed coordinates equal the observation exactly."""
        return self._replace(x, self._y)

    # --- helpers ----------------------------------------------------------------------------------------------------
    def _observed(self, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        if self._sde is None:
            raise RuntimeError(f"{type(self).__name__} must be bound first: pass it to scorekit.sample(condition=...)")
        alpha, std = self._sde.marginal_coef(t)
        # perturbation kernel of the observed coordinates: N(alpha(t) y, std(t)^2 I) (eqs. 29, 31, 33)
        mean = append_dims(alpha, self._y.ndim) * self._y
        return mean if z is None else mean + append_dims(std, z.ndim) * z

    def _replace(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.from_basis(torch.where(self._mask, target, self.to_basis(x)))

    def _check_shapes(self, obs: torch.Tensor, shape: tuple[int, ...]) -> None:
        want = f"(B or 1, {', '.join(map(str, shape[1:]))})"
        if obs.ndim != len(shape) or tuple(obs.shape[1:]) != shape[1:] or obs.shape[0] not in (1, shape[0]):
            raise ValueError(f"{self.name} has shape {tuple(obs.shape)} but the samples have shape {shape}; "
                             f"expected {want} (is the {self.name} size the model's sample size?)")
        try:  # numpy's shape arithmetic: torch.broadcast_shapes imports sympy on first use (seconds)
            ok = np.broadcast_shapes(tuple(self.mask.shape), shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"mask of shape {tuple(self.mask.shape)} does not broadcast to the samples {shape}")


class Inpaint(Replacement):
    """Inpainting: keep the known pixels of ``image`` and generate the rest (replacement method).

    Mask convention (Song et al.'s code): ``mask`` is 1 (True) where the pixel is **known** (kept from ``image``) and
    0 where it is generated. diffusers' inpainting pipelines use the opposite (white = repaint): pass
    ``1 - mask_image`` for such masks.

    Args:
        image: ``(B or 1, *event_shape)`` (or ``event_shape``) observation; its unknown pixels are ignored.
        mask: 0/1 or bool, the shape of ``image`` or broadcastable to it (e.g. ``(1, 1, H, W)`` for all channels).

    Example:
        ``x, info = scorekit.sample(score_fn, sde, (4, 3, 32, 32), condition=scorekit.Inpaint(image, mask))``
    """

    def __init__(self, image: torch.Tensor, mask: torch.Tensor):
        image = _as_tensor("image", image)
        if not image.is_floating_point():
            image = image.to(torch.get_default_dtype())
        mask = _check_binary_mask("mask", mask)
        try:
            np.broadcast_shapes(tuple(image.shape), tuple(mask.shape))
        except ValueError as err:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast against image of shape "
                             f"{tuple(image.shape)}; give a mask of the image's shape or e.g. (1, 1, H, W)") from err
        known = torch.where(mask, image, 0)
        if not torch.isfinite(known).all():
            raise ValueError("image has NaN or inf at known pixels (mask == 1)")
        super().__init__(image, mask, name="image")
