"""Checkpoints that survive a kill and resume to the same bytes on any number of processes; one run per folder.

``checkpoint-{step}/`` holds

- ``unet/`` (``classifier/`` for the classifier trainer), ``unet_ema/`` and, for score models, ``scheduler/`` and
  ``model_index.json``: written by accelerate's save-state hook on the main process, so the folder loads with
  ``from_pretrained`` (``UNet2DModel.from_pretrained(ckpt, subfolder="unet_ema")``, ``ScoreSDEPipeline``);
- accelerate's ``optimizer.bin``, ``scheduler.bin`` and ``random_states_{rank}.pkl`` (global RNGs, per process);
- ``scorekit_rank_{rank}.pt``, written by **every** process: its training generator and its data position (epoch and
  batches consumed). accelerate writes objects registered with ``register_for_checkpointing`` from the main process
  only, so a per-process generator registered that way would come back as rank 0's on every rank;
- ``scorekit_run.json`` (main process): the run id, step, planned steps, process count and last loss.

The folder is written as ``.tmp-checkpoint-{step}`` and renamed once complete, so a kill never leaves a half-written
``checkpoint-{step}``. A run id ties checkpoints to the run that wrote them: a fresh run refuses a folder holding
another run unless ``--overwrite_output_dir``, and pruning (``--checkpoints_total_limit``) deletes only this run's
checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field

import torch

_PATTERN = re.compile(r"^checkpoint-(\d+)$")
RUN_RECORD = "scorekit_run.json"
RANK_STATE = "scorekit_rank_{}.pt"
WEIGHTS = "diffusion_pytorch_model.safetensors"
FINISHED_MARKER = "README.md"  # the model card is written last: its presence means the run's export completed


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints ``(step, path)`` in ``output_dir``, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), os.path.join(output_dir, d)) for d in os.listdir(output_dir)
             if (m := _PATTERN.match(d)) and os.path.isdir(os.path.join(output_dir, d))]
    return sorted(found)


def read_run_record(checkpoint: str) -> dict:
    """``scorekit_run.json`` of a checkpoint; ``{}`` when missing (written by another tool or an older scorekit)."""
    path = os.path.join(checkpoint, RUN_RECORD)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


@dataclass
class RunPlan:
    """What a run does with its folder, decided before any work: fresh or resumed, and which folders it deletes."""

    run_id: str
    resume: str | None = None  # the checkpoint folder to resume from
    step: int = 0
    record: dict = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)  # other runs' checkpoints (only with --overwrite_output_dir)
    notes: list[str] = field(default_factory=list)  # warnings for the main process to show


def plan_run(output_dir: str, resume: str | None, overwrite: bool) -> RunPlan:
    """Decide fresh run or resume and check the folder holds no other run (``--overwrite_output_dir`` removes them).

    Raises:
        ValueError: a fresh run into a folder holding checkpoints or a finished pipeline, a resume into a folder
            holding another run's checkpoints (both without ``--overwrite_output_dir``), or a checkpoint without
            scorekit's per-process state.
    """
    found = [path for _, path in list_checkpoints(output_dir)]
    notes = []
    if resume == "latest" and not found:
        notes.append(f"--resume_from_checkpoint latest: no checkpoint-N folder in {output_dir}; starting a fresh run")
        resume = None
    if resume is None:
        finished = [p for p in (os.path.join(output_dir, "model_index.json"),) if os.path.isfile(p)]
        if (found or finished) and not overwrite:
            held = ", ".join(os.path.basename(p) for p in found + finished)
            raise ValueError(f"--output_dir={output_dir!r} already holds another run ({held}); resume it with "
                             f"--resume_from_checkpoint latest, pass --overwrite_output_dir to delete its checkpoints "
                             f"and start afresh, or choose another --output_dir")
        extra = [os.path.join(output_dir, FINISHED_MARKER)] if found or finished else []
        leftovers = [os.path.join(output_dir, d) for d in os.listdir(output_dir) if d.startswith(".tmp-checkpoint-")] \
            if os.path.isdir(output_dir) else []
        return RunPlan(uuid.uuid4().hex[:12], remove=found + extra + leftovers, notes=notes)
    path = found[-1] if resume == "latest" else os.path.normpath(resume)
    m = _PATTERN.match(os.path.basename(path))
    if not m or not os.path.isdir(path):
        raise ValueError(f"--resume_from_checkpoint={resume!r} is not a checkpoint-<step> folder")
    record = read_run_record(path)
    if "run_id" not in record:
        raise ValueError(f"--resume_from_checkpoint: {path} has no {RUN_RECORD} (written by an older scorekit or "
                         f"another tool), so its per-process state is missing and it cannot resume exactly")
    others = [p for p in found if read_run_record(p).get("run_id") != record["run_id"]]
    if others and not overwrite:
        raise ValueError(f"--output_dir={output_dir!r} holds checkpoints of another run than {path} "
                         f"({', '.join(os.path.basename(p) for p in others)}); pass --overwrite_output_dir to delete "
                         f"them, or move them away")
    return RunPlan(record["run_id"], path, int(m.group(1)), record, others, notes)


def remove_paths(accelerator, paths: list[str]) -> None:
    """Delete ``paths`` (folders or files) on the main process, then synchronise."""
    if accelerator.is_main_process:
        for path in paths:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.isfile(path):
                os.remove(path)
    accelerator.wait_for_everyone()


class TrainingState:
    """What a checkpoint holds beyond accelerate's files: per-process generator and data position, the run record.

    Args:
        generator: this process's training generator (noise, times, label dropout, flips).
        run_id: the id shared by every checkpoint of this run.
        rank: ``accelerator.process_index``.
        num_processes: ``accelerator.num_processes``.
    """

    def __init__(self, generator: torch.Generator, run_id: str, rank: int, num_processes: int):
        self.generator, self.run_id, self.rank, self.num_processes = generator, run_id, rank, num_processes
        self.step, self.max_steps, self.epoch, self.batch, self.last_loss = 0, 0, 0, 0, math.nan

    def save(self, folder: str, is_main: bool) -> None:
        """Write this process's ``scorekit_rank_{rank}.pt``; the main process also writes ``scorekit_run.json``."""
        torch.save({"generator": self.generator.get_state(), "epoch": self.epoch, "batch": self.batch},
                   os.path.join(folder, RANK_STATE.format(self.rank)))
        if is_main:
            record = {"run_id": self.run_id, "step": self.step, "max_steps": self.max_steps,
                      "num_processes": self.num_processes, "last_loss": self.last_loss}
            with open(os.path.join(folder, RUN_RECORD), "w") as f:
                json.dump(record, f, indent=2)

    def load(self, folder: str) -> None:
        """Restore this process's generator and data position from ``folder``."""
        path = os.path.join(folder, RANK_STATE.format(self.rank))
        if not os.path.isfile(path):
            raise ValueError(f"--resume_from_checkpoint: {folder} has no {os.path.basename(path)}: it was written by "
                             f"fewer processes than this run's {self.num_processes}")
        state = torch.load(path, weights_only=True)
        self.generator.set_state(state["generator"])
        self.epoch, self.batch = state["epoch"], state["batch"]


def register_state_hooks(accelerator, state: TrainingState, save_model, subfolder: str, ema=None) -> None:
    """Make ``accelerator.save_state`` / ``load_state`` write and read the diffusers layout and the per-process state.

    Args:
        save_model: ``save_model(unwrapped_model, folder)`` writes ``folder/subfolder`` (the main process calls it).
        subfolder: where ``save_model`` puts the weights (``unet``, ``classifier``); the EMA goes to
            ``{subfolder}_ema``.
        ema: a diffusers ``EMAModel`` to save and restore, or None.
    """
    from safetensors.torch import load_file

    def save_hook(models, weights, output_dir):
        with torch.random.fork_rng(devices=[]):  # building configs for the saves must not move the global RNG
            if accelerator.is_main_process:
                save_model(accelerator.unwrap_model(models[0]), output_dir)
                if ema is not None:
                    ema.save_pretrained(os.path.join(output_dir, f"{subfolder}_ema"))
            state.save(output_dir, accelerator.is_main_process)
        weights.pop()  # the weights live in subfolder/ now: accelerate writes no second copy

    def load_hook(models, input_dir):
        model = accelerator.unwrap_model(models.pop())  # popped: accelerate loads nothing more into it
        model.load_state_dict(load_file(os.path.join(input_dir, subfolder, WEIGHTS)))
        if ema is not None:
            _load_ema(ema, model, os.path.join(input_dir, f"{subfolder}_ema"))
            ema.to(accelerator.device)
        state.load(input_dir)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


EMA_KEYS = ("decay", "min_decay", "optimization_step", "update_after_step", "use_ema_warmup", "inv_gamma", "power")


def _load_ema(ema, model: torch.nn.Module, folder: str) -> None:
    """Restore an ``EMAModel`` from the folder its ``save_pretrained`` wrote (its settings are in the config)."""
    from safetensors.torch import load_file

    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    weights = load_file(os.path.join(folder, WEIGHTS))
    shadow = [weights[name] for name, _ in model.named_parameters()]  # EMAModel keeps parameters() order
    ema.load_state_dict({**{k: config[k] for k in EMA_KEYS}, "shadow_params": shadow})


def save_checkpoint(accelerator, output_dir: str, state: TrainingState, total_limit: int | None) -> str:
    """Save the full training state as ``output_dir/checkpoint-{step}`` (temp folder + rename); returns its path.

    Only this run's checkpoints count towards ``total_limit`` and only they are ever deleted.
    """
    final = os.path.join(output_dir, f"checkpoint-{state.step}")
    tmp = os.path.join(output_dir, f".tmp-checkpoint-{state.step}")
    if accelerator.is_main_process and os.path.isdir(tmp):
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit is not None:
            prune_checkpoints(output_dir, state.run_id, total_limit)
    accelerator.wait_for_everyone()
    return final


def prune_checkpoints(output_dir: str, run_id: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` checkpoints of run ``run_id`` (other runs' are never touched)."""
    mine = [path for _, path in list_checkpoints(output_dir) if read_run_record(path).get("run_id") == run_id]
    doomed = mine[:-keep] if keep > 0 else mine
    for path in doomed:
        shutil.rmtree(path)
    return doomed
