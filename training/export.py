"""What a training run leaves behind: a pipeline folder the pipelines load, a model card, sample grids, a Hub push."""

from __future__ import annotations

import os
import shlex
import sys

import torch

from scorekit.pipelines import ScoreSDEClassConditionalPipeline, ScoreSDEPipeline
from scorekit.schedulers import ScoreSDEPCScheduler


def build_pipeline(unet, scheduler_kwargs: dict, classifier=None) -> ScoreSDEPipeline:
    """The pipeline for a trained UNet: class-conditional when it has class embeddings or a classifier."""
    scheduler = ScoreSDEPCScheduler(**scheduler_kwargs)
    if unet.config.num_class_embeds is not None or classifier is not None:
        return ScoreSDEClassConditionalPipeline(unet=unet, scheduler=scheduler, classifier=classifier)
    return ScoreSDEPipeline(unet=unet, scheduler=scheduler)


@torch.no_grad()
def sample_grid(pipe: ScoreSDEPipeline, path: str, num_images: int, sampler: str, steps: int, seed: int,
                num_classes: int | None = None) -> None:
    """Sample ``num_images`` (labels cycling through the classes) and save them as one PNG grid."""
    from torchvision.utils import save_image

    g = torch.Generator(device=pipe.device).manual_seed(seed)
    kwargs = dict(batch_size=num_images, num_inference_steps=steps, sampler=sampler, generator=g, output_type="pt")
    pipe.set_progress_bar_config(disable=True)
    if num_classes:
        images = pipe(class_labels=torch.arange(num_images) % num_classes, **kwargs).images
    else:
        images = pipe(**kwargs).images
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_image(images.float(), path, nrow=num_classes or int(num_images**0.5))


def model_card(kind: str, command: str, facts: dict) -> str:
    """README.md text of a trained model: what it is, how it was trained and how to load it (one function, so a
    shared Hub card helper can replace it)."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in facts.items())
    loader = "ScoreSDEClassConditionalPipeline" if kind != "unconditional" else "ScoreSDEPipeline"
    usage = ("pipe(class_labels=[0, 1, 2], guidance_scale=1.0, num_inference_steps=50, sampler=\"ddim\")"
             if kind != "unconditional" else "pipe(batch_size=4, num_inference_steps=50, sampler=\"ddim\")")
    return f"""---
library_name: diffusers
tags: [scorekit, score-sde, diffusion]
---

# scorekit score model ({kind})

Trained with scorekit's accelerate trainer (`training/train_score.py`).

| fact | value |
|---|---|
{rows}

## Command

```bash
{command}
```

## Use

```python
from scorekit import {loader}
pipe = {loader}.from_pretrained("path/to/this/folder")
images = {usage}.images
```
"""


def command_line(argv: list[str] | None = None) -> str:
    """The training command: ``argv``, or the one that started this process (``accelerate launch`` shows as the
    script and its flags)."""
    return " ".join(shlex.quote(a) for a in (argv or ["python", *sys.argv]))


def push_folder(folder: str, hub_model_id: str, hub_token: str | None) -> str:
    """Create (or reuse) the Hub model repo and upload ``folder`` without its checkpoints; returns the repo id."""
    from huggingface_hub import HfApi

    api = HfApi(token=hub_token)
    repo_id = api.create_repo(hub_model_id, exist_ok=True).repo_id
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="scorekit training run",
                      ignore_patterns=["checkpoint-*", ".tmp-checkpoint-*", "logs/*"])
    return repo_id
