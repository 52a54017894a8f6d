"""Train a score network (diffusers ``UNet2DModel``) on a score SDE with accelerate.

    accelerate launch training/train_score.py --dataset digits --num_class_embeds 10 --output_dir out/digits \
        --max_train_steps 1500 --learning_rate 2e-3 --use_ema --ema_max_decay 0.995
    scorekit train ...            # the same flags, one process

The output folder loads with ``ScoreSDEPipeline.from_pretrained`` (or ``ScoreSDEClassConditionalPipeline`` for a
class-conditional model, which samples with classifier-free guidance). ``--resume_from_checkpoint latest`` restores
step, weights, optimizer, learning-rate schedule, EMA, data order and the noise generator: a killed run continues
exactly where its last checkpoint left it.
"""

from __future__ import annotations

import argparse
import os

import torch

from scorekit.training.config import (
    build_parser,
    build_sde,
    build_unet,
    data_range_for,
    scheduler_config,
    validate_score_args,
)
from scorekit.training.data import dataset_from_args
from scorekit.training.export import build_pipeline, command_line, model_card, push_folder, sample_grid
from scorekit.training.loop import fit, make_accelerator, setup_run
from scorekit.training.losses import ddpm_loss, dsm_loss, smld_loss, unet_model_fn


def make_loss_fn(args: argparse.Namespace, sde, num_classes: int | None):
    """``loss(model, batch, generator) -> scalar``: data to the model range, flip, label dropout, the chosen loss."""
    lo, hi = data_range_for(args.sde)

    def loss_fn(model, batch, generator):
        x0 = lo + (hi - lo) * batch["images"]
        if args.random_flip:
            flip = torch.rand(x0.shape[0], generator=generator, device=x0.device) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        labels = None
        if args.num_class_embeds:
            drop = torch.rand(x0.shape[0], generator=generator, device=x0.device) < args.class_drop_prob
            labels = torch.where(drop, args.num_class_embeds, batch["labels"].to(x0.device))  # K = null label
        model_fn = unet_model_fn(model, sde, args.prediction_type, labels)
        if args.loss == "ddpm":
            return ddpm_loss(model_fn, sde, x0, generator, reduce=args.reduce)
        if args.loss == "smld":
            return smld_loss(model_fn, sde, x0, generator, args.prediction_type, reduce=args.reduce)
        return dsm_loss(model_fn, sde, x0, generator, args.prediction_type, args.weighting, args.importance_sampling,
                        args.train_eps, args.reduce)

    return loss_fn


def make_ema(args: argparse.Namespace, unet):
    from diffusers import UNet2DModel
    from diffusers.training_utils import EMAModel

    return EMAModel(unet.parameters(), decay=args.ema_max_decay, use_ema_warmup=args.ema_warmup,
                    inv_gamma=args.ema_inv_gamma, power=args.ema_power, model_cls=UNet2DModel,
                    model_config=unet.config)


def train(args: argparse.Namespace) -> dict:
    """Run training as the flags say; returns ``{"final_loss", "steps", "output_dir", "images_per_second"}``."""
    from accelerate.utils import set_seed

    validate_score_args(args)
    dataset, num_classes, channels, resolution = dataset_from_args(args)  # data errors before any step
    sde = build_sde(args)
    set_seed(args.seed)
    unet = build_unet(args, channels, resolution)
    accelerator = make_accelerator(args, "train_score")
    holder = {}

    def ema_state(model) -> list:
        holder["ema"] = make_ema(args, model)
        holder["ema"].to(accelerator.device)
        return [holder["ema"]]

    run = setup_run(args, accelerator, unet, dataset, ema_state if args.use_ema else None)
    ema = holder.get("ema")
    sched_kwargs = scheduler_config(args, data_range_for(args.sde))

    def after_update(step: int) -> None:
        if ema is not None:
            ema.step(run.model.parameters())
        if args.save_images_steps and step % args.save_images_steps == 0 and accelerator.is_main_process:
            _save_samples(args, accelerator.unwrap_model(run.model), ema, sched_kwargs, num_classes, step)

    result = fit(run, args, make_loss_fn(args, sde, num_classes), after_update, desc="train_score")
    if accelerator.is_main_process:
        _export(args, accelerator.unwrap_model(run.model), ema, sched_kwargs, num_classes, result["final_loss"],
                result["steps"])
    accelerator.end_training()
    return {**result, "output_dir": args.output_dir}


def _ema_unet(unet, ema):
    """A copy of ``unet`` with the EMA weights (or ``unet`` itself without EMA); training weights stay untouched."""
    if ema is None:
        return unet
    from diffusers import UNet2DModel

    copy = UNet2DModel.from_config(unet.config).to(unet.device)
    ema.copy_to(copy.parameters())
    return copy


def _save_samples(args, unet, ema, sched_kwargs, num_classes, step) -> None:
    pipe = build_pipeline(_ema_unet(unet, ema).eval(), sched_kwargs)
    path = os.path.join(args.output_dir, "samples", f"step_{step:06d}.png")
    sample_grid(pipe, path, args.eval_batch_size, args.eval_sampler, args.eval_steps, args.seed,
                num_classes if args.num_class_embeds else None)
    unet.train()


def _export(args, unet, ema, sched_kwargs, num_classes, last_loss, step) -> None:
    pipe = build_pipeline(_ema_unet(unet, ema).float().eval(), sched_kwargs)
    pipe.save_pretrained(args.output_dir)
    kind = "class-conditional (classifier-free guidance)" if args.num_class_embeds else "unconditional"
    facts = {"SDE": args.sde, "parameterization": args.prediction_type, "loss": args.loss,
             "weighting": args.weighting, "data": args.dataset or args.dataset_name or args.train_data_dir,
             "classes": num_classes if args.num_class_embeds else "-", "steps": step,
             "batch size": args.train_batch_size, "EMA": args.ema_max_decay if args.use_ema else "no",
             "final training loss": f"{last_loss:.5f}"}
    with open(os.path.join(args.output_dir, "README.md"), "w") as f:
        f.write(model_card(kind, getattr(args, "command_line", None) or command_line(), facts))
    if args.push_to_hub:
        push_folder(args.output_dir, args.hub_model_id, args.hub_token)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    args.command_line = command_line(None if argv is None else ["train_score.py", *argv])
    return train(args)


if __name__ == "__main__":
    main()
