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
   sharded sampler, ``scorekit sample --num-images``) of the unconditional digits model
   (``--digits-unconditional-model``), of the class-conditional model's null label, and of its classifier-free
   guided, class-balanced samples, beside the floor (the held-out test split itself, same n) and references (test +
   Gaussian noise, blurred test).
4. Bits/dim of the test split for both digits models.
5. Restoration (``quality_restoration.py``): every inverse-problem method x task (digits inpainting and 2x
   super-resolution with the unconditional digits model; photo inpainting, colorization and deblurring) with PSNR /
   SSIM of one sample, PSNR of the posterior mean, NFE, calibration and wall time, beside the exact posterior of a
   Gaussian fitted to the training data and the trivial baseline.

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
from quality_restoration import FULL, QUICK, section_restoration  # noqa: E402

from scorekit import datasets  # noqa: E402
from scorekit.cli import main as cli  # noqa: E402
from scorekit.cli.demo_restoration import TASKS  # noqa: E402
from scorekit.cli.sample_shards import load_shards  # noqa: E402

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
    runs = [(f"unconditional model, {label}", args.digits_unconditional_model, flags, cost)
            for label, flags, cost in UNCOND[: 2 if args.quick else None]]
    runs += [(f"class-conditional model, null label, {label}", args.digits_model, flags, cost)
             for label, flags, cost in UNCOND[:2]]
    runs += [(f"CFG w={w:g}, {GUIDED_SAMPLERS[args.sampler]} 20 (classes balanced)", args.digits_model,
              ["--sampler", args.sampler, "--steps", "19", "--class-label", *map(str, range(10)), "--guidance-scale",
               str(w)], 20)
             for w in args.cfg_scales[:2]]
    for label, model, flags, cost in runs:
        fakes[label] = sharded(model, n, flags + ["--seed", str(args.seed)],
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


def section_bpd(pipes: dict, args) -> list[str]:
    """Bits/dim of the test split under each digits pipeline in ``pipes`` (name -> pipeline)."""
    import scorekit

    levels, _ = datasets.digits_split("test")
    levels = levels[: args.bpd_num]
    rows = ["| model | bits/dim (test split) | ± stderr | digits | NFE | uniform over 17 levels | wall s |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for name, pipe in pipes.items():
        start = time.perf_counter()
        bpd, info = scorekit.bits_per_dim(pipe.score_fn(), pipe.sde, levels, num_levels=datasets.DIGITS_LEVELS,
                                          data_range=datasets.DIGITS_DATA_RANGE, rtol=1e-4, atol=1e-4,
                                          generator=torch.Generator().manual_seed(args.seed))
        rows.append(f"| {name} | {float(bpd.mean()):.3f} | {float(bpd.std() / math.sqrt(len(bpd))):.3f} | "
                    f"{len(bpd)} | {info['nfe']} | {math.log2(17):.3f} | {time.perf_counter() - start:.0f} |")
        print(rows[-1], file=sys.stderr)
    return rows


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
                   help="class-conditional digits pipeline of the guided rows (CFG and classifier guidance) and the "
                        "null-label rows: a shipped short name or a folder (e.g. a retrained run to compare)")
    p.add_argument("--digits-unconditional-model", default="scorekit/digits-unconditional",
                   help="unconditional digits pipeline of the unconditional FID rows and of digits restoration")
    p.add_argument("--photos-model", default="scorekit/photos",
                   help="photo pipeline: a shipped short name or a folder")
    p.add_argument("--restore-digits", type=int, default=None, help="held-out digits per restoration task "
                   "(default 12, --quick 4)")
    p.add_argument("--restore-photos", type=int, default=None, help="held-out photo patches per restoration task "
                   "(default 4, --quick 2)")
    p.add_argument("--restore-samples", type=int, default=16, help="restorations per image (calibration needs 16)")
    p.add_argument("--restore-tasks", nargs="+", default=None, choices=sorted(TASKS), metavar="TASK",
                   help=f"restoration tasks to measure (default: all; choices: {', '.join(sorted(TASKS))})")
    a = p.parse_args()
    a.per_class = 10 if a.quick else 36
    a.cfg_scales = a.cfg_scales or ([1.0, 3.0] if a.quick else [1.0, 1.5, 2.0, 3.0, 5.0])
    if a.classifier_scales is None:
        a.classifier_scales = [3.0] if a.quick else [1.0, 3.0, 5.0, 10.0]
    a.restore_digits = (4 if a.quick else 12) if a.restore_digits is None else a.restore_digits
    a.restore_photos = (2 if a.quick else 4) if a.restore_photos is None else a.restore_photos
    for flag, value, least in (("--restore-digits", a.restore_digits, 1), ("--restore-photos", a.restore_photos, 1),
                               ("--restore-samples", a.restore_samples, 2)):  # a mean and an interval need 2
        if value < least:
            p.error(f"{flag} must be >= {least}, got {value}")
    a.restore_runs = QUICK if a.quick else FULL
    a.bpd_num = 40 if a.quick else 360
    from scorekit.pipelines import ScoreSDEClassConditionalPipeline, ScoreSDEPipeline

    torch.manual_seed(a.seed)
    start = time.perf_counter()
    cnn, test_acc = train_digits_cnn(seed=a.seed)
    train = datasets.levels_to_unit(datasets.digits_split("train")[0])
    test, test_labels = digits_test_unit()
    nn_test = torch.cdist(test.flatten(1), train.flatten(1)).min(1).values
    threshold = float(torch.quantile(nn_test, 0.01))
    pipe = ScoreSDEClassConditionalPipeline.from_pretrained(a.digits_model)
    uncond, photos = (ScoreSDEPipeline.from_pretrained(m) for m in (a.digits_unconditional_model, a.photos_model))
    for each in (pipe, uncond, photos):
        each.set_progress_bar_config(disable=True)
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
        print("\n".join(section_bpd({a.digits_unconditional_model: uncond,
                                      f"{a.digits_model} (null label)": pipe}, a)) + "\n")
    if "restoration" in a.sections:
        print(f"### Restoration against held-out truth ({a.restore_digits} digits / {a.restore_photos} photo patches "
              f"per task, {a.restore_samples} samples each)\n")
        table, bar = section_restoration({"digits": uncond, "photos": photos}, a)
        print("\n".join(table) + "\n\nWhat the Gaussian reference predicts (squared errors 2 tr(S) / D for a "
              "sample, tr(S) / D for the exact mean), beside the baseline and the best method by one sample:\n\n"
              + "\n".join(bar) + "\n")
    print(f"Total wall time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
