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
import math
import os
import time

import torch

from scorekit.training.checkpoint import GeneratorState, resolve_resume, save_checkpoint
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
from scorekit.training.losses import ddpm_loss, dsm_loss, smld_loss, unet_model_fn


def make_accelerator(args: argparse.Namespace):
    """The Accelerator: mixed precision, accumulation, a seedable (resumable, process-sharded) data order."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import ProjectConfiguration

    log_with = args.logger
    if log_with == "auto":
        import importlib.util

        log_with = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=None if log_with == "none" else log_with,
        project_config=ProjectConfiguration(project_dir=args.output_dir,
                                            logging_dir=os.path.join(args.output_dir, args.logging_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )


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
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    validate_score_args(args)
    dataset, num_classes, channels, resolution = dataset_from_args(args)  # data errors before any step
    sde = build_sde(args)
    set_seed(args.seed)
    unet = build_unet(args, channels, resolution)
    accelerator = make_accelerator(args)
    resume = resolve_resume(args.output_dir, args.resume_from_checkpoint)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.dataloader_num_workers)
    if len(loader) == 0:
        raise ValueError(f"--train_batch_size={args.train_batch_size} is larger than the dataset ({len(dataset)})")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    steps_per_epoch = math.ceil(math.ceil(len(loader) / accelerator.num_processes) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    generator = torch.Generator(device=accelerator.device).manual_seed(args.seed * 1000 + accelerator.process_index)
    accelerator.register_for_checkpointing(GeneratorState(generator))
    ema = make_ema(args, accelerator.unwrap_model(unet)) if args.use_ema else None
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    step = 0
    if resume is not None:
        accelerator.load_state(resume[0])
        step = resume[1]
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        accelerator.init_trackers("train_score", config={k: v for k, v in vars(args).items()
                                                         if isinstance(v, (int, float, str, bool))})
    loss_fn = make_loss_fn(args, sde, num_classes)
    sched_kwargs = scheduler_config(args, data_range_for(args.sde))
    bar = tqdm(total=max_steps, initial=step, disable=not accelerator.is_main_process or args.no_progress,
               desc="train_score")
    epoch, skip = divmod(step * args.gradient_accumulation_steps, len(loader))
    last_loss, images_seen, start = float("nan"), 0, time.perf_counter()
    while step < max_steps:
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            with accelerator.accumulate(unet):
                loss = loss_fn(unet, batch, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            images_seen += batch["images"].shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            if ema is not None:
                ema.step(unet.parameters())
            step += 1
            last_loss = loss.detach().item()
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}")
            accelerator.log({"loss": last_loss, "lr": lr_scheduler.get_last_lr()[0]}, step=step)
            if step % args.checkpointing_steps == 0 or step == max_steps:
                save_checkpoint(accelerator, args.output_dir, step, args.checkpoints_total_limit)
            if args.save_images_steps and step % args.save_images_steps == 0 and accelerator.is_main_process:
                _save_samples(args, accelerator.unwrap_model(unet), ema, sched_kwargs, num_classes, step)
            if step >= max_steps:
                break
        epoch, skip = epoch + 1, 0
    seconds = time.perf_counter() - start
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _export(args, accelerator.unwrap_model(unet), ema, sched_kwargs, num_classes, last_loss, step)
    accelerator.end_training()
    return {"final_loss": last_loss, "steps": step, "output_dir": args.output_dir,
            "images_per_second": images_seen / max(seconds, 1e-9)}


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
