"""Training as users launch it: SIGKILL and resume is bit-exact (weights, EMA, optimizer, schedule, every process's
generator and data position), in one process and in two gloo processes on CPU."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from checkpoint_state import assert_same_state

SCRIPT = str(Path(__file__).resolve().parents[1] / "training" / "train_score.py")
FLAGS = ["--dataset", "digits", "--preset", "tiny", "--num_class_embeds", "10", "--train_batch_size", "32",
         "--learning_rate", "1e-3", "--lr_warmup_steps", "2", "--use_ema", "--ema_max_decay", "0.9", "--no_progress",
         "--logger", "none", "--random_flip"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(out: Path, *extra: str) -> str:
    """Run the trainer script in one process; returns its stdout."""
    return subprocess.run([sys.executable, SCRIPT, *FLAGS, "--output_dir", str(out), *extra], check=True, env=ENV,
                          capture_output=True, text=True, timeout=600).stdout


def _kill_after(cmd: list[str], out: Path, checkpoint: str, env: dict) -> None:
    """Start ``cmd`` and SIGKILL it and every process it started once ``out/checkpoint`` exists (torchrun starts its
    workers in sessions of their own, so killing the launcher's process group would leave them training)."""
    import psutil  # an accelerate dependency

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / checkpoint).is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    launcher = psutil.Process(proc.pid)
    for p in [*launcher.children(recursive=True), launcher]:  # the workers first: they are the ones training
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / checkpoint).is_dir(), "no checkpoint before the kill"
    assert not (out / "model_index.json").exists(), "the run finished before the kill: the test proved nothing"


def _assert_same_run(full: Path, resumed: Path, steps: list[int]) -> None:
    for step in steps:
        assert_same_state(full / f"checkpoint-{step}", resumed / f"checkpoint-{step}")
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (full / weights).read_bytes() == (resumed / weights).read_bytes()


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_exact(tmp_path):
    steps = ["--max_train_steps", "12", "--checkpointing_steps", "3"]
    _run(tmp_path / "full", *steps)
    killed = tmp_path / "killed"
    _kill_after([sys.executable, SCRIPT, *FLAGS, "--output_dir", str(killed), *steps], killed, "checkpoint-3", ENV)
    said = _run(killed, *steps, "--resume_from_checkpoint", "latest")
    assert re.search(r"^resuming from checkpoint-(\d+) \(step \1 of 12\)$", said, re.M), said
    assert said.splitlines()[-1].startswith("trained 12 steps, final loss"), said  # the script's summary line
    _assert_same_run(tmp_path / "full", killed, [6, 9, 12])


@pytest.mark.slow  # three launches of two gloo processes: ~1.5 min on the shared 2-core machine
def test_two_processes_killed_and_resumed_are_bit_exact(tmp_path):
    # accelerate 1.15's `--cpu --num_processes 2` starts ONE process unless mpirun is set up; its torchrun launcher
    # (`--multi_gpu`) with ACCELERATE_USE_CPU=true runs two gloo processes on CPU, on machines with or without GPUs.
    env = {**ENV, "ACCELERATE_USE_CPU": "true"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", SCRIPT, *FLAGS,
              "--max_train_steps", "16", "--checkpointing_steps", "4"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run([*launch, "--output_dir", str(full), "--trace_data"], check=True, env=env, capture_output=True,
                   timeout=600)
    traces = [json.loads((full / f"data_trace_{r}.json").read_text()) for r in (0, 1)]
    assert len(traces[0]["batches"]) == len(traces[1]["batches"]) == 16
    assert not set(traces[0]["batches"]) & set(traces[1]["batches"]), "both processes trained on the same batches"
    assert traces[0]["weights"] == traces[1]["weights"], "processes ended with different weights"
    card = (full / "README.md").read_text()
    assert "ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 training/train_score.py" in card
    assert "| global batch size | 64 (32 per process x 2 processes x 1 accumulated) |" in card
    _kill_after([*launch, "--output_dir", str(killed)], killed, "checkpoint-4", env)
    resumed = subprocess.run([*launch, "--output_dir", str(killed), "--resume_from_checkpoint", "latest"],
                             check=True, env=env, capture_output=True, text=True, timeout=600)
    assert "resuming from checkpoint-4 (step 4 of 16)" in resumed.stdout
    assert resumed.stdout.splitlines()[-1].startswith("trained 16 steps")
    _assert_same_run(full, killed, [8, 12, 16])
