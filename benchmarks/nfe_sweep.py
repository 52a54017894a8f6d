"""NFE sweep of the few-step samplers (issue 9): every solver x time grid x SDE at 5, 10, 15, 20 and 50 NFE.

Targets: the 16-D correlated Gaussian of the tests and a 2-D mixture of five well-separated components with unequal
weights (0.05 ... 0.4), where the mode weights are the hard part. Each cell is ``SW2 / floor`` (the exact-vs-exact
sliced Wasserstein floor of ``samplers.py``) and, for the mixture, the largest ``|z|`` of the component shares
(``z = (share - w) / sqrt(w (1 - w) / n)``, components assigned by the Bayes classifier at t = 0). On the mixture
one x_T draw of a deterministic solver carries the sampling noise of its mode shares into SW2 (one draw measured
0.43 and another 0.24 against a floor of 0.24 with a converged ODE), so its cells average ``--sweep-repeats`` runs
and pool their samples for z. A second table
measures the adaptive exponential integrator against dopri5 at tolerance 1e-5 on the same x_T (error = RMS distance
to a dopri5 solve at tolerance 1e-10, float64). Run through ``python benchmarks/samplers.py --sweep``.
"""

from __future__ import annotations

import math
import sys

import torch
from conftest import MixtureTarget, make_correlated_gaussian, make_sdes

import scorekit
from scorekit.metrics import sliced_wasserstein

BUDGETS = (5, 10, 15, 20, 50)
GRIDS = ("uniform", "logsnr", "karras")
# label, sample() settings, NFE per step (steps = (budget - 1) // per_step; the +1 is the final denoising)
SOLVERS = [
    ("ddim (existing, uniform t)", dict(sampler="ddim"), 1),
    ("dpm++1 (DDIM)", dict(sampler="dpmsolver++", order=1), 1),
    ("dpm++2M", dict(sampler="dpmsolver++", order=2), 1),
    ("dpm++3M", dict(sampler="dpmsolver++", order=3), 1),
    ("dpm++2S", dict(sampler="dpmsolver++-singlestep", order=2), 1),  # singlestep steps count evaluations
    ("dpm++3S", dict(sampler="dpmsolver++-singlestep", order=3), 1),
    ("sde-dpm++2M", dict(sampler="sde-dpmsolver++", order=2), 1),
    ("edm-heun", dict(sampler="edm-heun"), 2),
]


def make_modes_mixture() -> MixtureTarget:
    """Five 2-D components on a circle of radius 4 (std 0.3: > 20 sd apart), weights 0.05, 0.1, 0.15, 0.3, 0.4."""
    angles = torch.arange(5, dtype=torch.float64) * 2 * math.pi / 5
    means = 4 * torch.stack([angles.cos(), angles.sin()], 1)
    covs = 0.09 * torch.eye(2, dtype=torch.float64).expand(5, 2, 2).clone()
    return MixtureTarget(weights=torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4], dtype=torch.float64), means=means,
                         covs=covs)


def max_share_z(x: torch.Tensor, target: MixtureTarget) -> float:
    labels = target.score(scorekit.VPSDE()).class_log_posterior(x, 0.0).argmax(-1)
    n, w = x.shape[0], target.weights
    shares = torch.bincount(labels, minlength=len(w)).double() / n
    return float(((shares - w).abs() / (w * (1 - w) / n).sqrt()).max())


def exact_x_T(target, sde, n: int, generator: torch.Generator) -> torch.Tensor:
    """``x_T ~ p_T`` exactly (``alpha_T x_0 + std_T z``, ``x_0`` exact), not the prior ``N(0, prior_std^2 I)``."""
    x0 = target.score(sde).sample(n, generator)[0].reshape(n, -1)
    alpha, std = sde.marginal_coef(torch.tensor([sde.T], dtype=torch.float64))
    return alpha * x0 + std * torch.randn(x0.shape, generator=generator, dtype=torch.float64)


def sweep_cell(target, sde, kwargs, per_step, budget, grid, ref, floor, args) -> tuple[int, str, float, float]:
    """Mean SW2 / floor over ``repeats`` independent runs of ``n`` samples; the mode-share z of all runs pooled."""
    steps = max(1, (budget - 1) // per_step)
    extra = {} if kwargs["sampler"] == "ddim" else {"time_grid": grid}
    is_mixture = isinstance(target, MixtureTarget) and target.weights.numel() > 1
    sws, xs = [], []
    for r in range(args.sweep_repeats if is_mixture else 1):
        g = torch.Generator().manual_seed(args.seed + 2 + 1000 * r)
        x_T = exact_x_T(target, sde, args.n, g) if args.exact_prior else None
        x, info = scorekit.sample(target.score(sde), sde, (args.n, target.dim), steps=steps, dtype=torch.float64,
                                  generator=g, x_T=x_T, **kwargs, **extra)
        sws.append(sliced_wasserstein(x, ref, args.projections, torch.Generator().manual_seed(args.seed + 1)))
        xs.append(x)
    sw = sum(sws) / len(sws) / floor
    z = max_share_z(torch.cat(xs), target) if is_mixture else float("nan")
    cell = f"{sw:.2f}" + ("" if math.isnan(z) else f" / {z:.1f}")
    return info["nfe"], cell, sw, z


def sweep_table(args, exact_samples, sw2_floor) -> tuple[list[str], list[tuple]]:
    """Rows ``| data | sde | solver | grid | cells per budget |`` and the raw results for the bar summary."""
    head = "| data | sde | solver | grid | " + " | ".join(f"{b} NFE" for b in BUDGETS) + " |"
    lines, results = [head, "|" + "---|" * (4 + len(BUDGETS))], []
    data = {"gaussian16": make_correlated_gaussian(16, seed=0), "mixture5": make_modes_mixture()}
    for name, target in data.items():
        for sde_name in args.sdes:
            sde = make_sdes()[sde_name]
            ref = exact_samples(target, sde, args.n, torch.Generator().manual_seed(args.seed))
            floor = sw2_floor(target, sde, args)[0]
            for label, kwargs, per_step in SOLVERS:
                for grid in GRIDS[:1] if kwargs["sampler"] == "ddim" else GRIDS:
                    cells = []
                    for budget in BUDGETS:
                        nfe, cell, sw, z = sweep_cell(target, sde, kwargs, per_step, budget, grid, ref, floor, args)
                        cells.append(cell if nfe == budget else f"{cell} ({nfe})")
                        results.append((name, sde_name, label, grid, nfe, sw, z))
                    lines.append(f"| {name} | {sde_name} | {label} | {grid} | " + " | ".join(cells) + " |")
                    print(lines[-1], file=sys.stderr, flush=True)
    return lines, results


def bar_summary(results) -> list[str]:
    """Smallest NFE <= 20 at which each (data, sde, solver, grid) has SW <= 1.2 floor and max |z| < 4."""
    lines = ["| data | sde | solvers meeting the bar at <= 20 NFE (smallest NFE) |", "|---|---|---|"]
    keys = sorted({(r[0], r[1]) for r in results})
    for data, sde_name in keys:
        best: dict[str, int] = {}
        for d, s, label, grid, nfe, sw, z in results:
            ok = sw <= 1.2 and (math.isnan(z) or z < 4)
            if d == data and s == sde_name and ok and nfe <= 20:
                key = f"{label} {grid}"
                best[key] = min(best.get(key, nfe), nfe)
        met = ", ".join(f"{k} ({v})" for k, v in sorted(best.items(), key=lambda kv: kv[1])) or "none"
        lines.append(f"| {data} | {sde_name} | {met} |")
    return lines


def adaptive_table(args) -> list[str]:
    """dopri5 at tolerance 1e-5 against the adaptive exponential integrator at several tolerances."""
    lines = ["| data | sde | solver | tol | NFE | RMS error to tol-1e-10 dopri5 |", "|---|---|---|---|---|---|"]
    data = {"gaussian16": make_correlated_gaussian(16, seed=0), "mixture5": make_modes_mixture()}
    for name, target in data.items():
        for sde_name in args.sdes:
            sde = make_sdes()[sde_name]
            score, shape = target.score(sde), (args.adaptive_n, target.dim)
            x_T = sde.prior_sampling(shape, torch.Generator().manual_seed(args.seed), dtype=torch.float64)

            def solve(tol, score=score, sde=sde, shape=shape, x_T=x_T, **kwargs):
                x, info = scorekit.sample(score, sde, shape, x_T=x_T, dtype=torch.float64, denoise=False,
                                          rtol=tol, atol=tol, **kwargs)
                return x, info["nfe"]

            ref, _ = solve(1e-10, sampler="ode", method="dopri5")
            for label, tol, kwargs in [("dopri5", 1e-5, dict(sampler="ode", method="dopri5"))] + [
                    (f"dpmsolver-adaptive {o}", tol, dict(sampler="dpmsolver-adaptive", order=o))
                    for o, tols in ((2, (1e-4, 1e-5)), (3, (1e-3, 5e-4, 2e-4, 1e-4))) for tol in tols]:
                x, nfe = solve(tol, **kwargs)
                err = (x - ref).pow(2).mean().sqrt().item()
                lines.append(f"| {name} | {sde_name} | {label} | {tol:g} | {nfe} | {err:.2e} |")
                print(lines[-1], file=sys.stderr, flush=True)
    return lines


BAR_SOLVERS = [
    ("exact draws (control)", None),
    ("dpm++2M logsnr", dict(sampler="dpmsolver++", order=2, steps=19, time_grid="logsnr")),
    ("dpm++3M logsnr", dict(sampler="dpmsolver++", order=3, steps=19, time_grid="logsnr")),
    ("dpm++3S uniform", dict(sampler="dpmsolver++-singlestep", order=3, steps=18, time_grid="uniform")),
    ("sde-dpm++2M karras", dict(sampler="sde-dpmsolver++", order=2, steps=19, time_grid="karras")),
]


def bar_check(args, exact_samples, sw2_floor) -> list[str]:
    """The bar's rows on the mixture at <= 20 NFE with ``--bar-repeats`` runs, and exact draws as a control.

    SW2 / floor of a converged sampler is itself a random ratio (one run's mode shares move SW2 by ~25 %); the
    control row, exact samples through the same metric, shows how far from 1 a perfect sampler lands.
    """
    target, lines = make_modes_mixture(), ["| sde | x_T | solver | NFE | SW2 / floor (mean ± se) | pooled max |z| |",
                                           "|---|---|---|---|---|---|"]
    for sde_name in [s for s in args.sdes if s in ("vp", "ve")]:
        sde = make_sdes()[sde_name]
        ref = exact_samples(target, sde, args.n, torch.Generator().manual_seed(args.seed))
        floor = sw2_floor(target, sde, args)[0]
        for start in ("prior", "exact p_T"):
            for label, kwargs in BAR_SOLVERS:
                if kwargs is None and start == "exact p_T":
                    continue
                sws, xs, nfe = [], [], 0
                for r in range(args.bar_repeats):
                    g = torch.Generator().manual_seed(args.seed + 7 + 1000 * r)
                    if kwargs is None:
                        x = exact_samples(target, sde, args.n, g)
                    else:
                        x_T = exact_x_T(target, sde, args.n, g) if start != "prior" else None
                        x, info = scorekit.sample(target.score(sde), sde, (args.n, 2), dtype=torch.float64,
                                                  generator=g, x_T=x_T, **kwargs)
                        nfe = info["nfe"]
                    sw = sliced_wasserstein(x, ref, args.projections, torch.Generator().manual_seed(args.seed + 1))
                    sws.append(sw / floor)
                    xs.append(x)
                v = torch.tensor(sws)
                lines.append(f"| {sde_name} | {start} | {label} | {nfe or '-'} | {v.mean():.2f} ± "
                             f"{v.std() / len(v) ** 0.5:.2f} | {max_share_z(torch.cat(xs), target):.1f} |")
                print(lines[-1], file=sys.stderr, flush=True)
    return lines
