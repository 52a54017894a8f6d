"""Inpainting by the replacement method (Song et al., ICLR 2021, Appendix I.2), for every sampler.

:class:`Inpaint` is :class:`~scorekit.conditioning.replacement.Replacement` over the
:class:`~scorekit.conditioning.operators.Mask` operator (whose SVD is the pixel basis), with the observation built
when the sample shape is known. The known pixels of ``x_t`` are overwritten with a draw of ``alpha(t) y + std(t) z``
after every step (a fresh ``z`` for stochastic samplers, one ``z`` per run for ODE solvers, ``z = 0`` on a step's
noise-free mean) and equal ``y`` exactly at the end; the unknown ones keep the sampler's final denoising step.

The method is an approximation: it scores the unknown part under ``p_t(x_unknown | x_known(t))`` with a noisy known
part instead of the exact ``p_t(x_unknown | y)``. Langevin corrector steps reduce the bias a predictor-only run
shows (see ``benchmarks/conditional.py`` for measured errors against the exact Gaussian conditional).
"""

from __future__ import annotations

import numpy as np
import torch

from .linear import Observation
from .operators import Mask, binary_mask
from .replacement import Replacement


def as_tensor(name: str, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a tensor (or array-like), got {type(value).__name__}") from err


class Inpaint(Replacement):
    """Inpainting: keep the known pixels of ``image`` and generate the rest (replacement method).

    Mask convention (Song et al.'s code): ``mask`` is 1 (True) where the pixel is **known** (kept from ``image``) and
    0 where it is generated. diffusers' inpainting pipelines use the opposite (white = repaint): pass
    ``1 - mask_image`` for such masks.

    Args:
        image: ``(B or 1, *event_shape)`` (or ``event_shape``) observation; its unknown pixels are ignored (they may
            hold NaN placeholders).
        mask: 0/1 or bool, the shape of ``image`` or broadcastable to it (e.g. ``(1, 1, H, W)`` for all channels);
            a leading batch dim of ``B`` gives one mask per sample.

    Example:
        ``x, info = scorekit.sample(score_fn, sde, (4, 3, 32, 32), condition=scorekit.Inpaint(image, mask))``
    """

    method = "Inpaint"

    def __init__(self, image: torch.Tensor, mask: torch.Tensor):
        image = as_tensor("image", image)
        if not image.is_floating_point():
            image = image.to(torch.get_default_dtype())
        mask = binary_mask("mask", mask)
        try:
            np.broadcast_shapes(tuple(image.shape), tuple(mask.shape))
        except ValueError as err:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast against image of shape "
                             f"{tuple(image.shape)}; give a mask of the image's shape or e.g. (1, 1, H, W)") from err
        known = torch.where(mask, image, 0)
        if not torch.isfinite(known).all():
            raise ValueError("image has NaN or inf at known pixels (mask == 1)")
        super().__init__(None)
        self.image, self.mask = image, mask

    def observation_for(self, x_T: torch.Tensor) -> Observation:
        shape, image = tuple(x_T.shape), self.image
        if image.ndim == x_T.ndim - 1:  # an unbatched observation applies to every sample
            image = image[None]
        want = f"(B or 1, {', '.join(map(str, shape[1:]))})"
        if image.ndim != len(shape) or tuple(image.shape[1:]) != shape[1:] or image.shape[0] not in (1, shape[0]):
            raise ValueError(f"image has shape {tuple(image.shape)} but the samples have shape {shape}; expected "
                             f"{want} (is the image size the model's sample size?)")
        try:  # numpy's shape arithmetic: torch.broadcast_shapes imports sympy on first use (seconds)
            ok = np.broadcast_shapes(tuple(self.mask.shape), shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"mask of shape {tuple(self.mask.shape)} does not broadcast to the samples {shape}")
        mask = self.mask.reshape((1,) * (len(shape) - self.mask.ndim) + tuple(self.mask.shape))
        operator = Mask(mask, shape[1:])
        return Observation(operator, torch.where(mask.to(image.device), image, 0))
