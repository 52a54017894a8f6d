"""``scorekit demo``: the main job of ``make demo`` — every sampler on a 2-D mixture with its exact score, a plot,
a table of NFE and error, and a tiny pipeline saved and sampled end to end."""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

import scorekit
from scorekit.analytic import GaussianMixtureScore
from scorekit.metrics import sliced_wasserstein

CONFIGS = [  # (label, scorekit.sample kwargs)
    ("pc: reverse diffusion + Langevin", dict(sampler="pc", steps=250)),
    ("pc: Euler-Maruyama", dict(sampler="pc", predictor="euler_maruyama", corrector="none", steps=500)),
    ("ode: dopri5", dict(sampler="ode", method="dopri5", rtol=1e-4, atol=1e-4)),
    ("ode: Heun", dict(sampler="ode", method="heun", steps=25)),
    ("ddim", dict(sampler="ddim", steps=50)),
    ("dpm-solver++(2M), logSNR grid", dict(sampler="dpmsolver++", order=2, steps=19)),
    ("sde-dpm-solver++(2M), logSNR grid", dict(sampler="sde-dpmsolver++", order=2, steps=19)),
]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run every sampler on a 2-D mixture and sample a tiny pipeline",
        description="Runs each sampler on a 2-D Gaussian mixture whose score is known in closed form, for the VP, "
                    "sub-VP and VE SDEs; prints NFE, wall time and the sliced Wasserstein distance to exact "
                    "samples; saves a scatter plot. Then saves a tiny (untrained) diffusers pipeline and samples "
                    "it through `scorekit sample`, to show the plumbing end to end.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--num-samples", type=int, default=2000, help="samples per run")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=run)


def toy_mixture(sde) -> GaussianMixtureScore:
    """Three correlated 2-D Gaussians, scale ~1 (data the size the paper's hyper-parameters expect)."""
    means = torch.tensor([[-1.5, -0.5], [1.5, -0.5], [0.0, 1.5]])
    rot = torch.tensor([[0.35, 0.15], [0.15, 0.15]])
    covs = torch.stack([rot * 0.5, rot.flip(0).flip(1) * 0.5, torch.diag(torch.tensor([0.15, 0.05]))])
    return GaussianMixtureScore(torch.tensor([0.3, 0.3, 0.4]), means, covs, sde)


def exact_floor(mix: GaussianMixtureScore, n: int, seed: int, repeats: int = 5) -> float:
    """Mean SW2 between independent exact sample sets of size n: what a perfect sampler scores."""
    draws = [mix.sample(n, torch.Generator().manual_seed(seed + 100 + i))[0] for i in range(2 * repeats)]
    return sum(sliced_wasserstein(draws[2 * i], draws[2 * i + 1], generator=torch.Generator().manual_seed(0))
               for i in range(repeats)) / repeats


def run_toy(args) -> list[dict]:
    rows = []
    for sde in (scorekit.VPSDE(), scorekit.SubVPSDE(), scorekit.VESDE()):
        mix = toy_mixture(sde)
        exact, _ = mix.sample(args.num_samples, torch.Generator().manual_seed(args.seed + 1))
        floor = exact_floor(mix, args.num_samples, args.seed)
        for label, kwargs in CONFIGS:
            start = time.perf_counter()
            g = torch.Generator().manual_seed(args.seed)
            x, info = scorekit.sample(mix, sde, (args.num_samples, 2), generator=g, dtype=torch.float64, **kwargs)
            rows.append(dict(sde=sde.name, sampler=label, nfe=info["nfe"], seconds=time.perf_counter() - start,
                             sw2=sliced_wasserstein(x, exact, generator=torch.Generator().manual_seed(0)), floor=floor,
                             x=x, exact=exact))
    return rows


def plot_toy(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sdes = list(dict.fromkeys(r["sde"] for r in rows))
    ncol = len(CONFIGS) + 1
    fig, axes = plt.subplots(len(sdes), ncol, figsize=(2.6 * ncol, 2.6 * len(sdes)), sharex=True, sharey=True)
    for i, name in enumerate(sdes):
        sub = [r for r in rows if r["sde"] == name]
        panels = [("exact", sub[0]["exact"], None)] + [(r["sampler"], r["x"], r) for r in sub]
        for j, (title, pts, r) in enumerate(panels):
            ax = axes[i, j]
            ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4, color="k" if r is None else "C0")
            ax.set_title(title if r is None else f"{title}\nNFE {r['nfe']}, SW2 {r['sw2']:.3f}", fontsize=7)
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-2.5, 3)
        axes[i, 0].set_ylabel(name.upper())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tiny_pipeline(path: str) -> str:
    """Save a tiny untrained pipeline laid out like google/ddpm-cifar10-32 (random weights: the grid is noise)."""
    from diffusers import DDPMScheduler, UNet2DModel

    from scorekit.pipelines import ScoreSDEPipeline

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    ScoreSDEPipeline(unet=unet, scheduler=DDPMScheduler(variance_type="fixed_large")).save_pretrained(path)
    return path


def run(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    rows = run_toy(args)
    print(f"2-D mixture, {args.num_samples} samples; SW2 = sliced Wasserstein-2 to exact samples "
          f"(floor = mean over 5 pairs of exact vs exact)\n")
    print("| SDE | sampler | NFE | SW2 | floor | wall s |\n|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sde']} | {r['sampler']} | {r['nfe']} | {r['sw2']:.4f} | {r['floor']:.4f} | {r['seconds']:.2f} |")
    plot = os.path.join(args.out, "toy_2d.png")
    plot_toy(rows, plot)
    print(f"\nwrote {plot}")
    from . import main

    model = tiny_pipeline(os.path.join(args.out, "tiny-ddpm-pipeline"))
    grid = os.path.join(args.out, "tiny_pipeline_grid.png")
    print(f"saved an untrained tiny pipeline to {model}; sampling it (its images are noise: no training yet)")
    return main(["sample", "--model", model, "--sampler", "dpmsolver++", "--steps", "19",
                 "--batch-size", str(int(math.sqrt(16)) ** 2), "--nrow", "4", "--out", grid, "--seed", str(args.seed)])
