"""``scorekit demo``: the main job of ``make demo`` — the shipped models at work on real data, in one folder.

Writes, from the checkpoints that ship inside the package (``scorekit/digits``, ``scorekit/digits-unconditional``,
``scorekit/photos``; no download): an unconditional digits grid; one row per digit by classifier-free guidance and by
classifier guidance; inpainting and 2x super-resolution of held-out test digits; inpainting, colorization and
deblurring of held-out photo patches (each restoration with the method that scored best per sample in
``benchmarks/quality.py``, at the cost stated in its caption, beside the task's trivial baseline); bits/dim of
held-out digits with its standard error; ``summary.json`` and ``index.html``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from tqdm.auto import tqdm

# (full, --quick) sizes: samples and steps of each part. The full run costs ~3 min of CPU time (one thread).
SIZES = {
    "uncond": (64, 16), "uncond_steps": (19, 19),
    "per_class": (8, 4), "guided_steps": (19, 19),  # + 1 final denoising call = 20 NFE
    "digits_num": (8, 4), "photos_num": (6, 3), "restore_per": (4, 3),
    "bpd_num": (360, 40), "bpd_rtol": (1e-4, 1e-3),
}
# Restoration rows: (task of demo_restoration.TASKS, method of its METHODS, steps, --quick steps). DDRM at 100 steps
# (101 NFE) scored best per sample on every task among the methods at <= 101 NFE in benchmarks/quality.py's
# restoration table (README, "Quality of the shipped models"; 2026-12-06), and it takes no network gradient.
RESTORATIONS = [
    ("digits inpainting", "ddrm", 100, 20),
    ("digits super-resolution", "ddrm", 100, 20),
    ("photo inpainting", "ddrm", 100, 20),
    ("photo colorization", "ddrm", 100, 20),
    ("photo deblurring", "ddrm", 100, 20),
]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="show the shipped digits and photo models: samples, guidance, restoration (inpainting, "
                     "super-resolution, colorization, deblurring), bits/dim",
        description="Samples the checkpoints that ship with scorekit (scorekit/digits, scorekit/digits-unconditional, "
                    "scorekit/photos; trained on scikit-learn's 8x8 digits and on patches of scikit-image / "
                    "scikit-learn photos) and writes one folder: PNG grids, summary.json and index.html. Held-out "
                    "digits and photos are used for inpainting, super-resolution, colorization, deblurring and "
                    "bits/dim.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="outputs/demo", help="output folder (created; must not be a file)")
    p.add_argument("--quick", action="store_true", help="fewer samples and steps (about 4x faster)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    # defaults from benchmarks/quality.py (DPM-Solver++ 20 NFE): w = 1.5 gives 99.4 % class accuracy at 0.86x the
    # data's diversity; classifier scale 6 gives 99.2 % at 0.85x
    p.add_argument("--cfg-scale", type=float, default=1.5, help="classifier-free guidance weight w")
    p.add_argument("--classifier-scale", type=float, default=6.0, help="classifier guidance scale")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def check_out_folder(out: str) -> str:
    """The output folder, created; a ValueError when ``out`` is an existing file."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} is a file; expected a folder (existing or to be created)")
    os.makedirs(out, exist_ok=True)
    return out


def run(args: argparse.Namespace) -> int:
    from scorekit.pipelines import ScoreSDEClassConditionalPipeline, ScoreSDEPipeline

    from . import demo_sections as sec
    from .demo_html import write_index

    out = check_out_folder(args.out)
    size = {k: v[1 if args.quick else 0] for k, v in SIZES.items()}
    digits = _load(ScoreSDEClassConditionalPipeline, "scorekit/digits", args.no_progress)
    pipes = {"digits": _load(ScoreSDEPipeline, "scorekit/digits-unconditional", args.no_progress),
             "photos": _load(ScoreSDEPipeline, "scorekit/photos", args.no_progress)}
    start = time.perf_counter()
    parts = [
        ("unconditional digits", lambda: sec.unconditional_digits(pipes["digits"], out, size["uncond"],
                                                                  size["uncond_steps"], args.seed)),
        ("classifier-free guidance", lambda: sec.guided_digits(digits, out, size["per_class"], size["guided_steps"],
                                                               args.cfg_scale, args.seed, "cfg")),
        ("classifier guidance", lambda: sec.guided_digits(digits, out, size["per_class"], size["guided_steps"],
                                                          args.classifier_scale, args.seed, "classifier")),
    ]
    parts += [(task, _restoration(sec, pipes, out, size, task, method, quick_steps if args.quick else steps,
                                  args.seed))
              for task, method, steps, quick_steps in RESTORATIONS]
    parts += [("bits/dim", lambda: sec.digits_bpd(pipes["digits"], size["bpd_num"], size["bpd_rtol"], args.seed))]
    results = {}
    for name, part in tqdm(parts, desc="scorekit demo", disable=args.no_progress):
        results[name] = part()
    summary = _summary(results, args, time.perf_counter() - start)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    figures = [r for r in results.values() if "file" in r]
    index = write_index(out, figures, _headline(summary))
    _report(out, figures, summary, index)
    return 0


def _restoration(sec, pipes: dict, out: str, size: dict, task: str, method: str, steps: int, seed: int):
    from .demo_restoration import TASKS

    data = TASKS[task].data
    return lambda: sec.restoration(pipes[data], out, task, size[f"{data}_num"], size["restore_per"], method, steps,
                                   seed, scale=4 if data == "digits" else 3)


def _load(cls, name: str, no_progress: bool):
    """A shipped pipeline (checksums verified first) as ``cls``, in eval mode."""
    pipe = cls.from_pretrained(name)
    pipe.unet.eval()
    pipe.set_progress_bar_config(disable=no_progress, leave=False)
    return pipe


def _summary(results: dict, args, wall: float) -> dict:
    drop = ("samples", "labels")
    parts = {k: {kk: vv for kk, vv in v.items() if kk not in drop} for k, v in results.items()}
    bpd = results["bits/dim"]
    restoration = {task: {k: results[task][k] for k in ("method", "nfe", "psnr", "psnr_sample_mean", "psnr_baseline")}
                   for task, *_ in RESTORATIONS}
    return dict(wall_seconds=wall, quick=args.quick, seed=args.seed,
                models=["scorekit/digits", "scorekit/digits-unconditional", "scorekit/photos"],
                bits_per_dim=bpd["bpd"], bits_per_dim_stderr=bpd["stderr"], restoration_psnr=restoration, parts=parts)


def _headline(s: dict) -> list[tuple[str, str]]:
    p = s["parts"]
    bpd = p["bits/dim"]
    rows = [("bits/dim, held-out digits", f"{s['bits_per_dim']:.3f} ± {s['bits_per_dim_stderr']:.3f} (stderr over "
                                          f"{bpd['num']} digits; uniform = {bpd['uniform_bpd']:.3f})")]
    rows += [(f"{task} PSNR", f"{r['psnr']:.1f} dB per sample, {r['psnr_sample_mean']:.1f} dB for the mean of the "
                              f"samples of each image (trivial baseline {r['psnr_baseline']:.1f} dB); {r['method']}, "
                              f"NFE {r['nfe']}")
             for task, r in s["restoration_psnr"].items()]
    return rows + [("wall time", f"{s['wall_seconds']:.0f} s" + (" (--quick)" if s["quick"] else ""))]


def _report(out: str, figures: list[dict], summary: dict, index: str) -> None:
    print(f"\nscorekit demo wrote {os.path.abspath(out)}/ in {summary['wall_seconds']:.0f} s:")
    for f in figures:
        print(f"  {f['file']:28s} {f['caption']}")
    for name, value in _headline(summary):
        print(f"  {name}: {value}")
    print(f"  summary.json, and {os.path.abspath(index)} (open it in a browser)")
