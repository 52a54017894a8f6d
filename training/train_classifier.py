"""Train a noise-conditional time classifier ``p_t(y | x_t)`` for classifier guidance, with accelerate.

    accelerate launch training/train_classifier.py --dataset digits --score_model out/digits-uncond \
        --output_dir out/digits-guided --max_train_steps 1000
    scorekit train-classifier ...            # the same flags, one process

The classifier sees data perturbed by the score model's SDE (read from ``--score_model``'s scheduler config: SDE,
data range and time input), ``t ~ U(train_eps, T)``. With ``--score_model`` the output folder is a complete
``ScoreSDEClassConditionalPipeline`` (the score model plus a ``classifier/`` component); without it, only
``classifier/``. The SDE and data range are recorded in ``classifier/scorekit_sde.json`` and checked when a
classifier is reused (``--init_classifier``). Accuracy by band of t is printed and logged at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from scorekit.models.shipped import is_shipped_name, shipped_model_path
from scorekit.training.checkpoint import FINISHED_MARKER, plan_run
from scorekit.training.config import add_common_flags, flag_parser, validate_common
from scorekit.training.data import dataset_from_args, load_digits_split
from scorekit.training.export import data_description, push_folder, training_command, write_card
from scorekit.training.loop import fit, make_accelerator, setup_run
from scorekit.training.losses import classifier_loss
from scorekit.training.train_score import prepare_hub, script_main, summary_line

SDE_RECORD = "scorekit_sde.json"
T_BANDS = ((0.0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 1.0))


DESCRIPTION = "Train a noise-conditional time classifier for classifier guidance, with accelerate."


def build_parser() -> argparse.ArgumentParser:
    return flag_parser(DESCRIPTION, add_classifier_flags)


def add_classifier_flags(p: argparse.ArgumentParser) -> None:
    """Every flag of ``train_classifier.py`` (also the ``scorekit train-classifier`` subcommand)."""
    add_common_flags(p)
    m = p.add_argument_group("classifier")
    m.add_argument("--score_model", default=None,
                   help="pipeline folder (or shipped short name, e.g. scorekit/digits) whose SDE / data range / time "
                        "input to use; the output is then that pipeline plus the classifier")
    m.add_argument("--sde", default="vp", choices=("vp", "subvp", "ve"), help="without --score_model")
    m.add_argument("--init_classifier", default=None, help="a classifier/ folder to continue from")
    m.add_argument("--block_out_channels", default="32,64,64", help="comma-separated widths, one per resolution level")
    m.add_argument("--layers_per_block", type=int, default=1, help="residual blocks per resolution level")
    m.add_argument("--time_embedding_type", default=None, choices=("fourier", "positional"),
                   help="default: fourier for sigma-parameterized score models, else positional")
    m.add_argument("--train_eps", type=float, default=1e-5, help="t ~ U(train_eps, 1)")
    m.add_argument("--eval_samples", type=int, default=512, help="images per band in the final accuracy table")


def load_scheduler(args: argparse.Namespace):
    """The scorekit scheduler that fixes SDE, data range and parameterization."""
    from scorekit.pipelines import as_score_sde_scheduler
    from scorekit.schedulers import ScoreSDEPCScheduler

    if args.score_model is None:
        return ScoreSDEPCScheduler(sde_type=args.sde, prediction_type="sigma" if args.sde == "ve" else "epsilon")
    path = os.path.join(args.score_model, "scheduler")
    if not os.path.isdir(path):
        raise ValueError(f"--score_model={args.score_model!r} has no scheduler/ folder (a scorekit pipeline folder)")
    import diffusers

    with open(os.path.join(path, "scheduler_config.json")) as f:
        name = json.load(f).get("_class_name", "")
    cls = ScoreSDEPCScheduler if name.startswith("ScoreSDE") else getattr(diffusers, name)
    return as_score_sde_scheduler(cls.from_pretrained(path))


def sde_record(scheduler) -> dict:
    """What the classifier depends on: the SDE, its parameters and the data range."""
    return {"sde": {"type": scheduler.config.sde_type, **scheduler.sde.config()},
            "data_range": list(scheduler.data_range)}


def check_classifier_record(path: str, expected: dict, flag: str) -> None:
    """Raise when a saved classifier was trained for another SDE or data range."""
    record_file = os.path.join(path, SDE_RECORD)
    if not os.path.isfile(record_file):
        raise ValueError(f"{flag}={path!r} has no {SDE_RECORD}: cannot tell which SDE it was trained for")
    with open(record_file) as f:
        found = json.load(f)
    if found != expected:
        raise ValueError(f"{flag}={path!r} was trained for {found}, but this run uses {expected}; a classifier only "
                         f"guides the SDE and data range it was trained on")


def build_classifier(args, scheduler, channels: int, resolution: int, num_classes: int):
    from scorekit.models import TimeClassifierModel

    if args.init_classifier:
        check_classifier_record(args.init_classifier, sde_record(scheduler), "--init_classifier")
        return TimeClassifierModel.from_pretrained(args.init_classifier)
    try:
        widths = tuple(int(c) for c in args.block_out_channels.split(","))
    except ValueError as err:
        raise ValueError(f"--block_out_channels must be comma-separated integers, got "
                         f"{args.block_out_channels!r}") from err
    kind = args.time_embedding_type or ("fourier" if scheduler.config.prediction_type == "sigma" else "positional")
    return TimeClassifierModel(in_channels=channels, sample_size=resolution, num_classes=num_classes,
                               block_out_channels=widths, layers_per_block=args.layers_per_block,
                               time_embedding_type=kind,
                               norm_num_groups=min(8, *widths))


def make_loss_fn(scheduler, eps: float):
    sde, (lo, hi) = scheduler.sde, scheduler.data_range

    def loss_fn(model, batch, generator):
        inner = getattr(model, "module", model)

        def logits_fn(x, t):
            return model(x, inner.time_input(sde, t)).logits

        x0 = lo + (hi - lo) * batch["images"]
        return classifier_loss(logits_fn, sde, x0, batch["labels"].to(x0.device), generator, eps)

    return loss_fn


@torch.no_grad()
def accuracy_by_band(classifier, scheduler, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict:
    """Accuracy of ``classifier`` on ``images`` (in [0, 1]) perturbed to t uniform in each band of ``T_BANDS``."""
    sde, (lo, hi) = scheduler.sde, scheduler.data_range
    g = torch.Generator().manual_seed(seed)
    x0 = (lo + (hi - lo) * images).to(classifier.device)
    out = {}
    for a, b in T_BANDS:
        t = (max(a, 1e-5) + (b - max(a, 1e-5)) * torch.rand(len(x0), generator=g)).to(x0.device)
        mean, std = sde.marginal_prob(x0, t)
        x_t = mean + std[:, None, None, None] * torch.randn(x0.shape, generator=g).to(x0.device)
        pred = classifier(x_t, classifier.time_input(sde, t)).logits.argmax(-1).cpu()
        out[f"t in [{a}, {b})"] = float((pred == labels).float().mean())
    return out


def train(args: argparse.Namespace) -> dict:
    """Train as the flags say; returns the fit facts plus ``accuracy`` by band of t (prints them, and a summary)."""
    from accelerate.utils import set_seed

    validate_common(args)
    if args.random_flip:  # the classifier's loss draws no augmentation
        raise ValueError("--random_flip is for scorekit train (the score network); the classifier trainer does not "
                         "augment its data")
    if args.layers_per_block < 1:
        raise ValueError(f"--layers_per_block must be a positive integer, got {args.layers_per_block}")
    if is_shipped_name(args.score_model):
        args.score_model = shipped_model_path(args.score_model)
    if args.score_model is not None and not os.path.isdir(args.score_model):
        raise ValueError(f"--score_model={args.score_model!r} is not a folder")
    plan = plan_run(args.output_dir, args.resume_from_checkpoint, args.overwrite_output_dir)
    repo_id = prepare_hub(args)  # token and repository checked before any data is read
    scheduler = load_scheduler(args)
    dataset, num_classes, channels, resolution = dataset_from_args(args)
    if num_classes is None:
        raise ValueError("a classifier needs labelled data: --dataset digits, class subfolders in --train_data_dir, "
                         "or --label_column")
    set_seed(args.seed)
    classifier = build_classifier(args, scheduler, channels, resolution, num_classes)
    accelerator = make_accelerator(args, "train_classifier")
    run = setup_run(args, accelerator, classifier, dataset, plan,
                    lambda model, folder: model.save_pretrained(os.path.join(folder, "classifier")), "classifier")
    if run.finished:
        result = {"final_loss": run.state.last_loss, "steps": run.state.step, "images_per_second": 0.0}
    else:
        result = fit(run, args, make_loss_fn(scheduler, args.train_eps), desc="train_classifier")
    exported = accelerator.is_main_process and (not run.finished or not os.path.isfile(
        os.path.join(args.output_dir, FINISHED_MARKER)))
    if exported:
        model = accelerator.unwrap_model(run.model).eval()
        images, labels = _eval_set(args, dataset)
        result["accuracy"] = accuracy_by_band(model, scheduler, images, labels, args.seed)
        accelerator.log({f"accuracy/{k}": v for k, v in result["accuracy"].items()}, step=result["steps"])
        for band, acc in result["accuracy"].items():
            print(f"accuracy {band:16s} {acc:.3f}")  # the trainer script reports; library code does not print
        _save(args, model, scheduler, result, accelerator.num_processes, accelerator.device.type == "cpu")
    accelerator.end_training()
    if exported and repo_id is not None:
        push_folder(args.output_dir, repo_id, args.hub_token)
    if accelerator.is_main_process:
        print(summary_line(result, run, args.output_dir), flush=True)
    return result


def _eval_set(args, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    if args.dataset == "digits":  # the fixed held-out split
        images, labels = load_digits_split("test", args.resolution or 8)
        return images[: args.eval_samples], labels[: args.eval_samples]
    items = [dataset[i] for i in range(min(args.eval_samples, len(dataset)))]
    return torch.stack([it["images"] for it in items]), torch.stack([it["labels"] for it in items])


def _save(args, model, scheduler, result: dict, processes: int, on_cpu: bool) -> None:
    if args.score_model is not None:
        from scorekit.pipelines import ScoreSDEClassConditionalPipeline

        saved = ScoreSDEClassConditionalPipeline.from_pretrained(args.score_model, classifier=model)
    else:
        saved = model
    saved.save_pretrained(args.output_dir if args.score_model is not None else
                          os.path.join(args.output_dir, "classifier"))
    with open(os.path.join(args.output_dir, "classifier", SDE_RECORD), "w") as f:
        json.dump(sde_record(scheduler), f, indent=2)
    facts = {"optimizer steps": result["steps"], "processes": processes,
             "global batch size": args.train_batch_size * processes * args.gradient_accumulation_steps,
             "final training loss": f"{result['final_loss']:.5f}",
             **{f"accuracy, {band}": f"{acc:.3f}" for band, acc in result["accuracy"].items()}}
    entry = "scorekit train-classifier" if getattr(args, "entry", None) == "cli" else "training/train_classifier.py"
    write_card(saved, args.output_dir, args.hub_model_id, scheduler=scheduler,
               training_data=data_description(args), training_facts=facts,
               training_command=training_command(args, add_classifier_flags, entry, processes, on_cpu))


def main(argv: list[str] | None = None) -> dict:
    """Train with ``argv`` (default: the command line) as flags."""
    return train(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(script_main(main, "train_classifier.py"))
