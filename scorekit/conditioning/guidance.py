"""Classifier guidance (Song et al. 2021, §5, eq. 14): ``grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x)``.

With a scale ``w`` the guided score is ``score(x, t) + w * grad_x log p_t(y | x)`` (``w = 1`` is the paper's
conditional score; ``w > 1`` sharpens, as in Dhariwal & Nichol 2021). ``grad_x log p_t(y | x)`` comes from a
noise-conditional classifier by autograd under ``torch.enable_grad()``, so it works inside no-grad sampling loops and
pipelines.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch

from ..sde import SDE
from ..utils import check_finite
from .base import Condition, refuse_inference_mode

LogProbFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_takes_x_and_t(name: str, fn: Callable) -> None:
    """Raise a TypeError naming ``name`` when ``fn`` cannot be called as ``fn(x, t)`` (e.g. a classifier without t)."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable as {name}(x, t), got {type(fn).__name__}")
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # builtins without a signature: checked when first called
        return
    try:
        sig.bind(None, None)
    except TypeError as err:
        raise TypeError(f"{name} must accept (x, t) -- the noisy sample and its time -- but has signature "
                        f"{sig}; a classifier must be noise-conditional") from err


def as_labels(labels, batch_size: int | None = None, num_classes: int | None = None) -> torch.Tensor:
    """Validate class labels: an int or an integer tensor/sequence of length 1 or ``batch_size``; returns ``(B,)``."""
    if isinstance(labels, (bool, float)):
        raise TypeError(f"labels must be integers (an int or an integer tensor), got {labels!r}")
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integers (an int or an integer tensor), got dtype {labels.dtype}")
    labels = labels.reshape(-1).long()
    if len(labels) == 0:
        raise ValueError("labels must not be empty")
    if batch_size is not None:
        if len(labels) not in (1, batch_size):
            raise ValueError(f"labels has length {len(labels)} but the batch has {batch_size} samples; "
                             f"give one label per sample or a single label")
        labels = labels.expand(batch_size)
    bad = (labels < 0) | (labels >= num_classes) if num_classes is not None else labels < 0
    if bad.any():
        accepted = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise ValueError(f"labels must be in {accepted}, got {labels[bad][:3].tolist()}")
    return labels


def class_log_prob_grad(log_prob_fn: LogProbFn, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor):
    """``grad_x log p_t(y | x)`` (shape of ``x``) for per-sample ``labels`` ``(B,)``, via autograd.

    ``log_prob_fn(x, t) -> (B, K)`` may return logits or log-probabilities: ``log_softmax`` maps both to
    ``log p_t(. | x)`` (it is the identity on normalized log-probabilities).
    """
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        out = log_prob_fn(x_in, t)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"log_prob_fn must return (B, K) = ({x.shape[0]}, num_classes) log-probabilities or "
                             f"logits, got {got}")
        labels = as_labels(labels, x.shape[0], out.shape[1]).to(out.device)
        if not out.requires_grad:
            raise ValueError("log_prob_fn output does not depend differentiably on x (no autograd graph): guidance "
                             "needs a differentiable classifier; do not detach or wrap it in torch.no_grad()")
        log_p = torch.log_softmax(out, dim=-1).gather(1, labels[:, None])
        (grad,) = torch.autograd.grad(log_p.sum(), x_in)  # rows are independent: grad of the sum is per-sample
    return check_finite("log_prob_fn gradient", grad.to(x.dtype), t)


def classifier_guidance(score_fn: Callable, log_prob_fn: LogProbFn, labels, scale: float = 1.0) -> Callable:
    """Guided score ``score_fn(x, t) + scale * grad_x log p_t(labels | x)`` (eq. 14 with a guidance scale).

    Args:
        score_fn: unconditional ``score_fn(x, t)``.
        log_prob_fn: noise-conditional classifier ``log_prob_fn(x, t) -> (B, K)`` log-probabilities or logits, ``t``
            the SDE time ``(B,)`` (see :func:`scorekit.models.classifier_log_prob_fn` for a trained classifier).
        labels: the requested class, an int or ``(B,)`` integer tensor.
        scale: guidance scale ``w``; 1 is the exact conditional score when ``log_prob_fn`` is exact.

    Returns:
        ``guided(x, t) -> (B, ...)``, a ``score_fn`` usable by every sampler.
    """
    check_takes_x_and_t("log_prob_fn", log_prob_fn)
    _check_scale(scale)
    labels = as_labels(labels)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return score_fn(x, t) + scale * class_log_prob_grad(log_prob_fn, x, t, labels)

    return guided


class ClassifierGuidance(Condition):
    """Classifier guidance as a :class:`Condition`, so it composes (e.g. class-conditional inpainting).

    ``bind`` checks ``labels`` against the batch and the classifier's number of classes with one classifier call at
    ``t = T`` before sampling starts. ``classifier_calls`` counts the classifier evaluations of the last run (each one
    forward and one backward pass; they are not in ``info["nfe"]``, which counts score evaluations).

    Args:
        log_prob_fn: ``log_prob_fn(x, t) -> (B, K)`` log-probabilities or logits.
        labels: an int or ``(B,)`` integer tensor.
        scale: guidance scale (1 = the paper).
    """

    def __init__(self, log_prob_fn: LogProbFn, labels, scale: float = 1.0):
        check_takes_x_and_t("log_prob_fn", log_prob_fn)
        _check_scale(scale)
        self.log_prob_fn, self.labels, self.scale = log_prob_fn, as_labels(labels), float(scale)
        self._bound_labels, self.classifier_calls = None, 0

    def bind(self, sde: SDE, x_T: torch.Tensor, generator: torch.Generator | None) -> None:
        refuse_inference_mode("classifier guidance")
        t = torch.full((x_T.shape[0],), sde.T, dtype=x_T.dtype, device=x_T.device)
        as_labels(self.labels, x_T.shape[0])  # the length check needs no classifier call: do it first
        with torch.no_grad():
            try:
                out = self.log_prob_fn(x_T, t)
            except TypeError as err:
                raise TypeError(f"log_prob_fn failed when called as log_prob_fn(x, t) with x {tuple(x_T.shape)} and "
                                f"t {tuple(t.shape)}: {err}") from err
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x_T.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"log_prob_fn must return (B, K) = ({x_T.shape[0]}, num_classes), got {got}")
        self._bound_labels = as_labels(self.labels, x_T.shape[0], out.shape[1]).to(x_T.device)
        self.classifier_calls = 0

    def wrap_score(self, score_fn: Callable) -> Callable:
        labels = self.labels if self._bound_labels is None else self._bound_labels
        return classifier_guidance(score_fn, self._counted_log_prob, labels, self.scale)

    def _counted_log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.classifier_calls += 1
        return self.log_prob_fn(x, t)


def _check_scale(scale: float) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number (1 = the paper's conditional score), got {scale!r}")
