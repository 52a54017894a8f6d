"""Colorization: the replacement method in the orthogonal gray/chroma basis of RGB (Song et al. 2021, App. I.2).

Per pixel, the RGB vector ``x = (r, g, b)`` (channel dim 1) is rotated by the orthogonal matrix :data:`DECOUPLE`
whose first row is ``(1, 1, 1) / sqrt(3)``: ``u = DECOUPLE @ x``. The first coordinate is the gray one,
``u_0 = (r + g + b) / sqrt(3) = sqrt(3) * gray`` with ``gray = mean(r, g, b)``; the other two carry the chroma. A gray
image therefore observes ``u_0 = sqrt(3) * gray`` exactly, and since the rotation is orthogonal the perturbed
``u_0`` of ``x_t`` is ``alpha(t) u_0 + std(t) z`` with white ``z``: inpainting in this basis is colorization.
"""

from __future__ import annotations

import torch

from .inpaint import as_tensor
from .linear import Observation
from .operators import DECOUPLE, Gray, gray_chroma_to_rgb, rgb_to_gray_chroma  # noqa: F401  (re-exported)
from .replacement import Replacement


class Colorize(Replacement):
    """Colorization: generate RGB samples whose channel mean equals ``gray`` (replacement in the gray/chroma basis).

    :class:`~scorekit.conditioning.replacement.Replacement` over the :class:`~scorekit.conditioning.operators.Gray`
    operator, whose SVD is the rotation :data:`DECOUPLE` per pixel.

    Args:
        gray: ``(B or 1, 1, *spatial)`` gray image, defined as the mean of the R, G, B channels in the model's data
            scale (for an RGB image pass ``image.mean(1, keepdim=True)``). The samples must have shape
            ``(B, 3, *spatial)``; at the end ``x.mean(1) == gray`` up to rounding.

    Example:
        ``x, info = scorekit.sample(score_fn, sde, (4, 3, 32, 32), condition=scorekit.Colorize(gray))``
    """

    method = "Colorize"

    def __init__(self, gray: torch.Tensor):
        gray = as_tensor("gray", gray)
        if not gray.is_floating_point():
            gray = gray.to(torch.get_default_dtype())
        if gray.ndim < 3 or gray.shape[1] != 1:
            raise ValueError(f"gray must have shape (B or 1, 1, *spatial) with one channel at dim 1 (the mean of R, "
                             f"G, B), got {tuple(gray.shape)}; for an RGB image pass image.mean(1, keepdim=True)")
        if not torch.isfinite(gray).all():
            raise ValueError("gray has NaN or inf values")
        super().__init__(None)
        self.gray = gray

    def observation_for(self, x_T: torch.Tensor) -> Observation:
        if x_T.ndim != self.gray.ndim or x_T.shape[1] != 3:
            raise ValueError(f"Colorize needs RGB samples of shape (B, 3, {', '.join(map(str, self.gray.shape[2:]))}) "
                             f"(3 channels at dim 1), got shape {tuple(x_T.shape)}")
        if self.gray.shape[2:] != x_T.shape[2:] or self.gray.shape[0] not in (1, x_T.shape[0]):
            raise ValueError(f"gray has shape {tuple(self.gray.shape)} but the samples have shape {tuple(x_T.shape)}; "
                             f"expected (B or 1, 1, {', '.join(map(str, x_T.shape[2:]))}) (is the gray image size "
                             f"the model's sample size?)")
        return Observation(Gray(tuple(x_T.shape[1:])), self.gray)
