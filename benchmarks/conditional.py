"""Conditional sampling against exact conditionals: error versus NFE for each sampler and conditioner.

Problems (the same as tests/test_conditioning.py):

- inpaint / colorize: Gaussian data over (3, 4, 4) (D = 48; smooth spatial kernel times a channel covariance with
  unequal channel variances, plus a 0.1 nugget), VP SDE. Inpainting observes the left half of the image; colorization
  observes the gray coordinate of every pixel. The exact conditional is Gaussian (Schur complement).
- guidance: a 2-D mixture of three Gaussians with the exact classifier p_t(y | x); scale 1 guided to component 2
  (weight 0.2), whose exact distribution is the component's Gaussian.

Columns: ``mean chi2/d`` = n |S^{-1/2}(mean_hat - m)|^2 / d and ``cov LRT/df`` = Bartlett-corrected likelihood ratio
statistic for the covariance / its degrees of freedom (both ~1 for exact samples: see the ``exact`` floor row; they
grow linearly with n for a biased sampler, so compare rows at equal n). ``bias2`` = max(chi2 - d, 0) / n estimates
the squared whitened mean bias |S^{-1/2} b|^2 independently of n. ``max|dmean|/sd`` is the largest mean error of a
coordinate in units of its exact conditional standard deviation; ``var ratio`` the mean of var_hat / var_exact.

Section ``inverse`` (``--sections inverse``): the inverse-problem methods on the same Gaussian image data observed
through ``y = A x + sigma_y e`` (tests/conftest.py ``inverse_problem``): inpainting (left half), colorization (channel
mean), 2x super-resolution (average pooling) and a seeded 12 x 48 Gaussian projection, noiseless and with
sigma_y = 0.1. The statistics are computed in the operator's SVD coordinates: the null space when noiseless (the
observed coordinates are fixed), every coordinate when noisy (d = 24, 32, 36, 36 noiseless; 48 noisy). ``residual``
is the mean ``|y - A x|`` per sample (0 for a noiseless method that keeps the observation exactly). ``exact`` rows
are exact posterior draws: the floor.

Run: ``python benchmarks/conditional.py`` (about 3 min on one CPU core for the first section, about 8 more for
``inverse``) or ``--quick`` (about 1 + 3 min).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import scorekit
from scorekit.analytic import GaussianMixtureScore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import (  # noqa: E402  (the tests' problems)
    INVERSE_TASKS,
    gaussian_fit_statistics,
    image_problem,
    inverse_problem,
    run_ddrm,
)

from scorekit.conditioning import DDRM, DPS, PiGDM, Replacement  # noqa: E402

F64 = torch.float64


def image_problem_for_bench(kind: str):
    """``(score_fn, sde, shape_tail, condition, to_target, m, s)``: ``to_target(x) -> (n, d)`` unobserved coords."""
    gauss, condition, p, observed, _, m, s = image_problem(kind)
    return gauss, gauss.sde, (3, 4, 4), condition, lambda x: (x.reshape(len(x), -1) @ p.T)[:, ~observed], m, s


def guidance_problem(label: int = 2):
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=F64)
    covs = torch.tensor([[[0.5, 0.2], [0.2, 0.3]], [[0.3, -0.1], [-0.1, 0.4]], [[0.6, 0.0], [0.0, 0.2]]], dtype=F64)
    mix = GaussianMixtureScore(torch.tensor([0.5, 0.3, 0.2]), means, covs, scorekit.VPSDE())
    condition = scorekit.ClassifierGuidance(mix.class_log_posterior, label)
    return mix, mix.sde, (2,), condition, lambda x: x, mix.means[label], mix.covs[label]


def statistics(xs: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> dict:
    """Mean and covariance statistics of samples ``(n, d)`` against ``N(m, s)`` (module doc)."""
    n, d = xs.shape
    chi2, lrt = gaussian_fit_statistics(xs, m, s)
    sd = s.diag().sqrt()
    return {"mean chi2/d": chi2 / d, "cov LRT/df": lrt / (d * (d + 1) / 2), "bias2": max(chi2 - d, 0) / n,
            "max|dmean|/sd": ((xs.mean(0) - m).abs() / sd).max().item(),
            "var ratio": (xs.var(0) / sd**2).mean().item()}


def sampler_configs(quick: bool) -> list[tuple[str, str, dict]]:
    pc_steps, fixed_steps = ((100, 1000) if quick else (100, 300, 1000)), ((10, 50) if quick else (10, 30, 100))
    cfgs = [("pc", f"predictor only, {s} steps", dict(steps=s, corrector="none")) for s in pc_steps[-1:]]
    cfgs += [("pc", f"+langevin snr .16, {s} steps", dict(steps=s)) for s in pc_steps]
    cfgs += [("pc", "+langevin snr .25, 1000 steps", dict(steps=1000, snr=0.25))]
    cfgs += [("ode", f"dopri5 rtol={r:g}", dict(method="dopri5", rtol=r, atol=r)) for r in (1e-3, 1e-5)]
    cfgs += [("ode", f"heun {s} steps", dict(method="heun", steps=s)) for s in fixed_steps]
    cfgs += [("ddim", f"eta=0 {s} steps", dict(steps=s)) for s in fixed_steps]
    cfgs += [("ddim", f"eta=1 {s} steps", dict(steps=s, eta=1.0)) for s in fixed_steps[-1:]]
    return cfgs


def run(conditioner: str, n: int, quick: bool, seed: int) -> list[dict]:
    score_fn, sde, tail, condition, to_target, m, s = (
        guidance_problem() if conditioner == "guidance" else image_problem_for_bench(conditioner))
    # the floor row: exact draws from a stream independent of the samplers' (a shared seed would couple them)
    z = torch.randn(n, len(m), generator=torch.Generator().manual_seed(seed + 10_000), dtype=F64)
    rows = [{"conditioner": conditioner, "sampler": "exact", "settings": "exact conditional draws", "nfe": 0,
             "seconds": 0.0, **statistics(m + z @ torch.linalg.cholesky(s).T, m, s)}]
    for sampler, label, kwargs in sampler_configs(quick):
        start = time.perf_counter()
        with torch.no_grad():
            x, info = scorekit.sample(score_fn, sde, (n, *tail), sampler, condition=condition, dtype=F64,
                                      generator=torch.Generator().manual_seed(seed), **kwargs)
        rows.append({"conditioner": conditioner, "sampler": sampler, "settings": label, "nfe": info["nfe"],
                     "seconds": time.perf_counter() - start, **statistics(to_target(x), m, s)})
    return rows


def inverse_configs(quick: bool) -> list[tuple[str, str, dict]]:
    """(method, settings, sampler kwargs): the samplers each method runs with (papers' step counts where given)."""
    cfgs = [("replacement", "pc +langevin snr .25, 500 steps", dict(steps=500, snr=0.25)),
            ("replacement", "pc predictor only, 1000 steps", dict(steps=1000, corrector="none")),
            ("dps", "pc predictor only, 1000 steps", dict(steps=1000, corrector="none")),
            ("pigdm", "pc predictor only, 500 steps", dict(steps=500, corrector="none")),
            ("pigdm", "ddim eta=1, 100 steps", dict(sampler="ddim", steps=100, eta=1.0)),
            ("ddrm", "eta .85, eta_b 1, 20 steps", dict(steps=20)),
            ("ddrm", "eta .85, eta_b 1, 200 steps", dict(steps=200))]
    return [c for c in cfgs if not quick or "200 steps" not in c[1] and "ddim" not in c[1]]


def run_inverse(task: str, sigma_y: float, n: int, quick: bool, seed: int) -> list[dict]:
    problem = inverse_problem(task, sigma_y)
    gauss, obs = problem.gauss, problem.observation
    z = torch.randn(n, len(problem.mean), generator=torch.Generator().manual_seed(seed + 10_000), dtype=F64)
    exact = problem.mean + z @ torch.linalg.cholesky(problem.cov).T
    head = {"task": task, "sigma_y": sigma_y}
    rows = [{**head, "method": "exact", "settings": "exact posterior draws", "nfe": 0, "residual": float("nan"),
             "seconds": 0.0, **statistics(exact, problem.mean, problem.cov)}]
    for method, label, kwargs in inverse_configs(quick):
        start, kwargs = time.perf_counter(), dict(kwargs)
        if method == "ddrm":
            x, nfe = run_ddrm(gauss, gauss.sde, (n, 3, 4, 4), DDRM(obs), kwargs["steps"], seed)
        else:
            condition = {"replacement": Replacement, "dps": DPS, "pigdm": PiGDM}[method](obs)
            with torch.no_grad():
                x, info = scorekit.sample(gauss, gauss.sde, (n, 3, 4, 4), kwargs.pop("sampler", "pc"), dtype=F64,
                                          condition=condition, generator=torch.Generator().manual_seed(seed),
                                          **kwargs)
            nfe = info["nfe"]
        residual = obs.residual(x).reshape(n, -1).norm(dim=1).mean().item()
        rows.append({**head, "method": method, "settings": label, "nfe": nfe, "residual": residual,
                     "seconds": time.perf_counter() - start, **statistics(problem.spectral(x), problem.mean,
                                                                          problem.cov)})
    return rows


def print_table(rows: list[dict], first: tuple[str, ...] = ("conditioner", "sampler"), widths_first=(11, 7)) -> None:
    cols = [*first, "settings", "nfe", "mean chi2/d", "bias2", "cov LRT/df", "max|dmean|/sd", "var ratio", "seconds"]
    widths = [*widths_first, 30, 5, 11, 7, 10, 13, 9, 7]
    if "residual" in rows[0]:
        cols.insert(-1, "residual")
        widths.insert(-1, 8)
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        cells = [f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print(" | ".join(c.ljust(w) for c, w in zip(cells, widths)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and settings (about 1 min)")
    parser.add_argument("--n", type=int, default=None, help="samples per run (default 1000, quick 400)")
    parser.add_argument("--conditioners", nargs="+", default=["inpaint", "colorize", "guidance"],
                        choices=["inpaint", "colorize", "guidance"])
    parser.add_argument("--sections", nargs="+", default=["conditional", "inverse"],
                        choices=["conditional", "inverse"])
    parser.add_argument("--tasks", nargs="+", default=list(INVERSE_TASKS), choices=list(INVERSE_TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest at this size)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.n or (400 if args.quick else 1000)
    print(f"n = {n} samples per run, seed {args.seed}; exact samples give mean chi2/d ~ 1 +- {math.sqrt(2 / 24):.2f} "
          f"(d = 24..48) and cov LRT/df ~ 1")
    if "conditional" in args.sections:
        print_table([row for c in args.conditioners for row in run(c, n, args.quick, args.seed)])
    if "inverse" in args.sections:
        rows = [row for task in args.tasks for sigma_y in (0.0, 0.1)
                for row in run_inverse(task, sigma_y, n, args.quick, args.seed)]
        print()
        print_table(rows, ("task", "sigma_y", "method"), (10, 7, 11))


if __name__ == "__main__":
    main()
