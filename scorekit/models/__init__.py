"""Models scorekit defines itself (score networks come from diffusers' ``UNet2DModel``)."""

from .time_classifier import TimeClassifierModel, TimeClassifierOutput, classifier_log_prob_fn

__all__ = ["TimeClassifierModel", "TimeClassifierOutput", "classifier_log_prob_fn"]
