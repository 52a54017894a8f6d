"""The restoration section of ``quality.py``: every inverse-problem method on every task of
``scorekit.cli.demo_restoration`` (held-out digits and photo patches), beside the exact posterior of a Gaussian
fitted to the training data and the task's trivial baseline.

Columns: NFE per returned sample (``info["nfe"]``: particles x score calls for the particle samplers); PSNR of one
sample (from the squared error pooled over every sample of every image, i.e. the expected PSNR of one draw) and
SSIM of one sample (averaged over every sample); PSNR of the posterior mean (the mean of the samples of each
image); calibration (the fraction of true pixels inside each pixel's 90 % interval of the samples, over the hole
for inpainting; :func:`scorekit.cli.demo_restoration.coverage`: with 16 samples exact posterior draws score
15/17 = 0.88 on average); wall time.

The Gaussian rows draw from the exact posterior of ``N(mu, Sigma)`` fitted to the training images (mean and
covariance in the model's range, ``scorekit.analytic.gaussian_posterior``, any operator), clamped to [0, 1] like
the models' samples; their ``2 tr(S) / D`` and ``tr(S) / D`` are what a sample and the exact mean of that model
would score in squared error (:func:`gaussian_prediction`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch

from scorekit import datasets
from scorekit.analytic import gaussian_posterior
from scorekit.cli.demo_restoration import METHODS, TASKS, coverage, expected_coverage, observe, restore
from scorekit.metrics import psnr
from scorekit.training.data import load_photo_patches


@dataclass(frozen=True)
class Run:
    """One method's configuration in the table: ``method`` (a key of ``METHODS``) with ``steps``."""

    method: str
    steps: int


FULL = [Run("replacement-pc", 200), Run("replacement", 400), Run("dps", 1000), Run("pigdm", 100),
        Run("ddrm", 20), Run("ddrm", 100), Run("tds", 50), Run("mcgdiff", 100)]
QUICK = [Run("replacement-pc", 20), Run("dps", 50), Run("pigdm", 20), Run("ddrm", 20), Run("tds", 10),
         Run("mcgdiff", 10)]


def gaussian_reference(pipe, task, truth: torch.Tensor, train: torch.Tensor, k: int, seed: int) -> dict:
    """``k`` exact posterior draws per image of a Gaussian fitted to ``train`` (images in [0, 1]), its posterior
    mean, and the squared errors it predicts (in [0, 1] units): ``samples`` ``(n, k, C, H, W)``, ``mean``,
    ``var`` (``tr(S) / D`` per image)."""
    obs, _ = observe(pipe, task, truth, seed)
    lo, hi = pipe.scheduler.data_range
    flat = pipe.to_model_range(train, torch.float64).flatten(1)
    mu, cov = flat.mean(0), torch.cov(flat.T) + 1e-6 * torch.eye(flat.shape[1], dtype=torch.float64)
    a = obs.operator.matrix()
    g = torch.Generator().manual_seed(seed)
    means, draws, var = [], [], []
    for y in obs.y.double():
        m, s = gaussian_posterior(mu, cov, a, y, obs.sigma_y)
        evals, evecs = torch.linalg.eigh(s)
        root = evecs * evals.clamp_min(0).sqrt()
        draws.append(m + torch.randn(k, len(m), generator=g, dtype=torch.float64) @ root.T)
        means.append(m)
        var.append(float(evals.clamp_min(0).sum()) / len(m) / (hi - lo) ** 2)
    unit = [((torch.stack(v) - lo) / (hi - lo)).float().clamp(0, 1) for v in (means, draws)]
    return dict(mean=unit[0].reshape(truth.shape), samples=unit[1].reshape(len(truth), k, *truth.shape[1:]),
                var=torch.tensor(var))


def metrics(samples: torch.Tensor, truth: torch.Tensor, kernel: int, where: torch.Tensor | None,
            mean: torch.Tensor | None = None) -> dict:
    """PSNR / SSIM of one sample, PSNR of the mean of the samples (or of ``mean``), calibration."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    k = samples.shape[1]
    flat = samples.flatten(0, 1)
    out = dict(psnr1=psnr(samples, truth[:, None]),
               ssim1=float(ssim(flat, truth.repeat_interleave(k, 0), data_range=1.0, kernel_size=kernel)))
    if k > 1:
        out.update(psnr_mean=psnr(samples.mean(1) if mean is None else mean, truth),
                   calibration=coverage(samples, truth, where))
    return out


def row(task: str, name: str, nfe, m: dict, seconds: float | None) -> str:
    cells = [task, name, str(nfe), f"{m['psnr1']:.2f}", f"{m['ssim1']:.3f}",
             f"{m['psnr_mean']:.2f}" if "psnr_mean" in m else "-",
             f"{m['calibration']:.3f}" if "calibration" in m else "-",
             "-" if seconds is None else f"{seconds:.0f}"]
    return "| " + " | ".join(cells) + " |"


def gaussian_prediction(var: torch.Tensor) -> tuple[float, float]:
    """PSNR a posterior sample and the exact posterior mean of the Gaussian model would score on its own data:
    expected squared errors ``2 tr(S) / D`` and ``tr(S) / D`` (mean over images)."""
    v = float(var.mean())
    return -10 * torch.log10(torch.tensor(2 * v)).item(), -10 * torch.log10(torch.tensor(v)).item()


def section_restoration(pipes: dict, args) -> tuple[list[str], list[str]]:
    """The restoration table and the per-task Gaussian prediction table (module doc). ``pipes``: ``{"digits":
    unconditional digits pipeline, "photos": photo pipeline}``; ``args``: ``restore_digits``, ``restore_photos``
    (images per task), ``restore_samples`` (samples per image), ``restore_runs`` (list of :class:`Run`), ``seed``."""
    from digits_cnn import digits_test_unit

    k = args.restore_samples
    test = {"digits": digits_test_unit()[0][: args.restore_digits],
            "photos": datasets.photo_patches("test", args.restore_photos, seed=args.seed)}
    train = {"digits": datasets.levels_to_unit(datasets.digits_split("train")[0]),
             "photos": load_photo_patches("train", 16)}
    kernel = {"digits": 3, "photos": 7}
    rows = [f"| task | method | NFE / sample | PSNR dB (1 sample) | SSIM (1 sample) | PSNR dB (mean of {k}) | "
            f"calibration (exact draws: {expected_coverage(k):.2f}) | wall s |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    bar = ["| task | baseline PSNR | Gaussian: RMS posterior std | Gaussian predicts: 1 sample / exact mean | "
           "Gaussian measured: 1 sample / exact mean | best method: 1 sample / mean of samples |",
           "|---|---:|---:|---:|---:|---|"]
    for task in TASKS.values():
        if args.restore_tasks and task.name not in args.restore_tasks:
            continue
        pipe, truth = pipes[task.data], test[task.data]
        where = task.hole(truth.shape[1:]) if task.kind == "inpaint" else None
        best = None
        for run in args.restore_runs:
            r = restore(pipe, task, truth, k, METHODS[run.method], run.steps, args.seed)
            m = metrics(r["samples"], truth, kernel[task.data], where)
            rows.append(row(task.name, r["method"], r["nfe"], m, r["seconds"]))
            print(rows[-1], file=sys.stderr, flush=True)
            if best is None or m["psnr1"] > best[1]["psnr1"]:
                best = (r["method"], m)
        start = time.perf_counter()
        ref = gaussian_reference(pipe, task, truth, train[task.data], k, args.seed)
        gm = metrics(ref["samples"], truth, kernel[task.data], where, mean=ref["mean"])
        rows.append(row(task.name, "Gaussian fit to the train data (exact posterior)", "-", gm,
                        time.perf_counter() - start))
        _, y = observe(pipe, task, truth, args.seed)
        bm = metrics(task.baseline(y, truth)[:, None], truth, kernel[task.data], where)
        rows.append(row(task.name, f"baseline: {task.baseline_name}", "-", bm, None))
        print("\n".join(rows[-2:]), file=sys.stderr, flush=True)
        one, exact = gaussian_prediction(ref["var"])
        bar.append(f"| {task.name} | {bm['psnr1']:.2f} | {float(ref['var'].mean().sqrt()):.3f} | {one:.2f} / "
                   f"{exact:.2f} | {gm['psnr1']:.2f} / {gm['psnr_mean']:.2f} | {best[0]}: {best[1]['psnr1']:.2f} / "
                   f"{best[1]['psnr_mean']:.2f} |")
    return rows, bar
