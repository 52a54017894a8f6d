"""Conditioning for every sampler: score wrappers (guidance) and projections (inpainting, colorization)."""

from .base import Compose, Condition

__all__ = ["Condition", "Compose"]
