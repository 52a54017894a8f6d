"""What a training run leaves behind: a pipeline folder the pipelines load, a model card, sample grids, a Hub push."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Callable

import torch

from scorekit.pipelines import ScoreSDEClassConditionalPipeline, ScoreSDEPipeline
from scorekit.schedulers import ScoreSDEPCScheduler


def build_pipeline(unet, scheduler_kwargs: dict, classifier=None, model_defaults: dict | None = None
                   ) -> ScoreSDEPipeline:
    """The pipeline for a trained UNet: class-conditional when it has class embeddings or a classifier;
    ``model_defaults`` (e.g. ``{"likelihood": ...}``) are recorded in its ``model_index.json`` when saved."""
    scheduler = ScoreSDEPCScheduler(**scheduler_kwargs)
    if unet.config.num_class_embeds is not None or classifier is not None:
        pipe = ScoreSDEClassConditionalPipeline(unet=unet, scheduler=scheduler, classifier=classifier)
    else:
        pipe = ScoreSDEPipeline(unet=unet, scheduler=scheduler)
    pipe.model_defaults = model_defaults or {}
    return pipe


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


def write_card(pipe, folder: str, repo_id: str | None, **card_kwargs) -> str:
    """Write the model card (:func:`scorekit.hub.make_model_card`) as ``folder/README.md``, atomically: the card is
    written last, so its presence marks a completed export."""
    from scorekit.hub import make_model_card

    card = make_model_card(pipe, repo_id, load_from=None if repo_id else folder, **card_kwargs)
    path = os.path.join(folder, "README.md")
    card.save(path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


BUNDLED_DATA = {
    "digits": "scikit-learn's 8x8 digits, train split (`scorekit.training.data.load_digits_split`)",
    "photos": "patches of the bundled photos, train photos only (`scorekit.training.data.load_photo_patches`)",
}


def data_description(args: argparse.Namespace) -> str:
    """What the run trained on, for the model card."""
    if args.dataset:
        return BUNDLED_DATA[args.dataset]
    if args.dataset_name:
        config = getattr(args, "dataset_config_name", None)
        return args.dataset_name + (f" (configuration {config})" if config else "")
    return f"image folder {args.train_data_dir}"


NOT_RECORDED = ("hub_token", "resume_from_checkpoint", "overwrite_output_dir", "no_progress")


def training_command(args: argparse.Namespace, add_flags: Callable, entry: str, num_processes: int = 1,
                     on_cpu: bool = True) -> str:
    """The command that trains this model: ``entry`` (``"scorekit train"`` or a script path) with every flag whose
    value differs from its default, launched with accelerate on ``num_processes`` processes.

    ``--hub_token`` is never recorded; resume flags are left out (a resumed run ends with the same bytes as an
    uninterrupted one).
    """
    parser = argparse.ArgumentParser()
    add_flags(parser)
    words = []
    for action in parser._actions:
        if not action.option_strings or action.dest in NOT_RECORDED or action.default == argparse.SUPPRESS:
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        if action.nargs == 0:  # store_true / store_false: the flag whose constant is the value
            words += [action.option_strings[0]] if action.const == value else []
        else:
            words += [action.option_strings[0], str(value)]
    return " ".join(shlex.quote(w) for w in [*_launcher(entry, num_processes, on_cpu), *words])


def _launcher(entry: str, num_processes: int, on_cpu: bool) -> list[str]:
    module = ["-m", *entry.split()] if entry.startswith("scorekit ") else [entry]
    if num_processes == 1:
        return entry.split() if entry.startswith("scorekit ") else ["accelerate", "launch", entry]
    machines = num_processes // int(os.environ.get("LOCAL_WORLD_SIZE", num_processes))
    env = ["ACCELERATE_USE_CPU=true"] if on_cpu else []
    nodes = ["--num_machines", str(machines)] if machines > 1 else []
    return [*env, "accelerate", "launch", "--multi_gpu", "--num_processes", str(num_processes), *nodes, *module]


def push_folder(folder: str, repo_id: str, hub_token: str | None) -> str:
    """Upload the run folder without its checkpoints and logs to ``repo_id`` (created before training); returns it.

    Raises:
        HubError: the upload failed; the message says where the pipeline is saved and how to push it later.
    """
    from huggingface_hub import HfApi

    from scorekit.hub import HubError, hub_errors

    api = HfApi(token=hub_token)
    try:
        with hub_errors(f"uploading {folder} to {repo_id}", api.endpoint):
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="scorekit training run",
                              ignore_patterns=list(UPLOAD_IGNORE))
    except HubError as err:
        later = " ".join(["hf upload", repo_id, shlex.quote(folder), "."] +
                         [f"--exclude {shlex.quote(p)}" for p in UPLOAD_IGNORE])
        raise HubError(f"training finished and the pipeline is saved at {folder}, but the push failed: {err}. Push "
                       f"it later with: {later}") from err
    return repo_id


UPLOAD_IGNORE = ("checkpoint-*", ".tmp-checkpoint-*", "logs/*")
