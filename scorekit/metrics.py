"""Distances between sample sets, for benchmarks and the demo (not for training)."""

from __future__ import annotations

import torch


def psnr(x: torch.Tensor, truth: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (peak 1): ``-10 log10(mean((x - truth)^2))``, the squared
    error pooled over every element (``truth`` broadcasts, e.g. ``(n, 1, C, H, W)`` against ``k`` samples each: the
    expected PSNR of one sample)."""
    return float(-10 * torch.log10(((x.float() - truth.float()) ** 2).mean()))


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, num_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced Wasserstein-2 distance between two equally sized sample sets ``(n, ...)``.

    ``SW2^2 = E_theta[W2^2(theta^T x, theta^T y)]`` over directions uniform on the sphere; each 1-D ``W2^2`` is the
    mean squared difference of the sorted projections (matching quantiles).
    """
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.reshape(x.shape[0], -1).double(), y.reshape(y.shape[0], -1).double()
    theta = torch.randn(x.shape[1], num_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ theta, dim=0)
    py, _ = torch.sort(y @ theta, dim=0)
    return float(((px - py) ** 2).mean().sqrt())
