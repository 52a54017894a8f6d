"""Checkpoints that survive a kill: ``accelerator.save_state`` into a temporary folder, then an atomic rename.

A folder ``checkpoint-{step}`` exists only once complete, so ``--resume_from_checkpoint latest`` never finds a
half-written one; old checkpoints beyond ``--checkpoints_total_limit`` are deleted only after the new one is in place.
"""

from __future__ import annotations

import os
import re
import shutil

import torch

_PATTERN = re.compile(r"^checkpoint-(\d+)$")


class GeneratorState:
    """Makes a ``torch.Generator`` checkpointable with ``accelerator.register_for_checkpointing``."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict:
        return {"rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["rng_state"])


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints ``(step, path)`` in ``output_dir``, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), os.path.join(output_dir, d)) for d in os.listdir(output_dir)
             if (m := _PATTERN.match(d)) and os.path.isdir(os.path.join(output_dir, d))]
    return sorted(found)


def resolve_resume(output_dir: str, resume: str | None) -> tuple[str, int] | None:
    """``(path, step)`` to resume from, ``None`` when ``resume`` is None or "latest" finds no checkpoint."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return (found[-1][1], found[-1][0]) if found else None
    m = _PATTERN.match(os.path.basename(os.path.normpath(resume)))
    if not m or not os.path.isdir(resume):
        raise ValueError(f"--resume_from_checkpoint={resume!r} is not a checkpoint-<step> folder")
    return resume, int(m.group(1))


def save_checkpoint(accelerator, output_dir: str, step: int, total_limit: int | None) -> str:
    """Save the full training state as ``output_dir/checkpoint-{step}`` (temp folder + rename); returns its path."""
    final = os.path.join(output_dir, f"checkpoint-{step}")
    tmp = os.path.join(output_dir, f".tmp-checkpoint-{step}")
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
            for _, old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final
