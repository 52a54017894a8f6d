"""The accelerate training loop shared by the score and classifier trainers.

:func:`setup_run` builds the data loader, AdamW, the diffusers learning-rate schedule and each process's training
generator, installs the checkpoint hooks (:mod:`~scorekit.training.checkpoint`) and restores a resumed run.
:func:`fit` runs the optimisation steps with gradient accumulation and clipping, logs the loss and writes checkpoints.

Exact resume, on any number of processes: the data order is accelerate's seedable sampler (reseeded per epoch), and
each process records the epoch and the number of batches it consumed, so a resume skips exactly those (accumulation
groups cut short by the end of an epoch included); every training draw (noise, times, label dropout, flips) comes
from the process's own ``torch.Generator``, saved per process; random crops draw from a generator seeded by
``(seed, epoch, index)`` (:mod:`~scorekit.training.data`); accelerate saves model, optimizer, schedule, its
accumulation counter and the global RNGs per process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .checkpoint import RunPlan, TrainingState, register_state_hooks, remove_paths, save_checkpoint


@dataclass
class TrainingRun:
    """Everything :func:`fit` drives (model, optimizer, loader and schedule are accelerate-prepared)."""

    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    loader: torch.utils.data.DataLoader
    state: TrainingState
    max_steps: int
    num_epochs: int
    resumed_step: int = 0

    @property
    def generator(self) -> torch.Generator:
        return self.state.generator

    @property
    def finished(self) -> bool:
        """True when the run resumed from its last checkpoint: there was nothing left to train."""
        return self.resumed_step >= self.max_steps


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
        accelerator.init_trackers(project, config={k: v for k, v in vars(args).items()  # never the Hub token
                                                   if isinstance(v, (int, float, str, bool)) and k != "hub_token"})
    return accelerator


def setup_run(args: argparse.Namespace, accelerator, model: torch.nn.Module, dataset, plan: RunPlan,
              save_model: Callable, subfolder: str, ema=None) -> TrainingRun:
    """Prepare model, AdamW, loader and lr schedule, install the checkpoint hooks (``save_model(model, folder)``
    writes ``folder/subfolder``; ``ema`` is saved beside it), delete what ``plan`` removes, restore ``plan.resume``."""
    from diffusers.optimization import get_scheduler

    # the loader's own generator: its per-iterator worker seed would otherwise come from the global RNG, which a
    # resume (one extra iterator, over the skipped batches) would then advance differently
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.dataloader_num_workers,
                                         generator=torch.Generator().manual_seed(args.seed))
    if len(loader) == 0:
        raise ValueError(f"--train_batch_size={args.train_batch_size} is larger than the dataset ({len(dataset)})")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    per_process = math.ceil(len(loader) / accelerator.num_processes)
    updates_per_epoch = math.ceil(per_process / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_epochs * updates_per_epoch
    # accelerate steps a prepared schedule once per process per update: scale its horizon the same way
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    generator = torch.Generator(device=accelerator.device).manual_seed(args.seed * 1000 + accelerator.process_index)
    state = TrainingState(generator, plan.run_id, accelerator.process_index, accelerator.num_processes)
    state.max_steps = max_steps
    register_state_hooks(accelerator, state, save_model, subfolder, ema)
    remove_paths(accelerator, plan.remove)
    run = TrainingRun(accelerator, model, optimizer, lr_scheduler, loader, state, max_steps,
                      math.ceil(max_steps / updates_per_epoch))
    if plan.resume is not None:
        _resume(run, plan)
    for note in plan.notes if accelerator.is_main_process else ():
        warnings.warn(note, UserWarning, stacklevel=2)
    return run


def _resume(run: TrainingRun, plan: RunPlan) -> None:
    acc, name = run.accelerator, os.path.basename(plan.resume)
    written_by = plan.record.get("num_processes")
    if written_by != acc.num_processes:
        raise ValueError(f"--resume_from_checkpoint: {name} was written by {written_by} processes and this run has "
                         f"{acc.num_processes}; launch it with --num_processes {written_by} to resume exactly")
    acc.load_state(plan.resume)
    run.state.step = run.resumed_step = plan.step
    run.state.last_loss = plan.record.get("last_loss", math.nan)
    if acc.is_main_process:
        done = ": the run is finished, nothing to train" if run.finished else ""
        print(f"resuming from {name} (step {plan.step} of {run.max_steps}){done}", flush=True)


def fit(run: TrainingRun, args: argparse.Namespace, loss_fn: Callable, after_update: Callable | None = None,
        desc: str = "train", on_epoch_end: Callable | None = None) -> dict:
    """Optimise ``loss_fn(model, batch, generator)`` up to ``run.max_steps`` updates.

    ``after_update(step)`` runs after every optimizer update (EMA, sample grids) and before that step's checkpoint;
    ``on_epoch_end(epoch)`` after each complete pass over the data (also when a resume starts right after one).

    Returns:
        ``{"final_loss", "steps", "images_per_second"}`` (images over all processes per second of loop wall time,
        counted after the first update).
    """
    from tqdm.auto import tqdm

    acc, state = run.accelerator, run.state
    bar = tqdm(total=run.max_steps, initial=state.step, disable=not acc.is_main_process or args.no_progress, desc=desc)
    images, start = 0, time.perf_counter()
    trace = [] if getattr(args, "trace_data", False) else None
    while True:
        if state.batch >= len(run.loader):  # an epoch is complete (possibly just before a resume's checkpoint)
            if on_epoch_end is not None:
                on_epoch_end(state.epoch)
            state.epoch, state.batch = state.epoch + 1, 0
        if state.step >= run.max_steps:
            break
        run.loader.set_epoch(state.epoch)
        for batch in acc.skip_first_batches(run.loader, state.batch) if state.batch else run.loader:
            state.batch += 1
            loss = _micro_step(run, args, loss_fn, batch)
            if state.step > run.resumed_step:  # throughput excludes the first update's one-time costs
                images += batch["images"].shape[0] * acc.num_processes
            if trace is not None:
                trace.append(_digest(batch["images"]))
            if not acc.sync_gradients:
                continue
            state.step += 1
            if state.step == run.resumed_step + 1:
                start = time.perf_counter()
            state.last_loss = loss.detach().item()
            if after_update is not None:
                after_update(state.step)
            bar.update(1)
            bar.set_postfix(loss=f"{state.last_loss:.4f}")
            acc.log({"loss": state.last_loss, "lr": run.lr_scheduler.get_last_lr()[0]}, step=state.step)
            if state.step % args.checkpointing_steps == 0 or state.step == run.max_steps:
                save_checkpoint(acc, args.output_dir, state, args.checkpoints_total_limit)
            if state.step >= run.max_steps:
                break
    seconds = time.perf_counter() - start
    bar.close()
    acc.wait_for_everyone()
    if trace is not None:
        _write_trace(args.output_dir, acc.process_index, trace, acc.unwrap_model(run.model))
    return {"final_loss": state.last_loss, "steps": state.step, "images_per_second": images / max(seconds, 1e-9)}


def _micro_step(run: TrainingRun, args: argparse.Namespace, loss_fn: Callable, batch: dict) -> torch.Tensor:
    """One batch: forward, backward, and (when the accumulation group is complete) clip and update."""
    acc = run.accelerator
    with acc.accumulate(run.model):
        loss = loss_fn(run.model, batch, run.state.generator)
        acc.backward(loss)
        if acc.sync_gradients and args.max_grad_norm > 0:
            acc.clip_grad_norm_(run.model.parameters(), args.max_grad_norm)
        run.optimizer.step()
        run.lr_scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    return loss


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _write_trace(output_dir: str, rank: int, batches: list[str], model: torch.nn.Module) -> None:
    """``--trace_data``: this process's batch digests and final-weight digest, for multi-process checks."""
    weights = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])
    with open(os.path.join(output_dir, f"data_trace_{rank}.json"), "w") as f:
        json.dump({"batches": batches, "weights": _digest(weights)}, f)
