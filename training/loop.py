"""The accelerate training loop shared by the score and classifier trainers.

:func:`setup_run` builds the Accelerator, data loader, AdamW, the diffusers learning-rate schedule and the noise
generator, registers everything a checkpoint must hold, and restores ``--resume_from_checkpoint``. :func:`fit` runs
the optimisation steps with gradient accumulation and clipping, logs the loss, and writes checkpoints.

Exact resume: the data order is accelerate's seedable sampler (reseeded per epoch, batches skipped on resume), every
training draw (noise, times, label dropout, flips) comes from one ``torch.Generator`` saved in the checkpoint, and
accelerate saves model, optimizer, schedule and RNG states. Random crops of image folders draw from torch's global
RNG inside the data loader and are not covered by this guarantee.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .checkpoint import GeneratorState, resolve_resume, save_checkpoint


@dataclass
class TrainingRun:
    """Everything :func:`fit` drives (model, optimizer, loader and schedule are accelerate-prepared)."""

    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    loader: torch.utils.data.DataLoader
    generator: torch.Generator
    max_steps: int
    step: int


def make_accelerator(args: argparse.Namespace, project: str):
    """The Accelerator: mixed precision, accumulation, a seedable (resumable, process-sharded) data order."""
    import importlib.util

    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import ProjectConfiguration

    log_with = args.logger
    if log_with == "auto":
        log_with = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=None if log_with == "none" else log_with,
        project_config=ProjectConfiguration(project_dir=args.output_dir,
                                            logging_dir=os.path.join(args.output_dir, args.logging_dir)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        accelerator.init_trackers(project, config={k: v for k, v in vars(args).items()
                                                   if isinstance(v, (int, float, str, bool))})
    return accelerator


def setup_run(args: argparse.Namespace, accelerator, model: torch.nn.Module, dataset,
              extra_state: Callable[[torch.nn.Module], list] | None = None) -> TrainingRun:
    """Prepare model, AdamW, loader and lr schedule; register ``extra_state(unwrapped_model)`` objects (e.g. the EMA)
    for checkpointing; restore ``--resume_from_checkpoint``."""
    from diffusers.optimization import get_scheduler

    resume = resolve_resume(args.output_dir, args.resume_from_checkpoint)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.dataloader_num_workers)
    if len(loader) == 0:
        raise ValueError(f"--train_batch_size={args.train_batch_size} is larger than the dataset ({len(dataset)})")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    per_process = math.ceil(len(loader) / accelerator.num_processes)
    max_steps = args.max_train_steps or args.num_epochs * math.ceil(per_process / args.gradient_accumulation_steps)
    # accelerate steps a prepared schedule once per process per update: scale its horizon the same way
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    generator = torch.Generator(device=accelerator.device).manual_seed(args.seed * 1000 + accelerator.process_index)
    accelerator.register_for_checkpointing(GeneratorState(generator))
    for obj in extra_state(accelerator.unwrap_model(model)) if extra_state else []:
        accelerator.register_for_checkpointing(obj)
    step = 0
    if resume is not None:
        accelerator.load_state(resume[0])
        step = resume[1]
    return TrainingRun(accelerator, model, optimizer, lr_scheduler, loader, generator, max_steps, step)


def fit(run: TrainingRun, args: argparse.Namespace, loss_fn: Callable, after_update: Callable | None = None,
        desc: str = "train") -> dict:
    """Optimise ``loss_fn(model, batch, generator)`` up to ``run.max_steps`` updates.

    ``after_update(step)`` runs after every optimizer update (EMA, sample grids) and before that step's checkpoint.

    Returns:
        ``{"final_loss", "steps", "images_per_second"}`` (images over all processes per second of loop wall time,
        counted after the first update).
    """
    from tqdm.auto import tqdm

    acc, step = run.accelerator, run.step
    bar = tqdm(total=run.max_steps, initial=step, disable=not acc.is_main_process or args.no_progress, desc=desc)
    epoch, skip = divmod(step * args.gradient_accumulation_steps, len(run.loader))
    last_loss, images, start = float("nan"), 0, time.perf_counter()
    trace = [] if getattr(args, "trace_data", False) else None
    while step < run.max_steps:
        run.loader.set_epoch(epoch)
        for batch in acc.skip_first_batches(run.loader, skip) if skip else run.loader:
            with acc.accumulate(run.model):
                loss = loss_fn(run.model, batch, run.generator)
                acc.backward(loss)
                if acc.sync_gradients and args.max_grad_norm > 0:
                    acc.clip_grad_norm_(run.model.parameters(), args.max_grad_norm)
                run.optimizer.step()
                run.lr_scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
            if step > run.step:  # throughput excludes the first update's one-time costs
                images += batch["images"].shape[0] * acc.num_processes
            if trace is not None:
                trace.append(_digest(batch["images"]))
            if not acc.sync_gradients:
                continue
            step += 1
            if step == run.step + 1:
                start = time.perf_counter()
            last_loss = loss.detach().item()
            if after_update is not None:
                after_update(step)
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}")
            acc.log({"loss": last_loss, "lr": run.lr_scheduler.get_last_lr()[0]}, step=step)
            if step % args.checkpointing_steps == 0 or step == run.max_steps:
                save_checkpoint(acc, args.output_dir, step, args.checkpoints_total_limit)
            if step >= run.max_steps:
                break
        epoch, skip = epoch + 1, 0
    seconds = time.perf_counter() - start
    bar.close()
    acc.wait_for_everyone()
    if trace is not None:
        _write_trace(args.output_dir, acc.process_index, trace, acc.unwrap_model(run.model))
    return {"final_loss": last_loss, "steps": step, "images_per_second": images / max(seconds, 1e-9)}


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _write_trace(output_dir: str, rank: int, batches: list[str], model: torch.nn.Module) -> None:
    """``--trace_data``: this process's batch digests and final-weight digest, for multi-process checks."""
    weights = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])
    with open(os.path.join(output_dir, f"data_trace_{rank}.json"), "w") as f:
        json.dump({"batches": batches, "weights": _digest(weights)}, f)
