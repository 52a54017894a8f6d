"""Conditioning for every sampler: score wrappers (guidance) and projections (inpainting, colorization)."""

from .base import Compose, Condition
from .colorize import DECOUPLE, Colorize, gray_chroma_to_rgb, rgb_to_gray_chroma
from .guidance import ClassifierGuidance, classifier_guidance
from .inpaint import Inpaint, Replacement

__all__ = [
    "Condition", "Compose", "Replacement", "Inpaint", "Colorize", "DECOUPLE", "rgb_to_gray_chroma",
    "gray_chroma_to_rgb", "ClassifierGuidance", "classifier_guidance",
]
