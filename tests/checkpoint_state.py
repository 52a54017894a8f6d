"""Everything a training checkpoint holds, as flat tensors, so tests can compare two checkpoints bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

WEIGHTS = "diffusion_pytorch_model.safetensors"


def checkpoint_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Weights, EMA (weights and step), optimizer state, lr schedule, and every process's generator, data position and
    global RNG states of ``checkpoint``, keyed by name."""
    checkpoint = Path(checkpoint)
    state = {f"unet.{k}": v for k, v in load_file(checkpoint / "unet" / WEIGHTS).items()}
    if (checkpoint / "unet_ema").is_dir():
        state.update({f"ema.{k}": v for k, v in load_file(checkpoint / "unet_ema" / WEIGHTS).items()})
        config = json.loads((checkpoint / "unet_ema" / "config.json").read_text())
        state["ema.optimization_step"] = torch.tensor(config["optimization_step"])
    opt = torch.load(checkpoint / "optimizer.bin", weights_only=True)
    for i, s in opt["state"].items():
        state.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in s.items()})
    sched = torch.load(checkpoint / "scheduler.bin", weights_only=True)
    state.update({f"lr.{k}": torch.tensor(sched[k]) for k in ("_last_lr", "last_epoch", "_step_count")})
    for rank_file in sorted(checkpoint.glob("scorekit_rank_*.pt")):
        rank = torch.load(rank_file, weights_only=True)
        state.update({f"{rank_file.stem}.{k}": torch.as_tensor(v) for k, v in rank.items()})
    for rng_file in sorted(checkpoint.glob("random_states_*.pkl")):
        rng = torch.load(rng_file, weights_only=False)  # our own file (accelerate pickles numpy's state)
        state[f"{rng_file.stem}.torch"] = rng["torch_manual_seed"]
        state[f"{rng_file.stem}.step"] = torch.tensor(rng["step"])
    return state


def assert_same_state(a: Path, b: Path) -> None:
    """Assert two checkpoints hold the same bytes in every tensor."""
    sa, sb = checkpoint_state(a), checkpoint_state(b)
    assert sa.keys() == sb.keys(), sorted(set(sa) ^ set(sb))
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, f"{b} differs from {a} in {differ[:8]}"
