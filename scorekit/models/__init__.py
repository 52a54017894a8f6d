"""Models scorekit defines itself (score networks come from diffusers' ``UNet2DModel``), and the shipped
checkpoints' short names (``"scorekit/digits"``, ``"scorekit/photos"``)."""

from .shipped import SHIPPED_MODELS, is_shipped_name, shipped_model_path
from .time_classifier import TimeClassifierModel, TimeClassifierOutput, classifier_log_prob_fn

__all__ = [
    "TimeClassifierModel",
    "TimeClassifierOutput",
    "classifier_log_prob_fn",
    "SHIPPED_MODELS",
    "is_shipped_name",
    "shipped_model_path",
]
