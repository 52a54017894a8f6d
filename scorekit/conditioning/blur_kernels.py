"""Blur kernels for :class:`~scorekit.conditioning.operators.Blur` (deblurring), as float64 tensors that sum to 1."""

from __future__ import annotations

import torch

from ..checks import check_count, check_positive


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """A normalized 2-D Gaussian kernel ``(size, size)`` of standard deviation ``sigma`` pixels, centred on the
    middle tap (``scorekit restore --task deblur`` and the demo's deblurring task: ``sigma = 1``, ``size = 5``)."""
    check_positive("sigma", sigma)
    check_count("size", size)
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(r**2) / (2 * sigma**2))
    return torch.outer(k, k) / k.sum() ** 2


def box_kernel(size: int) -> torch.Tensor:
    """A normalized 2-D box (moving-average) kernel ``(size, size)``."""
    check_count("size", size)
    return torch.full((size, size), 1 / size**2, dtype=torch.float64)
