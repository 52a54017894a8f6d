"""``scorekit demo``: the main job of ``make demo`` — the shipped models at work on real data, in one folder.

Writes, from the checkpoints that ship inside the package (``scorekit/digits``, ``scorekit/photos``; no download):
an unconditional digits grid; one row per digit by classifier-free guidance and by classifier guidance; inpainting
of held-out test digits; inpainting and colorization of held-out photo patches; bits/dim of held-out digits with
its standard error; ``summary.json`` and ``index.html``.
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
    "inpaint_num": (8, 4), "inpaint_per": (4, 3), "pc_steps": (200, 60),
    "photo_num": (6, 3), "photo_per": (4, 3), "photo_steps": (200, 60),
    "bpd_num": (360, 40), "bpd_rtol": (1e-4, 1e-3),
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="show the shipped digits and photo models: samples, guidance, inpainting, colorization, bits/dim",
        description="Samples the checkpoints that ship with scorekit (scorekit/digits, scorekit/photos; trained on "
                    "scikit-learn's 8x8 digits and on patches of scikit-image / scikit-learn photos) and writes one "
                    "folder: PNG grids, summary.json and index.html. Held-out digits and photos are used for "
                    "inpainting, colorization and bits/dim.",
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
    from scorekit.pipelines import (
        ScoreSDEClassConditionalPipeline,
        ScoreSDEColorizationPipeline,
        ScoreSDEInpaintPipeline,
    )

    from . import demo_sections as sec
    from .demo_html import write_index

    out = check_out_folder(args.out)
    size = {k: v[1 if args.quick else 0] for k, v in SIZES.items()}
    digits = _load(ScoreSDEClassConditionalPipeline, "scorekit/digits", args.no_progress)
    photos_inpaint = _load(ScoreSDEInpaintPipeline, "scorekit/photos", args.no_progress)
    photos_color = sec.sibling(ScoreSDEColorizationPipeline, photos_inpaint)
    start = time.perf_counter()
    parts = [
        ("unconditional digits", lambda: sec.unconditional_digits(digits, out, size["uncond"], size["uncond_steps"],
                                                                  args.seed)),
        ("classifier-free guidance", lambda: sec.guided_digits(digits, out, size["per_class"], size["guided_steps"],
                                                               args.cfg_scale, args.seed, "cfg")),
        ("classifier guidance", lambda: sec.guided_digits(digits, out, size["per_class"], size["guided_steps"],
                                                          args.classifier_scale, args.seed, "classifier")),
        ("digits inpainting", lambda: sec.inpaint_digits(digits, out, size["inpaint_num"], size["inpaint_per"],
                                                         size["pc_steps"], args.seed)),
        ("photo inpainting", lambda: sec.photo_task(photos_inpaint, out, "inpainting", size["photo_num"],
                                                    size["photo_per"], size["photo_steps"], args.seed)),
        ("photo colorization", lambda: sec.photo_task(photos_color, out, "colorization", size["photo_num"],
                                                      size["photo_per"], size["photo_steps"], args.seed)),
        ("bits/dim", lambda: sec.digits_bpd(digits, size["bpd_num"], size["bpd_rtol"], args.seed)),
    ]
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
    return dict(wall_seconds=wall, quick=args.quick, seed=args.seed, models=["scorekit/digits", "scorekit/photos"],
                bits_per_dim=bpd["bpd"], bits_per_dim_stderr=bpd["stderr"],
                digits_inpainting_psnr_masked=results["digits inpainting"]["psnr_masked"],
                photo_inpainting_psnr=results["photo inpainting"]["psnr"],
                photo_colorization_psnr=results["photo colorization"]["psnr"], parts=parts)


def _headline(s: dict) -> list[tuple[str, str]]:
    p = s["parts"]
    return [
        ("bits/dim, held-out digits", f"{s['bits_per_dim']:.3f} ± {s['bits_per_dim_stderr']:.3f} (stderr over "
                                      f"{p['bits/dim']['num']} digits; uniform = {p['bits/dim']['uniform_bpd']:.3f})"),
        ("digits inpainting PSNR (masked half)", f"{s['digits_inpainting_psnr_masked']:.1f} dB"),
        ("photo inpainting PSNR", _photo_psnr(p["photo inpainting"])),
        ("photo colorization PSNR", _photo_psnr(p["photo colorization"])),
        ("wall time", f"{s['wall_seconds']:.0f} s" + (" (--quick)" if s["quick"] else "")),
    ]


def _photo_psnr(part: dict) -> str:
    return (f"{part['psnr']:.1f} dB per sample, {part['psnr_sample_mean']:.1f} dB for the mean of the samples of each "
            f"patch")


def _report(out: str, figures: list[dict], summary: dict, index: str) -> None:
    print(f"\nscorekit demo wrote {os.path.abspath(out)}/ in {summary['wall_seconds']:.0f} s:")
    for f in figures:
        print(f"  {f['file']:28s} {f['caption']}")
    for name, value in _headline(summary):
        print(f"  {name}: {value}")
    print(f"  summary.json, and {os.path.abspath(index)} (open it in a browser)")
