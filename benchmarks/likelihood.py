"""PF-ODE likelihood: error to the exact answer, NFE and wall time against the solver tolerance.

Data: a Gaussian in D = 64 whose log-density under every SDE is exact (``scorekit.analytic.GaussianScore``).

Table 1 (solver): axis-aligned covariance with eigenvalues log-spaced in [0.05, 1]. The PF-ODE Jacobian is then
diagonal, so a Rademacher probe gives the exact trace (``v_i^2 = 1``) and the error is the solver's alone. Columns:
``solver`` = |delta + log p_T(z) - log p_eps(x)| (the prior replaced by the exact p_T), ``total`` = |logp - log
p_eps(x)| including the prior mismatch ``log N(z; 0, prior) - log p_T(z)`` (p_T is not exactly the prior), both
mean over the batch in nats, and the total in bits/dim. The torch path (torchdiffeq dopri5) and the scipy path
(solve_ivp RK45, the paper's solver, via numpy round-trips) run on the same inputs.

Table 2 (probes): a correlated covariance (random rotation of the same spectrum), where the Hutchinson estimate has
variance ``2 sum_{i != j} A_ij^2`` with ``A`` the time-integrated Jacobian (closed form for Gaussian data). It compares
the RMS error over the batch with the exact probe standard deviation ``sqrt(var / K)`` and the RMS of the reported
``info["stderr"]``.

Run: ``python benchmarks/likelihood.py`` (about a minute on one CPU core) or ``--quick``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from scorekit.analytic import GaussianScore
from scorekit.likelihood import log_likelihood
from scorekit.sde import get_sde


def gaussian(sde_name: str, dim: int, correlated: bool, seed: int) -> GaussianScore:
    g = torch.Generator().manual_seed(seed)
    mean = 0.5 * torch.randn(dim, generator=g, dtype=torch.float64)
    lam = torch.logspace(math.log10(0.05), 0, dim, dtype=torch.float64)
    q = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))[0] if correlated else None
    cov = q @ torch.diag(lam) @ q.T if correlated else torch.diag(lam)
    return GaussianScore(mean, cov, get_sde(sde_name))


def probe_sd(gs: GaussianScore, num_probes: int) -> float:
    """Exact sd of the K-probe Rademacher mean: A = U diag(1/2 log(c(T) / c(eps))) U^T, var = 2 sum_{i!=j} A_ij^2."""
    alpha, std = gs.sde.marginal_coef(torch.tensor([gs.sde.sampling_eps, gs.sde.T], dtype=torch.float64))
    c = alpha[:, None] ** 2 * gs.evals[0] + std[:, None] ** 2
    a = gs.evecs[0] @ torch.diag(0.5 * torch.log(c[1] / c[0])) @ gs.evecs[0].T
    return math.sqrt(2 * (a.pow(2).sum() - a.diagonal().pow(2).sum()) / num_probes)


def solver_row(gs: GaussianScore, x: torch.Tensor, method: str, tol: float) -> dict:
    start = time.perf_counter()
    logp, info = log_likelihood(gs, gs.sde, x, method=method, rtol=tol, atol=tol,
                                generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    exact = gs.log_prob(x, gs.sde.sampling_eps)
    solver = (info["delta_logp"] + gs.log_prob(info["latent"], gs.sde.T) - exact).abs().mean().item()
    total = (logp - exact).abs().mean().item()
    return {"nfe": info["nfe"], "seconds": seconds, "solver": solver, "total": total,
            "bpd": total / (x[0].numel() * math.log(2))}


def probe_row(gs: GaussianScore, x: torch.Tensor, num_probes: int, tol: float) -> dict:
    logp, info = log_likelihood(gs, gs.sde, x, num_probes=num_probes, rtol=tol, atol=tol,
                                generator=torch.Generator().manual_seed(0))
    err = logp - (info["prior_logp"] - gs.log_prob(info["latent"], gs.sde.T)) - gs.log_prob(x, gs.sde.sampling_eps)
    stderr = "-" if info["stderr"] is None else f"{info['stderr'].pow(2).mean().sqrt().item():.3f}"
    return {"rms_err": err.pow(2).mean().sqrt().item(), "exact_sd": probe_sd(gs, num_probes), "stderr": stderr,
            "nfe": info["nfe"], "nvjp": info["nvjp"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tolerances >= 1e-4, batches 4 and 8, K <= 4")
    parser.add_argument("--dim", type=int, default=64, help="data dimension D")
    parser.add_argument("--batch", type=int, default=8, help="data points per solve")
    parser.add_argument("--probe-batch", type=int, default=32, help="data points of table 2 (RMS over them)")
    parser.add_argument("--tols", type=float, nargs="+", default=[1e-3, 1e-4, 1e-5], help="rtol = atol values")
    parser.add_argument("--probes", type=int, nargs="+", default=[1, 4, 16], help="probe counts of table 2")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny ops: 1 is fastest)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Gaussian and the data")
    args = parser.parse_args(argv)
    if args.quick:
        args.tols, args.batch, args.probe_batch = [t for t in args.tols if t >= 1e-4], 4, 8
        args.probes = [p for p in args.probes if p <= 4]
    torch.set_num_threads(args.threads)
    warm = gaussian("vp", args.dim, correlated=False, seed=args.seed)
    solver_row(warm, warm.sample(1)[0], "dopri5", 1e-2)  # first-call costs (lazy imports) stay out of the timings
    print(f"# PF-ODE log-likelihood, Gaussian D={args.dim}, batch {args.batch}, float64, {args.threads} thread(s)")
    print("\nTable 1: axis-aligned covariance (Rademacher exact): error is solver (+ prior mismatch in 'total')")
    print(f"{'sde':<6} {'solver':<11} {'rtol=atol':>9} {'NFE':>5} {'time s':>7} {'solver err':>11} "
          f"{'total err':>10} {'total bpd':>10}")
    for name in ("vp", "subvp", "ve"):
        gs = gaussian(name, args.dim, correlated=False, seed=args.seed)
        x = gs.sample(args.batch, torch.Generator().manual_seed(args.seed + 1))[0]
        for method in ("dopri5", "scipy_RK45"):
            for tol in args.tols:
                r = solver_row(gs, x, method, tol)
                print(f"{name:<6} {method:<11} {tol:>9.0e} {r['nfe']:>5} {r['seconds']:>7.2f} {r['solver']:>11.2e} "
                      f"{r['total']:>10.2e} {r['bpd']:>10.2e}")
    tol = min(args.tols)
    print(f"\nTable 2: correlated covariance, Rademacher probes, dopri5 rtol=atol={tol:.0e}, batch {args.probe_batch} "
          "(nats, prior mismatch removed)")
    print(f"{'sde':<6} {'K':>3} {'NFE':>5} {'VJPs':>6} {'RMS err':>8} {'exact sd':>9} {'RMS stderr':>11}")
    for name in ("vp", "subvp", "ve"):
        gs = gaussian(name, args.dim, correlated=True, seed=args.seed)
        x = gs.sample(args.probe_batch, torch.Generator().manual_seed(args.seed + 1))[0]
        for k in args.probes:
            r = probe_row(gs, x, k, tol)
            print(f"{name:<6} {k:>3} {r['nfe']:>5} {r['nvjp']:>6} {r['rms_err']:>8.3f} {r['exact_sd']:>9.3f} "
                  f"{r['stderr']:>11}")


if __name__ == "__main__":
    main()
