"""Train the noise-conditional digits classifier that ships in ``scorekit/digits`` (one process, CPU, minutes).

    OMP_NUM_THREADS=1 python tools/train_shipped.py --steps 1000 --out DIR    # writes DIR/classifier/

A ``TimeClassifierModel`` (positional time embedding, fed ``t * (N - 1)`` like the epsilon UNet) learns
``p_t(y | x_t)`` on the digits train split (``scorekit.training.data``, mapped to [-1, 1] as the score trainer does)
perturbed by the shipped VP SDE, with ``scorekit.training.losses.classifier_loss`` (cross-entropy, t ~ U(1e-5, 1)),
AdamW with cosine decay and an EMA of the weights (what is saved). Stand-in until the project's accelerate
classifier trainer lands; the model card records this command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
from diffusers.training_utils import EMAModel

from scorekit.models import TimeClassifierModel
from scorekit.sde import VPSDE
from scorekit.training.data import load_digits_split
from scorekit.training.losses import classifier_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    sde = VPSDE()
    images, labels = load_digits_split("train")
    x_all = 2 * images - 1
    model = TimeClassifierModel(in_channels=1, sample_size=8, num_classes=10, block_out_channels=(32, 64),
                                layers_per_block=2, time_embedding_type="positional")
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s
                                                                                                        / a.steps)))
    ema = EMAModel(model.parameters(), decay=a.ema)
    start = time.time()
    for step in range(1, a.steps + 1):
        idx = torch.randint(len(x_all), (a.batch_size,), generator=g)
        loss = classifier_loss(lambda x, t: model(x, model.time_input(sde, t)).logits, sde, x_all[idx], labels[idx],
                               g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.step(model.parameters())
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    ema.copy_to(model.parameters())
    model.save_pretrained(os.path.join(a.out, "classifier"))
    info = dict(steps=a.steps, batch_size=a.batch_size, lr=a.lr, ema=a.ema, seed=a.seed, wall_s=time.time() - start,
                params=sum(q.numel() for q in model.parameters()))
    with open(os.path.join(a.out, "classifier", "training.json"), "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
