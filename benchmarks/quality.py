"""Quality of the shipped models on held-out data: one markdown table per question, printed to stdout.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality.py            # ~10 min on a busy 2-core machine
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality.py --quick    # smoke run

1. A small digits CNN (``digits_cnn.py``) trained on the train split: its test accuracy. It is the judge of guided
   samples and the feature network of FID / KID (torchmetrics with this extractor; nothing downloaded).
2. Guided digits (10 classes x n): the fraction the CNN classifies as the requested class, for classifier-free
   guidance and classifier guidance at several scales, with the per-class diversity (mean pairwise CNN-feature
   distance within a class, over the data's) and the near-copy rate (pixel L2 distance to the nearest training
   digit below the 1st percentile of the held-out digits' own distances: ~1 % for fresh digits).
3. FID / KID against the train split for unconditional samples of each sampler at several NFE (drawn with the
   sharded sampler, ``scorekit sample --num-images``), beside the floor (the held-out test split itself, same n)
   and references (test + Gaussian noise, blurred test).
4. Bits/dim of the test split; PSNR / SSIM of digits inpainting and photo inpainting / colorization against the
   held-out truth, beside naive fills.

The bar (issue 10): at <= 20 NFE guided digits classified as requested >= 98 % by a CNN with >= 97 % test accuracy,
diversity >= 0.8x the data's, almost no near-copies, FID within 5x the floor.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_cnn import DigitsCNN, accuracy, digits_test_unit, train_digits_cnn  # noqa: E402

from scorekit import datasets  # noqa: E402
from scorekit.cli import main as cli  # noqa: E402
from scorekit.cli.sample_shards import load_shards  # noqa: E402
from scorekit.training.data import load_photo_patches  # noqa: E402

SECTIONS = ["guidance", "fid", "bpd", "restoration"]
GUIDED_SAMPLERS = {"dpmsolver++": "DPM-Solver++(2M), logSNR grid", "ddim": "DDIM"}  # 19 steps + 1 denoising = 20 NFE
UNCOND = [  # (label, sampler flags, NFE)
    ("DPM-Solver++(2M) 10", ["--sampler", "dpmsolver++", "--steps", "9"], 10),
    ("DPM-Solver++(2M) 20", ["--sampler", "dpmsolver++", "--steps", "19"], 20),
    ("DDIM 10", ["--sampler", "ddim", "--steps", "9"], 10),
    ("DDIM 20", ["--sampler", "ddim", "--steps", "19"], 20),
    ("DDIM 50", ["--sampler", "ddim", "--steps", "49"], 50),
    ("ODE Heun 10 steps", ["--sampler", "ode", "--method", "heun", "--steps", "10"], 21),
    ("PC 100 steps (+Langevin)", ["--sampler", "pc", "--steps", "100"], 200),
]


def fid_kid(cnn: DigitsCNN, real: torch.Tensor, fakes: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """FID and KID (mean, std over subsets) of each fake set against ``real``, on the CNN's 64-d features."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    cnn.feature_mode = True
    with torch.no_grad():  # KID's cubic kernel needs features of unit scale: divide by the train features' RMS
        scale = float(cnn(real).pow(2).mean().sqrt())
    extractor = _Scaled(cnn, scale)
    n = min(len(x) for x in fakes.values())
    fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False, normalize=True)
    kid = KernelInceptionDistance(feature=extractor, reset_real_features=False, normalize=True, subsets=50,
                                  subset_size=min(100, n))
    fid.update(real, real=True)
    kid.update(real, real=True)
    out = {}
    for name, x in fakes.items():
        fid.reset()
        kid.reset()
        fid.update(x, real=False)
        kid.update(x, real=False)
        k_mean, k_std = kid.compute()
        out[name] = (float(fid.compute()), float(k_mean), float(k_std))
    cnn.feature_mode = False
    return out


class _Scaled(torch.nn.Module):
    num_features = DigitsCNN.num_features

    def __init__(self, cnn: DigitsCNN, scale: float):
        super().__init__()
        self.cnn, self.scale = cnn, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(x) / self.scale


def diversity_ratio(cnn: DigitsCNN, x: torch.Tensor, labels: torch.Tensor, ref: torch.Tensor, ref_labels) -> float:
    """Mean over classes of (mean pairwise feature distance of samples) / (same for the reference digits)."""
    def spread(z, y, k):
        f = cnn.features(z[y == k])
        return torch.pdist(f).mean() if len(f) > 1 else torch.tensor(float("nan"))

    with torch.no_grad():
        ratios = [spread(x, labels, k) / spread(ref, ref_labels, k) for k in range(10)]
    return float(torch.stack(ratios).nanmean())


def near_copy_rate(x: torch.Tensor, train: torch.Tensor, threshold: float) -> float:
    """Fraction of samples whose pixel L2 distance to the nearest training digit is below ``threshold``."""
    return float((torch.cdist(x.flatten(1), train.flatten(1)).min(1).values < threshold).float().mean())


def sharded(model: str, n: int, flags: list[str], out: str, extra: list[str] = ()) -> torch.Tensor:
    """``n`` images via ``scorekit sample --num-images`` (npz shards in ``out``, resumed if present) in [0, 1]."""
    code = cli(["sample", "--model", model, "--num-images", str(n), "--shard-size", "120", "--out", out, *flags,
                *extra])
    if code != 0:
        raise RuntimeError(f"scorekit sample failed for {flags}")
    images, _ = load_shards(out)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def guided(pipe, labels: torch.Tensor, kind: str, scale: float, steps: int, seed: int,
           sampler: str) -> tuple[torch.Tensor, int]:
    """Guided samples in [0, 1] for ``labels`` and their NFE (a batched CFG call counts once)."""
    g = torch.Generator().manual_seed(seed)
    kw = dict(guidance_scale=scale) if kind == "cfg" else dict(guidance_scale=0.0, classifier_scale=scale)
    res = pipe(class_labels=labels, num_inference_steps=steps, generator=g, output_type="pt", sampler=sampler, **kw)
    return res.images.float(), res.nfe


def section_guidance(cnn, pipe, args, train, test, test_labels, threshold) -> list[str]:
    labels = torch.arange(10).repeat(args.per_class)
    rows = ["| guidance | scale | NFE | class accuracy ± binomial SE | diversity / data | near-copies | wall s |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, scales in (("cfg", args.cfg_scales), ("classifier", args.classifier_scales)):
        for scale in scales:
            start = time.perf_counter()
            x, nfe = guided(pipe, labels, kind, scale, 19, args.seed, args.sampler)
            acc = accuracy(cnn, x, labels)
            div = diversity_ratio(cnn, x, labels, test, test_labels)
            copies = near_copy_rate(x, train, threshold)
            se = math.sqrt(acc * (1 - acc) / len(labels))
            rows.append(f"| {kind} | {scale:g} | {nfe} | {acc:.3f} ± {se:.3f} | {div:.2f} | {copies:.3f} | "
                        f"{time.perf_counter() - start:.0f} |")
            print(rows[-1], file=sys.stderr)
    return rows


def section_fid(cnn, args, train, test, work) -> list[str]:
    n = len(test)
    g = torch.Generator().manual_seed(1)
    refs = {"floor: test split": test,
            "test + N(0, 0.05^2) noise": (test + 0.05 * torch.randn(test.shape, generator=g)).clamp(0, 1),
            "test, 3x3 box blur": torch.nn.functional.avg_pool2d(test, 3, 1, 1, count_include_pad=False)}
    fakes, nfe = {}, {}
    runs = UNCOND[: 2 if args.quick else None] + [
        (f"CFG w={w:g}, {GUIDED_SAMPLERS[args.sampler]} 20 (classes balanced)",
         ["--sampler", args.sampler, "--steps", "19", "--class-label", *map(str, range(10)), "--guidance-scale",
          str(w)], 20)
        for w in args.cfg_scales[:2]]
    for label, flags, cost in runs:
        fakes[label] = sharded(args.digits_model, n, flags + ["--seed", str(args.seed)],
                               os.path.join(work, re.sub(r"\W+", "_", label)))
        nfe[label] = cost
        print(f"sampled {label}", file=sys.stderr)
    scores = fid_kid(cnn, train, {**refs, **fakes})
    floor = scores["floor: test split"][0]
    rows = [f"FID / KID against the train split ({len(train)} digits), {n} images each, CNN features (64-d)", "",
            "| set | NFE | FID | FID / floor | KID x 1e3 (± std over 50 subsets of 100) |",
            "|---|---:|---:|---:|---:|"]
    for name, (fid, k, ks) in scores.items():
        rows.append(f"| {name} | {nfe.get(name, '-')} | {fid:.3f} | {fid / floor:.2f} | {1e3 * k:.2f} ± "
                    f"{1e3 * ks:.2f} |")
    return rows


def gaussian_restoration(train: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None,
                         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior mean and one posterior sample of a Gaussian fitted to ``train`` (a linear reference model).

    Inpainting observes the pixels where ``mask`` is 0; colorization (``mask`` None) observes the gray coordinate
    ``(r + g + b) / sqrt(3)`` of every pixel, i.e. the first rows of ``Q = DECOUPLE (x) I`` in the orthonormal
    gray/chroma basis. In the basis ``y = Q x`` the posterior is the Schur complement
    (:func:`scorekit.analytic.gaussian_conditional`); ``x = Q^T y``. Images ``(N, C, H, W)`` in [0, 1].
    """
    from scorekit.analytic import gaussian_conditional
    from scorekit.conditioning.colorize import DECOUPLE

    c, hw = truth.shape[1], truth.shape[2] * truth.shape[3]
    flat = train.flatten(1).double()
    mean, cov = flat.mean(0), torch.cov(flat.T) + 1e-6 * torch.eye(flat.shape[1], dtype=torch.float64)
    if mask is None:
        q = torch.kron(DECOUPLE, torch.eye(hw, dtype=torch.float64))  # channel-major flattening (C, H, W)
        observed = torch.arange(c * hw) < hw
    else:
        q = torch.eye(c * hw, dtype=torch.float64)
        observed = ~mask.expand(-1, c, -1, -1)[0].flatten().bool()
    m_y, s_y = q @ mean, q @ cov @ q.T
    means, draws = [], []
    for x in truth.flatten(1).double():
        y = q @ x
        m, s = gaussian_conditional(m_y, s_y, observed, y[observed])
        root = torch.linalg.cholesky(s + 1e-9 * torch.eye(len(s), dtype=torch.float64))
        z = torch.randn(len(m), generator=generator, dtype=torch.float64)
        for sample in (m, m + root @ z):
            y_full = y.clone()
            y_full[~observed] = sample
            (means if sample is m else draws).append(q.T @ y_full)
    shape = truth.shape
    return (torch.stack(means).float().reshape(shape).clamp(0, 1),
            torch.stack(draws).float().reshape(shape).clamp(0, 1))


def section_restoration(pipe, photo_path: str, args) -> list[str]:
    """PSNR / SSIM of one posterior sample and of the mean of ``args.restore_samples`` samples per image (an
    estimate of the posterior mean, the MSE-optimal answer) against the held-out truth, beside a naive fill."""

    from scorekit.cli.demo_sections import sibling
    from scorekit.pipelines import ScoreSDEColorizationPipeline, ScoreSDEInpaintPipeline

    k = args.restore_samples
    rows = [f"| task | data | model | NFE | PSNR dB (1 sample) | SSIM (1 sample) | PSNR dB (mean of {k} / exact "
            "mean) |", "|---|---|---|---:|---:|---:|---:|"]
    digits, _ = digits_test_unit()
    digits = digits[: args.restore_num]
    mask = torch.zeros_like(digits)
    mask[..., 4:, :] = 1
    photos = datasets.photo_patches("test", args.restore_num, seed=args.seed)
    pmask = torch.zeros_like(photos[:, :1])
    pmask[..., 4:12, 4:12] = 1
    photo_pipe = ScoreSDEInpaintPipeline.from_pretrained(photo_path)
    photo_pipe.set_progress_bar_config(disable=True)
    train_digits = datasets.levels_to_unit(datasets.digits_split("train")[0])
    train_photos = load_photo_patches("train", photos.shape[-1])
    tasks = [("inpainting (bottom half)", "test digits", sibling(ScoreSDEInpaintPipeline, pipe), digits, mask, 3,
              train_digits),
             ("inpainting (centre 8x8)", "held-out photo patches", photo_pipe, photos, pmask, 7, train_photos),
             ("colorization", "held-out photo patches", sibling(ScoreSDEColorizationPipeline, photo_pipe), photos,
              None, 7, train_photos)]
    for name, data, p, truth, m, kernel, train in tasks:
        g = torch.Generator().manual_seed(args.seed)
        kw = dict(image=truth.repeat_interleave(k, 0))
        if m is not None:
            kw["mask_image"] = m.repeat_interleave(k, 0)
        res = p(**kw, num_inference_steps=args.pc_steps, generator=g, output_type="pt", sampler="pc")
        x = res.images.float().reshape(len(truth), k, *truth.shape[1:])
        if m is None:
            naive = truth.mean(1, keepdim=True).expand_as(truth)  # the gray image itself
        else:
            fill = (truth * (1 - m)).sum((2, 3), keepdim=True) / (1 - m).sum((2, 3), keepdim=True)
            naive = torch.where(m.bool(), fill, truth)  # masked pixels = mean of the known ones
        exact_mean, exact_draw = gaussian_restoration(train, truth, m, torch.Generator().manual_seed(args.seed))
        naive_name = "naive fill (" + ("the gray image" if m is None else "mean of the known pixels") + ")"
        rows += [_restoration_row(f"| {name} | {data} | {model} | {nfe} |", one, mean, truth, kernel)
                 for model, nfe, one, mean in (("**score model** (PC + Langevin)", res.nfe, x[:, 0], x.mean(1)),
                                               ("Gaussian fit to the train data (exact posterior)", "-", exact_draw,
                                                exact_mean),
                                               (naive_name, "-", naive, None))]
        print("\n".join(rows[-3:]), file=sys.stderr)
    return rows


def _restoration_row(prefix: str, one: torch.Tensor, mean: torch.Tensor | None, truth: torch.Tensor,
                     kernel: int) -> str:
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    from scorekit.cli.demo_sections import psnr

    return (f"{prefix} {psnr(one, truth):.2f} | {float(ssim(one, truth, data_range=1.0, kernel_size=kernel)):.3f} | "
            + ("-" if mean is None else f"{psnr(mean, truth):.2f}") + " |")


def section_bpd(pipe, args) -> list[str]:
    import scorekit

    levels, _ = datasets.digits_split("test")
    levels = levels[: args.bpd_num]
    start = time.perf_counter()
    bpd, info = scorekit.bits_per_dim(pipe.score_fn(), pipe.sde, levels, num_levels=datasets.DIGITS_LEVELS,
                                      data_range=datasets.DIGITS_DATA_RANGE, rtol=1e-4, atol=1e-4,
                                      generator=torch.Generator().manual_seed(args.seed))
    return ["| bits/dim (test split) | ± stderr | digits | NFE | uniform over 17 levels | wall s |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {float(bpd.mean()):.3f} | {float(bpd.std() / math.sqrt(len(bpd))):.3f} | {len(bpd)} | {info['nfe']} "
            f"| {math.log2(17):.3f} | {time.perf_counter() - start:.0f} |"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer samples and configurations (smoke run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="folder for the sample shards (default: a temporary folder)")
    p.add_argument("--cfg-scales", type=float, nargs="+", default=None, help="classifier-free guidance weights")
    p.add_argument("--classifier-scales", type=float, nargs="*", default=None,
                   help="classifier guidance scales (none: skip classifier guidance)")
    p.add_argument("--sections", nargs="+", default=SECTIONS, choices=SECTIONS, help="what to measure")
    p.add_argument("--sampler", choices=sorted(GUIDED_SAMPLERS), default="dpmsolver++",
                   help="sampler of the guided rows and the CFG FID rows (19 steps + 1 denoising call = 20 NFE)")
    p.add_argument("--digits-model", default="scorekit/digits",
                   help="digits pipeline: a shipped short name or a folder (e.g. a retrained run to compare)")
    p.add_argument("--photos-model", default="scorekit/photos",
                   help="photo pipeline: a shipped short name or a folder")
    a = p.parse_args()
    a.per_class = 10 if a.quick else 36
    a.cfg_scales = a.cfg_scales or ([1.0, 3.0] if a.quick else [1.0, 1.5, 2.0, 3.0, 5.0])
    if a.classifier_scales is None:
        a.classifier_scales = [3.0] if a.quick else [1.0, 3.0, 5.0, 10.0]
    a.restore_num, a.restore_samples, a.pc_steps, a.bpd_num = (8, 2, 50, 40) if a.quick else (64, 4, 200, 360)
    from scorekit.pipelines import ScoreSDEClassConditionalPipeline

    torch.manual_seed(a.seed)
    start = time.perf_counter()
    cnn, test_acc = train_digits_cnn(seed=a.seed)
    train = datasets.levels_to_unit(datasets.digits_split("train")[0])
    test, test_labels = digits_test_unit()
    nn_test = torch.cdist(test.flatten(1), train.flatten(1)).min(1).values
    threshold = float(torch.quantile(nn_test, 0.01))
    pipe = ScoreSDEClassConditionalPipeline.from_pretrained(a.digits_model)
    pipe.set_progress_bar_config(disable=True)
    print(f"## scorekit quality benchmark{' (--quick)' if a.quick else ''}\n\n"
          f"Digits CNN (train split only): test accuracy {test_acc:.4f} on {len(test)} held-out digits.\n"
          f"Near-copy threshold: pixel L2 {threshold:.3f} (1st percentile of test-to-train nearest distances).\n")
    if "guidance" in a.sections:
        print(f"### Guided digits, {GUIDED_SAMPLERS[a.sampler]} 19 steps (+1 denoising = 20 NFE), "
              f"{10 * a.per_class} samples each\n")
        print("\n".join(section_guidance(cnn, pipe, a, train, test, test_labels, threshold)) + "\n")
    if "fid" in a.sections:
        with tempfile.TemporaryDirectory() as tmp:
            print("### Unconditional samples: FID / KID\n")
            print("\n".join(section_fid(cnn, a, train, test, a.work or tmp)) + "\n")
    if "bpd" in a.sections:
        print("### Held-out likelihood\n")
        print("\n".join(section_bpd(pipe, a)) + "\n")
    if "restoration" in a.sections:
        print("### Restoration against held-out truth (PC sampler + Langevin corrector)\n")
        print("\n".join(section_restoration(pipe, a.photos_model, a)) + "\n")
    print(f"Total wall time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
