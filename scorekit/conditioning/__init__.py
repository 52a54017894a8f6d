"""Conditioning for every sampler: score wrappers (guidance), projections (inpainting, colorization), and the linear
operators of inverse problems (``y = A x + sigma_y e``)."""

from .base import Compose, Condition
from .blur_kernels import box_kernel, gaussian_kernel
from .colorize import DECOUPLE, Colorize, gray_chroma_to_rgb, rgb_to_gray_chroma
from .guidance import ClassifierGuidance, classifier_guidance
from .inpaint import Inpaint
from .inverse import DDRM, TDS, InverseProblem, MCGdiff, ParticleProblem
from .operators import SVD, Blur, Downsample, Gray, LinearOperator, Mask, Matrix, Observation
from .posterior_guidance import DPS, PiGDM
from .replacement import Replacement

__all__ = [
    "Condition", "Compose", "Inpaint", "Colorize", "DECOUPLE", "rgb_to_gray_chroma",
    "gray_chroma_to_rgb", "ClassifierGuidance", "classifier_guidance",
    "InverseProblem", "Replacement", "DDRM", "DPS", "PiGDM", "ParticleProblem", "TDS", "MCGdiff",
    "LinearOperator", "SVD", "Observation", "Mask", "Gray", "Downsample", "Blur", "Matrix",
    "gaussian_kernel", "box_kernel",
]
