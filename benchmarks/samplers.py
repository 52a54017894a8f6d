"""Sampler benchmark: sample error against NFE on closed-form targets, and per-step overhead on a tiny UNet.

For VP, sub-VP and VE, on (a) the correlated Gaussian in D = 16 and (b) the 2-D two-component mixture of the test
suite (``tests/conftest.py``), every sampler configuration draws ``--n`` samples with the exact score; the error is
the sliced Wasserstein-2 distance to ``--n`` exact draws, printed beside the exact-vs-exact floor (two independent
exact sets), which is what a perfect sampler would score. A second section times a tiny diffusers ``UNet2DModel``:
bare forward time per call against ``scorekit.sample`` wall time per NFE (and ``ScoreSDEPipeline``'s).

Run ``python benchmarks/samplers.py --help`` for the flags; ``--quick`` for a fast smoke run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import scorekit
from scorekit.metrics import sliced_wasserstein

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_correlated_gaussian, make_mixture_2d, make_sdes  # noqa: E402  (the tests' targets)

# label, sample() settings, step counts (None = adaptive). A row per (config, steps).
CONFIGS = [
    ("pc reverse_diffusion+langevin", dict(sampler="pc", predictor="reverse_diffusion", corrector="langevin"),
     [100, 500]),
    ("pc euler_maruyama+none", dict(sampler="pc", predictor="euler_maruyama", corrector="none"), [100, 500]),
    ("pc ancestral+none", dict(sampler="pc", predictor="ancestral_sampling", corrector="none"), [100, 500]),
    ("pc reverse_diffusion+ald", dict(sampler="pc", predictor="reverse_diffusion", corrector="ald"), [100, 500]),
    ("ode euler", dict(sampler="ode", method="euler"), [50, 200, 1000]),
    ("ode heun", dict(sampler="ode", method="heun"), [25, 50, 100]),
    ("ode dopri5 tol=1e-3", dict(sampler="ode", method="dopri5", rtol=1e-3, atol=1e-3), [None]),
    ("ode dopri5 tol=1e-5", dict(sampler="ode", method="dopri5", rtol=1e-5, atol=1e-5), [None]),
    ("ddim eta=0", dict(sampler="ddim", eta=0.0), [25, 100, 400]),
]
QUICK_STEPS = {"pc": [50], "ode euler": [50], "ode heun": [25], "ddim": [25]}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="fast smoke run: one short step count per sampler, --n 1000, no tolerance 1e-5 dopri5")
    p.add_argument("--n", type=int, default=None, help="samples per configuration (default 4000; 1000 with --quick)")
    p.add_argument("--projections", type=int, default=256, help="random directions of the sliced W2 (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of every torch.Generator used (default 0)")
    p.add_argument("--sdes", nargs="+", default=["vp", "subvp", "ve"], choices=["vp", "subvp", "ve"],
                   help="SDEs to benchmark (default: all three)")
    p.add_argument("--data", nargs="+", default=["gaussian16", "mixture2d"], choices=["gaussian16", "mixture2d"],
                   help="closed-form targets (default: both)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: stable timings on a shared 2-core machine)")
    p.add_argument("--no-unet", action="store_true", help="skip the per-step overhead section on a tiny UNet")
    p.add_argument("--overhead-only", action="store_true", help="run only the per-step overhead section")
    p.add_argument("--device", default="cpu", help="device of the overhead section: cpu or cuda (default cpu)")
    p.add_argument("--unet", choices=list(UNET_CONFIGS), default="tiny",
                   help="UNet of the overhead section: tiny (16x16, 0.4 M parameters) or ddpm-cifar10-32 (the "
                        "config of google/ddpm-cifar10-32, random weights, 35.7 M parameters; default tiny)")
    p.add_argument("--unet-dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="dtype of the UNet in the overhead section (default float32)")
    p.add_argument("--unet-batch", type=int, default=None,
                   help="batch size of the UNet overhead section (default 8 for tiny, 64 for ddpm-cifar10-32)")
    p.add_argument("--unet-steps", type=int, default=20,
                   help="sampler steps of the UNet overhead section (default 20)")
    p.add_argument("--floor-repeats", type=int, default=5,
                   help="independent exact-vs-exact pairs averaged into the floor (default 5)")
    p.add_argument("--sweep", action="store_true",
                   help="run only the few-step NFE sweep (benchmarks/nfe_sweep.py) and the adaptive-solver table")
    p.add_argument("--sweep-repeats", type=int, default=3,
                   help="independent runs averaged per mixture cell of the sweep (default 3)")
    p.add_argument("--exact-prior", action="store_true",
                   help="sweep: start from x_T ~ p_T exactly, not the prior N(0, prior_std^2 I), to separate solver "
                        "error from the prior mismatch (the mixture's mean is not 0: alpha_T |mean| / prior_std)")
    p.add_argument("--bar-check", action="store_true",
                   help="run only the bar's mixture rows at <= 20 NFE with --bar-repeats runs and an exact control")
    p.add_argument("--bar-repeats", type=int, default=10, help="runs per row of --bar-check (default 10)")
    p.add_argument("--adaptive-n", type=int, default=500, help="samples of the adaptive-solver table (default 500)")
    args = p.parse_args(argv)
    args.n = args.n or (1000 if args.quick else 4000)
    return args


def targets(names: list[str]) -> dict:
    built = {"gaussian16": make_correlated_gaussian(16, seed=0), "mixture2d": make_mixture_2d()}
    return {k: built[k] for k in names}


def exact_samples(target, sde, n: int, generator: torch.Generator) -> torch.Tensor:
    return target.score(sde).sample(n, generator)[0].reshape(n, -1)


def sw2_floor(target, sde, args) -> tuple[float, float]:
    """Mean and standard deviation of SW2 between two independent exact sets, over ``--floor-repeats`` pairs."""
    g = torch.Generator().manual_seed(args.seed + 100)
    values = torch.tensor([
        sliced_wasserstein(exact_samples(target, sde, args.n, g), exact_samples(target, sde, args.n, g),
                           args.projections, torch.Generator().manual_seed(args.seed + 1))
        for _ in range(args.floor_repeats)
    ])
    return values.mean().item(), values.std().item() if len(values) > 1 else 0.0


# --- section 1: error against NFE ----------------------------------------------------------------------------------
def rows_to_run(quick: bool):
    for label, kwargs, steps_list in CONFIGS:
        if quick:
            if label == "ode dopri5 tol=1e-5":
                continue
            steps_list = next((v for k, v in QUICK_STEPS.items() if label.startswith(k)), steps_list)
        for steps in steps_list:
            yield label, kwargs, steps


def error_table(args) -> list[str]:
    lines = ["| sde | data | sampler | steps | NFE | SW2 | floor | wall s |", "|---|---|---|---|---|---|---|---|"]
    sdes = make_sdes()
    for data, target in targets(args.data).items():
        dim = target.dim
        for sde_name in args.sdes:
            sde = sdes[sde_name]
            score = target.score(sde)
            ref = exact_samples(target, sde, args.n, torch.Generator().manual_seed(args.seed))
            floor, floor_sd = sw2_floor(target, sde, args)
            for label, kwargs, steps in rows_to_run(args.quick):
                start = time.perf_counter()
                x, info = scorekit.sample(score, sde, (args.n, dim), steps=steps, dtype=torch.float64,
                                          generator=torch.Generator().manual_seed(args.seed + 2), **kwargs)
                wall = time.perf_counter() - start
                sw2 = sliced_wasserstein(x, ref, args.projections, torch.Generator().manual_seed(args.seed + 1))
                lines.append(f"| {sde_name} | {data} | {label} | {steps or 'adaptive'} | {info['nfe']} | "
                             f"{sw2:.4f} | {floor:.4f} ± {floor_sd:.4f} | {wall:.2f} |")
                print(lines[-1], file=sys.stderr, flush=True)
    return lines


# --- section 2: per-step overhead on a UNet ------------------------------------------------------------------------
UNET_CONFIGS = {
    "tiny": dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                 norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "UpBlock2D")),
    # google/ddpm-cifar10-32's unet/config.json, random weights
    "ddpm-cifar10-32": dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                            layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                                                  "DownBlock2D"),
                            up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                            flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, time_embedding_type="positional"),
}
# fixed-step samplers timed against the bare forward (the adaptive dopri5 is listed for reference)
OVERHEAD_SAMPLERS = [("pc", dict(sampler="pc")), ("pc euler_maruyama+none",
                                                  dict(sampler="pc", predictor="euler_maruyama", corrector="none")),
                     ("ald", dict(sampler="ald")), ("ode euler", dict(sampler="ode", method="euler")),
                     ("ode heun", dict(sampler="ode", method="heun")), ("ddim", dict(sampler="ddim"))]


def build_unet(name: str, device: str, dtype: torch.dtype):
    from diffusers import UNet2DModel

    torch.manual_seed(0)  # weight init only; nothing is downloaded
    return UNet2DModel(**UNET_CONFIGS[name]).eval().to(device=device, dtype=dtype)


def tiny_unet():
    return build_unet("tiny", "cpu", torch.float32)


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_of(run, repeats: int = 3, device: str = "cpu"):
    """``(seconds, result)`` of the fastest of ``repeats`` calls of ``run()`` (timings on a shared machine); on CUDA
    the device is synchronised before the clock starts and before it stops."""
    best, result = math.inf, None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def bare_forward_seconds(unet, shape: tuple[int, ...], calls: int, device: str) -> float:
    """Seconds per ``unet(x, t)`` call under ``no_grad``, best of 3 rounds of ``calls`` calls."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=unet.dtype)
    t = torch.full((shape[0],), 500.0, device=device, dtype=unet.dtype)

    def calls_loop():
        for _ in range(calls):
            unet(x, t)

    with torch.no_grad():
        calls_loop()  # warm-up
        return best_of(calls_loop, device=device)[0] / calls


def overhead_table(args) -> list[str]:
    dtype = getattr(torch, args.unet_dtype)
    unet, sde, steps = build_unet(args.unet, args.device, dtype), scorekit.VPSDE(), args.unet_steps
    batch = args.unet_batch or (64 if args.unet == "ddpm-cifar10-32" else 8)
    size = UNET_CONFIGS[args.unet]["sample_size"]
    shape = (batch, 3, size, size)
    bare = bare_forward_seconds(unet, shape, calls=2 * steps, device=args.device)
    lines = [f"UNet2DModel `{args.unet}` ({size}x{size}x3, block_out_channels "
             f"{UNET_CONFIGS[args.unet]['block_out_channels']}, {sum(p.numel() for p in unet.parameters())} "
             f"parameters, random weights), {args.unet_dtype}, batch {batch}, device {args.device}: bare forward "
             f"{1e3 * bare:.2f} ms/call. Every time is the best of 3 runs.",
             "", "| path | sampler | steps | NFE | wall s | ms / NFE | ratio to bare forward |",
             "|---|---|---|---|---|---|---|"]
    for label, kwargs in OVERHEAD_SAMPLERS:
        def run(kwargs=kwargs):
            g = torch.Generator(args.device).manual_seed(args.seed)
            with torch.no_grad():
                return scorekit.sample(scorekit.model_score_fn(unet, sde), sde, shape, steps=steps, dtype=dtype,
                                       device=args.device, generator=g, **kwargs)[1]["nfe"]

        run()  # warm-up (kernels, allocator)
        wall, nfe = best_of(run, device=args.device)
        lines.append(overhead_row("scorekit.sample", label, steps, nfe, wall, bare))
    lines.append(pipeline_row(unet, batch, steps, bare, args.seed, args.device))
    lines.append(ddim_pipeline_row(unet, batch, steps, bare, args.seed, args.device))
    return lines


def overhead_row(path: str, sampler: str, steps: int, nfe: int, wall: float, bare: float) -> str:
    per = wall / nfe
    return f"| {path} | {sampler} | {steps} | {nfe} | {wall:.2f} | {1e3 * per:.2f} | {per / bare:.2f} |"


def pipeline_row(unet, batch: int, steps: int, bare: float, seed: int, device: str = "cpu") -> str:
    try:
        from scorekit import ScoreSDEPCScheduler, ScoreSDEPipeline

        pipe = ScoreSDEPipeline(unet=unet, scheduler=ScoreSDEPCScheduler(sde_type="vp"))
        pipe.set_progress_bar_config(disable=True)
        wall, nfe = best_of(lambda: pipe(batch_size=batch, num_inference_steps=steps, output_type="pt",
                                         generator=torch.Generator(device).manual_seed(seed)).nfe, device=device)
        return overhead_row("ScoreSDEPipeline", "pc", steps, nfe, wall, bare)
    except Exception as err:  # the pipeline is optional here: report why it did not run instead of failing
        return f"| ScoreSDEPipeline | pc | {steps} | - | - | - | not run: {type(err).__name__}: {err} |"


def ddim_pipeline_row(unet, batch: int, steps: int, bare: float, seed: int, device: str = "cpu") -> str:
    """diffusers' own DDIMPipeline on the same UNet (output_type "pt": numpy has no bfloat16)."""
    try:
        from diffusers import DDIMPipeline, DDIMScheduler

        pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000))
        pipe.set_progress_bar_config(disable=True)

        def run():
            pipe(batch_size=batch, num_inference_steps=steps, output_type="pt",
                 generator=torch.Generator(device).manual_seed(seed))
            return steps

        run()  # warm-up
        wall, nfe = best_of(run, device=device)
        return overhead_row("diffusers DDIMPipeline", "ddim", steps, nfe, wall, bare)
    except Exception as err:
        return f"| diffusers DDIMPipeline | ddim | {steps} | - | - | - | not run: {type(err).__name__}: {err} |"


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# scorekit sampler benchmark\n\nn = {args.n} samples per row, sliced W2 over {args.projections} "
          f"projections, seed {args.seed}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"float64 analytic scores.\nfloor = SW2 between two independent exact sample sets of the same size "
          f"(mean ± sd over {args.floor_repeats} pairs).\n")
    start = time.perf_counter()
    if args.bar_check:
        from nfe_sweep import bar_check

        print("\n".join(bar_check(args, exact_samples, sw2_floor)))
        return None
    if args.sweep:
        return run_sweep(args, start)
    if not args.overhead_only:
        print("\n".join(error_table(args)))
    if not args.no_unet:
        print("\n## Per-step overhead\n")
        print("\n".join(overhead_table(args)))
    print(f"\nTotal wall time {time.perf_counter() - start:.1f} s.")


def run_sweep(args, start: float) -> None:
    """The few-step NFE sweep: cells are SW2 / floor, and `` / max |z|`` of the mode shares on the mixture."""
    from nfe_sweep import adaptive_table, bar_summary, sweep_table

    lines, results = sweep_table(args, exact_samples, sw2_floor)
    start_from = "the exact p_T" if args.exact_prior else "the prior N(0, prior_std^2 I)"
    print(f"x_T from {start_from}; mixture cells average {args.sweep_repeats} runs of n = {args.n}.\n")
    print("## NFE sweep (cell: SW2 / floor [/ max mode-share |z|]; (k): the NFE actually used)\n")
    print("\n".join(lines))
    print("\n## The bar: SW2 <= 1.2 x floor and every |z| < 4\n")
    print("\n".join(bar_summary(results)))
    print("\n## Adaptive exponential integrator against dopri5 (pathwise, same x_T)\n")
    print("\n".join(adaptive_table(args)))
    print(f"\nTotal wall time {time.perf_counter() - start:.1f} s.")


if __name__ == "__main__":
    main()
