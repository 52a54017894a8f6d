"""Bootstrap trainer of the shipped checkpoints (scorekit/models/shipped/): one file, one process, CPU.

    OMP_NUM_THREADS=1 python tools/train_shipped.py digits --steps 4000 --out scorekit/models/shipped/digits
    OMP_NUM_THREADS=1 python tools/train_shipped.py digits-classifier --steps 3000 --out scorekit/models/shipped/digits
    OMP_NUM_THREADS=1 python tools/train_shipped.py photos --steps 4000 --out scorekit/models/shipped/photos

VP SDE (beta 0.1..20), epsilon parameterization fed ``t * (N - 1)``, loss ``|| eps_theta(x_t, t, y) - eps ||^2``
with ``t ~ U(1e-5, 1)`` (denoising score matching with the likelihood-free weighting lambda = std^2, Song et al. eq. 7).
Digits are dequantized like ``bits_per_dim`` reads them: ``x = -1 + 2 (k + u) / 17``, ``u ~ U[0, 1)``. The digits
UNet takes ``num_class_embeds = 11``: labels 0..9 and 10 = "no label", dropped with probability 0.1 (classifier-free
guidance, Ho & Salimans 2022). The classifier is a noise-conditional ``TimeClassifierModel`` trained by
cross-entropy on ``x_t``. A checkpoint (the EMA weights, as a pipeline folder) is written every ``--save-every``
steps, so the run can be stopped at any time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel

from scorekit import datasets
from scorekit.models import TimeClassifierModel
from scorekit.pipelines import ScoreSDEPipeline
from scorekit.schedulers import ScoreSDEPCScheduler
from scorekit.utils import append_dims

NULL_LABEL = 10
T_EPS = 1e-5


def digits_batch(levels, labels, batch_size, g):
    idx = torch.randint(len(levels), (batch_size,), generator=g)
    u = torch.rand(levels[idx].shape, generator=g)
    return -1 + 2 * (levels[idx].float() + u) / datasets.DIGITS_LEVELS, labels[idx]


def photos_batch(images, batch_size, g):
    x = datasets.random_patches(images, batch_size, 16, g)
    flip = torch.rand(batch_size, generator=g) < 0.5
    x[flip] = x[flip].flip(-1)
    return 2 * x - 1, None


def perturb(x0, sde, g):
    """``x_t = mean(t) x0 + std(t) z`` (the VP perturbation kernel, eq. 29); returns x_t, t, z."""
    t = T_EPS + (1 - T_EPS) * torch.rand(x0.shape[0], generator=g)
    z = torch.randn(x0.shape, generator=g)
    mean, std = sde.marginal_coef(t)
    return append_dims(mean, x0.ndim) * x0 + append_dims(std, x0.ndim) * z, t, z


def build(kind):
    if kind == "digits":
        return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                           layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                           num_class_embeds=NULL_LABEL + 1)
    if kind == "photos":
        return UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
                           layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8)
    return TimeClassifierModel(in_channels=1, sample_size=8, num_classes=10, block_out_channels=(32, 64),
                               layers_per_block=2, time_embedding_type="positional")


def loss_fn(kind, model, x0, y, sde, g):
    xt, t, z = perturb(x0, sde, g)
    if kind == "digits-classifier":
        return F.cross_entropy(model(xt, t * (sde.N - 1)).logits, y)
    if y is not None:
        y = torch.where(torch.rand(y.shape, generator=g) < 0.1, NULL_LABEL, y)
    return F.mse_loss(model(xt, t * (sde.N - 1), class_labels=y).sample, z)


def save(kind, model, ema, out, info):
    scheduler = ScoreSDEPCScheduler(sde_type="vp", prediction_type="epsilon", data_range=(-1.0, 1.0))
    if kind == "digits-classifier":
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(os.path.join(out, "classifier"))
        ema.restore(model.parameters())
    else:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        ScoreSDEPipeline(unet=model, scheduler=scheduler).save_pretrained(out)
        ema.restore(model.parameters())
    with open(os.path.join(out, f"train_{kind}.json"), "w") as f:
        json.dump(info, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["digits", "digits-classifier", "photos"])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    sde = ScoreSDEPCScheduler().sde
    model = build(a.kind)
    if a.kind == "photos":
        images = datasets.photos("train")
        batch = lambda: photos_batch(images, a.batch_size, g)  # noqa: E731
    else:
        levels, labels = datasets.digits_split("train")
        batch = lambda: digits_batch(levels, labels, a.batch_size, g)  # noqa: E731
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 100) * 0.5 *
                                              (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    ema = EMAModel(model.parameters(), decay=a.ema)
    start, running = time.time(), None
    for step in range(1, a.steps + 1):
        x0, y = batch()
        loss = loss_fn(a.kind, model, x0, y, sde, g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.step(model.parameters())
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0:
            print(f"step {step} loss {running:.4f} {time.time() - start:.0f}s", flush=True)
        if step % a.save_every == 0 or step == a.steps:
            info = dict(kind=a.kind, step=step, steps=a.steps, batch_size=a.batch_size, lr=a.lr, ema=a.ema,
                        seed=a.seed, loss=running, wall_s=time.time() - start,
                        params=sum(q.numel() for q in model.parameters()), threads=torch.get_num_threads())
            save(a.kind, model, ema, a.out, info)


if __name__ == "__main__":
    main()
