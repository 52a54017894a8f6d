"""Model cards and pushing to the Hugging Face Hub for scorekit pipelines, score models and time classifiers.

Public API:

- :func:`make_model_card` builds a ``huggingface_hub.ModelCard`` (metadata via ``ModelCardData``) stating the SDE and
  its parameters, the parameterization, the data range, the conditioning kind, the default sampler and step count,
  the training data and command, measured metrics when given, and a usage snippet that runs;
- :func:`push_to_hub` saves the object (pipelines in the stock diffusers layout where one fits), writes the card as
  ``README.md`` and uploads the folder in one commit;
- :func:`create_hub_repo` checks the token and creates the repository (the trainer calls it before its first step);
- :func:`hub_errors` turns a failed request (unreachable endpoint, refused token, HTTP error) into :class:`HubError`,
  one line naming the Hub, what was being done and why; ``push_to_hub``, ``create_hub_repo``, the trainers and the
  pipelines' own ``push_to_hub`` all report through it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

from .samplers.registry import REGISTRY

# The sampler a card recommends unless the scheduler's own is a few-step solver, with the registry's default steps:
# DPM-Solver++(2M) on the half-log-SNR grid, 19 steps + the final denoising = 20 NFE, as measured in the README
# ("Quality of the shipped models", "Few-step samplers").
RECOMMENDED_SAMPLER = "dpmsolver++"
# A sampler whose registry default is at most this many steps is a few-step solver (DPM-Solver++ 19, EDM Heun 24,
# adaptive 1); PC (1000), the PF-ODE, DDIM and ALD (100) are not, and a card recommends RECOMMENDED_SAMPLER instead.
FEW_STEPS = 50
# Guidance scales measured on scorekit/digits (README "Quality of the shipped models"; benchmarks/quality.py): CFG
# w = 1.5 (99.4 % class accuracy at 20 NFE) and classifier guidance at scale 6 (99.2 %).
GUIDANCE_SCALES = {"classifier-free": 1.5, "classifier": 6.0}
TASKS = {"ScoreSDEInpaintPipeline": "inpainting (replacement method by default)",
         "ScoreSDEColorizationPipeline": "colorization (replacement in the gray/chroma basis by default)",
         "ScoreSDERestorationPipeline": "restoration of linear observations y = A x + sigma_y e (replacement, DPS, "
                                        "PiGDM, DDRM, TDS, MCGdiff)"}


class HubError(OSError):
    """A request to the Hugging Face Hub failed; the message is one line: which Hub, what was being done, why."""


def _request_errors() -> tuple[type, ...]:
    # huggingface_hub raises its HTTP library's HTTPError for transport failures (httpx2 in huggingface_hub 2.4) and
    # HfHubHTTPError (an OSError too) for error answers: the bases of HfHubHTTPError catch both, whatever the library
    from huggingface_hub.errors import HfHubHTTPError

    return (*HfHubHTTPError.__bases__, OSError)


@contextlib.contextmanager
def hub_errors(action: str, endpoint: str | None = None):
    """Re-raise a failed Hub request inside the block as :class:`HubError`.

    Args:
        action: what the block does, for the message (e.g. ``"creating the model repository me/x"``).
        endpoint: the Hub's URL (default: ``huggingface_hub.constants.ENDPOINT``, i.e. ``HF_ENDPOINT``).
    """
    try:
        yield
    except HubError:
        raise
    except _request_errors() as err:
        raise HubError(_explain(err, action, endpoint)) from err


def _explain(err: Exception, action: str, endpoint: str | None) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalTokenNotFoundError

    hub = f"the Hugging Face Hub at {endpoint or constants.ENDPOINT}"
    status = getattr(getattr(err, "response", None), "status_code", None)
    login = "pass a valid token (--hub_token, token=) or log in with `hf auth login`"
    if isinstance(err, LocalTokenNotFoundError):
        why = f"no token for {hub}: {login}"
    elif status in (401, 403):
        why = f"{hub} refused the token (HTTP {status}): {login}"
    else:
        why = f"{hub} answered HTTP {status}" if status is not None else f"cannot reach {hub}"
    detail = " ".join(str(err).split())[:300]  # one line, whatever the server sent
    return f"{why}, while {action} ({type(err).__name__}: {detail})"


def create_hub_repo(repo_id: str, *, token: str | None = None, private: bool | None = None) -> str:
    """Check the token, then create ``repo_id`` (or reuse it); returns the repo id. Call it before long work.

    Raises:
        ValueError: ``repo_id`` is not ``"user/name"``.
        HubError: the Hub is unreachable, refuses the token or the creation.
    """
    from huggingface_hub import HfApi

    _check_repo_id(repo_id)
    api = HfApi(token=token)
    with hub_errors(f"checking the token for {repo_id}", api.endpoint):
        api.whoami()
    with hub_errors(f"creating the model repository {repo_id}", api.endpoint):
        return api.create_repo(repo_id, private=private, exist_ok=True).repo_id


def _check_repo_id(repo_id) -> None:
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id must be 'user/name', got {repo_id!r}")


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


def recommended_sampling(scheduler, conditioning: str = "none", num_inference_steps: int | None = None,
                         model_defaults: dict | None = None) -> dict:
    """The pipeline call arguments a model card recommends.

    ``sampler`` and ``num_inference_steps``: the model's own default (the one function the pipelines and the CLI
    use, :func:`scorekit.pipelines.model_defaults.sampler_defaults`: the scheduler's sampler with its registry
    default steps) when that is a few-step solver (at most ``FEW_STEPS`` steps), else DPM-Solver++(2M) on the
    half-log-SNR grid, scorekit's measured default (README "Quality of the shipped models": 19 steps + the final
    denoising = 20 NFE) at its registry default steps; a given ``num_inference_steps`` wins. ``guidance_scale``:
    the scale the model records (``model_defaults["guidance_scale"]``, the default of the class-conditional
    pipeline), else the one measured for the conditioning kind (``GUIDANCE_SCALES``); none for an unconditional
    model.
    """
    from scorekit.pipelines.model_defaults import default_steps, sampler_defaults

    sampler, steps = sampler_defaults(scheduler) if scheduler is not None else (None, None)
    if sampler is None or steps > FEW_STEPS:
        sampler, steps = RECOMMENDED_SAMPLER, default_steps(RECOMMENDED_SAMPLER)
    kwargs = {"sampler": sampler, "num_inference_steps": num_inference_steps or steps}
    if conditioning in GUIDANCE_SCALES:
        kwargs["guidance_scale"] = (model_defaults or {}).get("guidance_scale", GUIDANCE_SCALES[conditioning])
    return kwargs


def conditioning_kind(obj) -> str:
    """``"classifier-free"`` (class embeddings with a null label), ``"classifier"`` or ``"none"``."""
    if type(obj).__name__ == "TimeClassifierModel":
        return "classifier"
    if hasattr(obj, "conditioning"):  # ScoreSDEClassConditionalPipeline
        return obj.conditioning
    unet = getattr(obj, "unet", obj)
    return "classifier-free" if getattr(unet.config, "num_class_embeds", None) else "none"


def _conditioning_line(obj, kind: str) -> str:
    text = {"classifier-free": "classifier-free guidance (class-conditional UNet whose last class is the null label; "
                               "`guidance_scale` w, 1 = the plain conditional model)",
            "classifier": "classifier guidance (a noise-conditional classifier p_t(y | x_t); `guidance_scale` weighs "
                          "its gradient)",
            "none": "none (unconditional)"}[kind]
    if kind == "classifier-free" and getattr(obj, "classifier", None) is not None:
        scale = GUIDANCE_SCALES["classifier"]
        text += f"; its classifier adds classifier guidance (`classifier_scale`, e.g. {scale} with `guidance_scale=0`)"
    task = TASKS.get(type(obj).__name__)
    return f"- conditioning: {text}" + (f"\n- task: {task}" if task else "")


def _other_samplers(default: str) -> str:
    """Every other registered sampler with its default steps (the registry is the one source), and the condition a
    sampler needs where it needs one."""
    def needs(spec) -> str:
        return "" if spec.condition is None else f"; with `condition={spec.condition_name}(...)`"

    return ", ".join(f"`{n}` ({s.default_steps}{needs(s)})" for n, s in REGISTRY.items() if n != default)


def _settings(scheduler) -> str:
    kwargs = {k: v for k, v in scheduler.sample_kwargs().items() if k != "sampler"}
    return " (" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")" if kwargs else ""


def _sampling_lines(scheduler, recommended: dict) -> list[str]:
    if scheduler is None:
        return []
    from scorekit.pipelines.model_defaults import default_steps, sampler_defaults

    own, own_steps = sampler_defaults(scheduler)
    call = ", ".join(f"{k}={v!r}" for k, v in recommended.items()).replace("'", '"')
    steps = default_steps(RECOMMENDED_SAMPLER)
    measured = (recommended["sampler"], recommended["num_inference_steps"]) == (RECOMMENDED_SAMPLER, steps)
    return [f"- scheduler's own sampler: `{own}`{_settings(scheduler)}",
            f"- default sampler: `{own}` with {own_steps} steps (a call without `sampler=`)",
            f"- other samplers (`sampler=`, default steps): {_other_samplers(own)}",
            f"- recommended sampling: `pipe(..., {call})`" + (
                f" (DPM-Solver++(2M) on the half-log-SNR grid: {steps} steps + the final denoising = {steps + 1} NFE)"
                if measured else "")]


def _usage(kind: str, obj, load_from: str, recommended: dict) -> str:
    if kind == "pipeline":
        cls = type(obj).__name__
        labels = "class_labels=[0, 1], " if cls == "ScoreSDEClassConditionalPipeline" else "batch_size=2, "
        call = ", ".join(f"{k}={v!r}" for k, v in recommended.items()).replace("'", '"')
        return (f"import torch\nfrom scorekit.pipelines import {cls}\n\n"
                f"pipe = {cls}.from_pretrained(\"{load_from}\")\n"
                f"images = pipe({labels}{call},\n"
                f"              generator=torch.Generator().manual_seed(0)).images\n")
    if kind == "classifier":
        return (f"from scorekit.models import TimeClassifierModel\n\n"
                f"classifier = TimeClassifierModel.from_pretrained(\"{load_from}\")\n"
                f"# logits = classifier(x_t, t).logits\n")
    return (f"from diffusers import {type(obj).__name__}\n\n"
            f"model = {type(obj).__name__}.from_pretrained(\"{load_from}\")  # wrap with scorekit.model_score_fn\n")


def _training_lines(training_data: str | None, training_command: str | None, facts: dict | None) -> list[str]:
    lines = ["## Training", "", f"- data: {training_data or 'not recorded'}", ""]
    if facts:
        lines += ["| fact | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in facts.items()], ""]
    if training_command:
        return lines + ["Command:", "", "```bash", training_command, "```", ""]
    return lines + ["- command: not recorded", ""]


def make_model_card(
    obj,
    repo_id: str | None,
    *,
    scheduler=None,
    num_inference_steps: int | None = None,
    training_data: str | None = None,
    training_command: str | None = None,
    training_facts: dict | None = None,
    metrics: dict[str, float] | None = None,
    license: str = "apache-2.0",
    description: str | None = None,
    load_from: str | None = None,
):
    """Build the model card of a scorekit pipeline, score model or time classifier.

    Args:
        obj: a scorekit pipeline, a score network (``UNet2DModel``) or a ``TimeClassifierModel``.
        repo_id: the Hub id (the title, and what the usage snippet loads); None for a local folder (``load_from``).
        scheduler: the scorekit scheduler describing a bare model's SDE (a pipeline's own is used otherwise).
        num_inference_steps: the recommended step count (default: :func:`recommended_sampling`'s).
        training_data: dataset name or description (a Hub dataset id also goes into the metadata).
        training_command: the exact command that trained it (shown as a shell block).
        training_facts: rows of a training table (steps, global batch size, processes, final loss, ...).
        metrics: measured figures, e.g. ``{"bits_per_dim": 3.4, "fid": 12.1}``.
        license: SPDX id for the metadata.
        description: a free-text paragraph under the title.
        load_from: what the usage snippet passes to ``from_pretrained`` (default: ``repo_id``).

    Returns:
        A ``huggingface_hub.ModelCard`` (``str(card)`` is the README.md text).
    """
    from huggingface_hub import ModelCard, ModelCardData

    kind = _kind(obj)
    if repo_id is not None or load_from is None:
        _check_repo_id(repo_id)
    load_from = load_from or repo_id
    scheduler = obj.scheduler if kind == "pipeline" else scheduler
    conditioning = conditioning_kind(obj)
    recommended = recommended_sampling(scheduler, conditioning, num_inference_steps,
                                       getattr(obj, "model_defaults", None) if kind == "pipeline" else None)
    tags = ["scorekit", "diffusers", "score-sde", f"scorekit-{kind}"]
    data = ModelCardData(license=license, library_name="scorekit", tags=tags, metrics=sorted(metrics or {}) or None,
                         datasets=[training_data] if training_data and _is_hub_id(training_data) else None,
                         pipeline_tag="unconditional-image-generation" if kind != "classifier" else None)
    title = repo_id.split("/")[1] if repo_id else os.path.basename(os.path.normpath(load_from))
    lines = [f"# {title}", "", description or f"A score-based SDE {kind} trained with scorekit (Song et al., "
             "*Score-Based Generative Modeling through SDEs*, ICLR 2021).", "", "## Model", "",
             f"- class: `{type(obj).__name__}`", *_sde_lines(scheduler), _conditioning_line(obj, conditioning),
             *(_sampling_lines(scheduler, recommended) if kind != "classifier" else []), "", "## Usage", "",
             "```python", _usage(kind, obj, load_from, recommended).rstrip(), "```", "",
             *_training_lines(training_data, training_command, training_facts)]
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

    Raises:
        HubError: the Hub is unreachable or refuses the token, the repository or the commit.
    """
    from huggingface_hub import HfApi

    card = make_model_card(obj, repo_id, **card_kwargs)  # validates obj and repo_id before any network call
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as folder:
        obj.save_pretrained(folder, safe_serialization=True)
        card.save(os.path.join(folder, "README.md"))
        with hub_errors(f"pushing {type(obj).__name__} to {repo_id}", api.endpoint):
            api.create_repo(repo_id, private=private, exist_ok=True)
            return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                     revision=revision, create_pr=create_pr)
