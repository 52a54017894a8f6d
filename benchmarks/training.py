"""Training throughput: scorekit's trainer against a minimal diffusers + accelerate DSM loop, 1 vs 2 processes.

Run: python benchmarks/training.py [--steps 40] [--batch 64] [--preset small] [--mixed_precision no]

Both sides train the same class-conditional UNet2DModel preset on the bundled 8x8 digits with the same batch,
precision, AdamW and VP epsilon loss, in the same run, timed over the same number of optimizer steps (after one
untimed warm-up step each). The trainer also does its bookkeeping (EMA, gradient clipping, label dropout, lr schedule,
a final checkpoint); the minimal loop does none. Images/s count images over all processes; peak memory is the
largest resident set size of a process (CPU) or ``torch.cuda.max_memory_allocated`` (GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.abspath(__file__)


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def minimal_loop(args) -> dict:
    """The reference: diffusers UNet + accelerate, t ~ U(eps, 1), ||eps_hat - z||^2, AdamW; nothing else."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from scorekit.training.config import build_parser, build_unet
    from scorekit.training.data import load_digits_split

    flags = build_parser().parse_args(["--dataset", "digits", "--output_dir", "-", "--preset", args.preset,
                                       "--num_class_embeds", "10"])
    set_seed(0)
    acc = Accelerator(mixed_precision=args.mixed_precision)
    images, labels = load_digits_split("train")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images * 2 - 1, labels),
                                         batch_size=args.batch, shuffle=True, drop_last=True)
    unet = build_unet(flags, 1, 8)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    unet, opt, loader = acc.prepare(unet, opt, loader)
    step, start, seen = 0, None, 0
    while step <= args.steps:
        for x0, y in loader:
            t = torch.rand(x0.shape[0], device=x0.device) * (1 - 1e-5) + 1e-5
            b = 0.1 * t + 0.5 * t**2 * (20 - 0.1)  # VP: integral of beta
            alpha, std = torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))
            z = torch.randn_like(x0)
            x_t = alpha[:, None, None, None] * x0 + std[:, None, None, None] * z
            loss = ((unet(x_t, t * 999, class_labels=y).sample - z) ** 2).mean()
            acc.backward(loss)
            opt.step()
            opt.zero_grad()
            step += 1
            if step == 1:
                start = time.perf_counter()  # one untimed warm-up step
            else:
                seen += x0.shape[0] * acc.num_processes
            if step > args.steps:
                break
    return {"images_per_second": seen / (time.perf_counter() - start), "peak_mb": peak_memory_mb()}


def trainer(args) -> dict:
    """scorekit's trainer with EMA, clipping and label dropout (its loop timer starts at the first step)."""
    from scorekit.training.train_score import main

    with tempfile.TemporaryDirectory() as out:
        result = main(["--dataset", "digits", "--num_class_embeds", "10", "--preset", args.preset,
                       "--train_batch_size", str(args.batch), "--max_train_steps", str(args.steps + 1),
                       "--checkpointing_steps", str(10**6), "--use_ema", "--ema_max_decay", "0.995",
                       "--learning_rate", "1e-3", "--mixed_precision", args.mixed_precision, "--no_progress",
                       "--logger", "none", "--output_dir", out])
    return {"images_per_second": result["images_per_second"], "peak_mb": peak_memory_mb()}


def worker(args) -> None:
    result = (trainer if args.worker == "trainer" else minimal_loop)(args)
    rank = int(os.environ.get("RANK", "0"))
    with open(f"{args.result}.{rank}", "w") as f:
        json.dump(result, f)


def launch(kind: str, processes: int, args) -> dict:
    """Run one side in fresh processes (accelerate's launcher; CPU gloo when there is no GPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", args.mixed_precision, "--dynamo_backend", "no"]
        if processes > 1:
            cmd.append("--multi_gpu")
        cmd += [HERE, "--worker", kind, "--result", result, "--steps", str(args.steps), "--batch", str(args.batch),
                "--preset", args.preset, "--mixed_precision", args.mixed_precision]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        if not torch.cuda.is_available():
            env["ACCELERATE_USE_CPU"] = "true"
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        ranks = [json.load(open(f"{result}.{r}")) for r in range(processes)]
    return {"images_per_second": ranks[0]["images_per_second"], "peak_mb": max(r["peak_mb"] for r in ranks)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps per run")
    parser.add_argument("--batch", type=int, default=64, help="per-process batch size")
    parser.add_argument("--preset", default="small", help="UNet preset of training/config.py")
    parser.add_argument("--mixed_precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per process (CPU)")
    parser.add_argument("--processes", default="1,2", help="process counts to compare")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {args.threads} thread(s)/process"
    print(f"{args.preset} UNet, digits 8x8, batch {args.batch}/process, {args.mixed_precision}, {device}")
    print(f"{'processes':>9s} {'minimal img/s':>14s} {'trainer img/s':>14s} {'ratio':>6s} "
          f"{'peak MB min/trainer':>20s}")
    for p in (int(s) for s in args.processes.split(",")):
        ref, ours = launch("minimal", p, args), launch("trainer", p, args)
        ratio = ours["images_per_second"] / ref["images_per_second"]
        print(f"{p:9d} {ref['images_per_second']:14.1f} {ours['images_per_second']:14.1f} {ratio:6.2f} "
              f"{ref['peak_mb']:9.0f}/{ours['peak_mb']:<9.0f}")


if __name__ == "__main__":
    main()
