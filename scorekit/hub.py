"""Model cards and pushing to the Hugging Face Hub for scorekit pipelines, score models and time classifiers.

Public API:

- :func:`make_model_card` builds a ``huggingface_hub.ModelCard`` (metadata via ``ModelCardData``) stating the SDE and
  its parameters, the parameterization, the data range, the conditioning kind, the default sampler and step count,
  the training data and command, measured metrics when given, and a usage snippet that runs;
- :func:`push_to_hub` saves the object (pipelines in the stock diffusers layout where one fits), writes the card as
  ``README.md`` and uploads the folder in one commit.

The trainer's ``--push_to_hub`` calls ``push_to_hub(pipeline, repo_id, training_data=..., training_command=...)``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .samplers.registry import REGISTRY, get_spec


def _kind(obj) -> str:
    if hasattr(obj, "scheduler") and hasattr(obj, "unet"):
        return "pipeline"
    if type(obj).__name__ == "TimeClassifierModel":
        return "classifier"
    if hasattr(obj, "save_pretrained") and hasattr(obj, "config"):
        return "model"
    raise TypeError(f"obj must be a scorekit pipeline, a score model (UNet2DModel) or a TimeClassifierModel, got "
                    f"{type(obj).__name__}")


def _sde_lines(scheduler) -> list[str]:
    if scheduler is None:
        return ["- SDE: not recorded (pass `scheduler=` to describe it)"]
    c, sde = scheduler.config, scheduler.sde
    params = ", ".join(f"{k}={v}" for k, v in sde.config().items())
    return [f"- SDE: `{type(sde).__name__}({params})`",
            f"- parameterization: `{c.prediction_type}` (network fed `{'sigma(t)' if c.prediction_type == 'sigma' else 't * (N - 1)'}`)",  # noqa: E501
            f"- data range: `{list(scheduler.data_range)}`"]


def _sampler(scheduler, steps: int | None) -> tuple[str, int]:
    kwargs = scheduler.sample_kwargs() if scheduler is not None else {"sampler": "pc"}
    sampler = kwargs["sampler"]
    return sampler, steps if steps is not None else get_spec(sampler).default_steps


def _other_samplers(default: str) -> str:
    """Every other registered sampler with its default steps (the registry is the one source)."""
    return ", ".join(f"`{n}` ({s.default_steps})" for n, s in REGISTRY.items() if n != default)


def _settings(scheduler) -> str:
    if scheduler is None:
        return ""
    kwargs = {k: v for k, v in scheduler.sample_kwargs().items() if k != "sampler"}
    return " (" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")" if kwargs else ""


def _usage(kind: str, obj, repo_id: str, sampler: str, steps: int) -> str:
    if kind == "pipeline":
        cls = type(obj).__name__
        conditional = cls == "ScoreSDEClassConditionalPipeline"
        call = "class_labels=[0, 1], guidance_scale=1.0, " if conditional else "batch_size=2, "
        return (f"import torch\nfrom scorekit.pipelines import {cls}\n\n"
                f"pipe = {cls}.from_pretrained(\"{repo_id}\")\n"
                f"images = pipe({call}num_inference_steps={steps}, sampler=\"{sampler}\",\n"
                f"              generator=torch.Generator().manual_seed(0)).images\n")
    if kind == "classifier":
        return (f"from scorekit.models import TimeClassifierModel\n\n"
                f"classifier = TimeClassifierModel.from_pretrained(\"{repo_id}\")\n"
                f"# logits = classifier(x_t, t).logits\n")
    return (f"from diffusers import {type(obj).__name__}\n\n"
            f"model = {type(obj).__name__}.from_pretrained(\"{repo_id}\")  # wrap with scorekit.model_score_fn\n")


def make_model_card(
    obj,
    repo_id: str,
    *,
    scheduler=None,
    num_inference_steps: int | None = None,
    training_data: str | None = None,
    training_command: str | None = None,
    metrics: dict[str, float] | None = None,
    license: str = "apache-2.0",
    description: str | None = None,
):
    """Build the model card of a scorekit pipeline, score model or time classifier.

    Args:
        obj: a scorekit pipeline, a score network (``UNet2DModel``) or a ``TimeClassifierModel``.
        repo_id: the Hub id the usage snippet loads.
        scheduler: the scorekit scheduler describing a bare model's SDE (a pipeline's own is used otherwise).
        num_inference_steps: the recommended step count (default: 1000 for PC, 100 for ODE / DDIM / ALD).
        training_data: dataset name or description (a Hub dataset id also goes into the metadata).
        training_command: the command that trained it.
        metrics: measured figures, e.g. ``{"bits_per_dim": 3.4, "fid": 12.1}``.
        license: SPDX id for the metadata.
        description: a free-text paragraph under the title.

    Returns:
        A ``huggingface_hub.ModelCard`` (``str(card)`` is the README.md text).
    """
    from huggingface_hub import ModelCard, ModelCardData

    kind = _kind(obj)
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id must be 'user/name', got {repo_id!r}")
    scheduler = obj.scheduler if kind == "pipeline" else scheduler
    sampler, steps = _sampler(scheduler, num_inference_steps)
    conditioning = {"ScoreSDEClassConditionalPipeline": "class labels (classifier guidance)",
                    "ScoreSDEInpaintPipeline": "inpainting (replacement method)",
                    "ScoreSDEColorizationPipeline": "colorization (replacement in the gray/chroma basis)"}
    cond = "noise-conditional classifier p_t(y | x_t) for guidance" if kind == "classifier" else (
        conditioning.get(type(obj).__name__, "unconditional"))
    tags = ["scorekit", "diffusers", "score-sde", f"scorekit-{kind}"]
    data = ModelCardData(license=license, library_name="scorekit", tags=tags, metrics=sorted(metrics or {}) or None,
                         datasets=[training_data] if training_data and _is_hub_id(training_data) else None,
                         pipeline_tag="unconditional-image-generation" if kind != "classifier" else None)
    lines = [f"# {repo_id.split('/')[1]}", "", description or f"A score-based SDE {kind} trained with scorekit "
             "(Song et al., *Score-Based Generative Modeling through SDEs*, ICLR 2021).", "", "## Model", "",
             f"- class: `{type(obj).__name__}`", *_sde_lines(scheduler), f"- conditioning: {cond}",
             f"- default sampler: `{sampler}` with {steps} steps{_settings(scheduler)}",
             f"- other samplers (`sampler=`, default steps): {_other_samplers(sampler)}", "", "## Usage", "",
             "```python", _usage(kind, obj, repo_id, sampler, steps).rstrip(), "```", "", "## Training", "",
             f"- data: {training_data or 'not recorded'}",
             f"- command: `{training_command}`" if training_command else "- command: not recorded", ""]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|",
                  *[f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items())], ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and " " not in name and not os.path.exists(name)


def push_to_hub(
    obj,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload with scorekit",
    create_pr: bool = False,
    **card_kwargs: Any,
):
    """Save ``obj``, write its model card (``README.md``) and upload both in one commit to ``repo_id``.

    Pipelines are saved in the stock diffusers layout where one fits (``ScoreSDEPipeline.save_pretrained``), weights
    as safetensors.

    Args:
        obj: a scorekit pipeline, a score network (``UNet2DModel``) or a ``TimeClassifierModel``.
        repo_id: ``"user/name"``; created if missing.
        token: Hub token (default: the logged-in one).
        private: visibility of a newly created repo.
        revision: branch to commit to.
        commit_message: the commit title.
        create_pr: open a pull request instead of committing to the branch.
        **card_kwargs: :func:`make_model_card` arguments (``training_data``, ``training_command``, ``metrics``, ...).

    Returns:
        The ``huggingface_hub.CommitInfo`` of the upload.
    """
    from huggingface_hub import HfApi

    card = make_model_card(obj, repo_id, **card_kwargs)  # validates obj and repo_id before any network call
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        obj.save_pretrained(folder, safe_serialization=True)
        card.save(os.path.join(folder, "README.md"))
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                 revision=revision, create_pr=create_pr)
