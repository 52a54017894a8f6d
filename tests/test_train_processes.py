"""Training as users launch it: SIGKILL and resume (bit-exact on CPU), and two gloo processes on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = str(Path(__file__).resolve().parents[1] / "training" / "train_score.py")
FLAGS = ["--dataset", "digits", "--preset", "tiny", "--num_class_embeds", "10", "--train_batch_size", "32",
         "--learning_rate", "1e-3", "--lr_warmup_steps", "2", "--use_ema", "--ema_max_decay", "0.9", "--no_progress",
         "--logger", "none", "--random_flip"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(out: Path, *extra: str) -> None:
    subprocess.run([sys.executable, SCRIPT, *FLAGS, "--output_dir", str(out), *extra], check=True, env=ENV,
                   capture_output=True, timeout=600)


def _state(checkpoint: Path) -> dict:
    """Weights, optimizer state, lr schedule and EMA of a checkpoint, as flat tensors."""
    state = {f"model.{k}": v for k, v in load_file(checkpoint / "model.safetensors").items()}
    opt = torch.load(checkpoint / "optimizer.bin", weights_only=True)
    for i, s in opt["state"].items():
        state.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in s.items()})
    state["lr"] = torch.tensor(torch.load(checkpoint / "scheduler.bin", weights_only=True)["_last_lr"])
    ema = torch.load(checkpoint / "custom_checkpoint_1.pkl", weights_only=True)
    state.update({f"ema.{i}": p for i, p in enumerate(ema["shadow_params"])})
    state["ema.step"] = torch.tensor(ema["optimization_step"])
    return state


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_exact(tmp_path):
    steps = ["--max_train_steps", "12", "--checkpointing_steps", "3"]
    _run(tmp_path / "full", *steps)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, SCRIPT, *FLAGS, "--output_dir", str(killed), *steps], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint-3").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model_index.json").exists(), "the run finished before the kill: the test proved nothing"
    assert (killed / "checkpoint-3").is_dir()
    _run(killed, *steps, "--resume_from_checkpoint", "latest")
    a, b = _state(tmp_path / "full" / "checkpoint-12"), _state(killed / "checkpoint-12")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    final_a = load_file(tmp_path / "full" / "unet" / "diffusion_pytorch_model.safetensors")
    final_b = load_file(killed / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


@pytest.mark.slow
def test_two_cpu_processes_see_different_data_and_agree(tmp_path):
    # accelerate 1.15's `--cpu --num_processes 2` starts ONE process unless mpirun is set up; its torchrun launcher
    # (`--multi_gpu`) with ACCELERATE_USE_CPU=true runs two gloo processes on CPU, on machines with or without GPUs.
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", SCRIPT, *FLAGS,
           "--output_dir", str(out), "--max_train_steps", "4", "--checkpointing_steps", "4", "--trace_data"]
    subprocess.run(cmd, check=True, env={**ENV, "ACCELERATE_USE_CPU": "true"}, capture_output=True, timeout=600)
    traces = [json.loads((out / f"data_trace_{r}.json").read_text()) for r in (0, 1)]
    assert len(traces[0]["batches"]) == len(traces[1]["batches"]) == 4
    assert not set(traces[0]["batches"]) & set(traces[1]["batches"]), "both processes trained on the same batches"
    assert traces[0]["weights"] == traces[1]["weights"], "processes ended with different weights"
    assert (out / "model_index.json").is_file()
