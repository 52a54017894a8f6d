"""Posterior sampling for linear inverse problems against exact Gaussian-mixture posteriors: SW2 against NFE.

Problems (``scorekit.analytic_posterior.grid_mixture_problem``, the benchmark of Cardoso et al. 2024, Sec. 4.1): a
25-component unit-variance mixture in d_x = 8, 80, 800 with means ``8 (i, j, i, j, ...)``, observed through a
random ``A`` (d_y = 1, 2, 4; singular values uniform on (0, 1)) with noise ``sigma_y = u * max(s)``; one seed per
cell. VP SDE; every method starts from exact draws of ``p_T`` (the mixture's means are far from 0 at d_x = 800, so
the prior ``N(0, I)`` would bias every method the same way; this isolates the conditioning).

Methods: the particle samplers ``tds`` and ``mcgdiff`` (``scorekit.sample(..., sampler="tds",
condition=TDS(observation), num_particles=K)``, likewise ``MCGdiff``) at several particle counts K and step counts,
one returned sample per run (a particle drawn by its final weight); K = 1 is each method's proposal alone, i.e. an
approximate method (TDS's twisted proposal is reconstruction guidance, MCGdiff's is a soft replacement). The
approximate conditions of ``scorekit.conditioning`` (replacement/DDNM, DPS, ΠGDM) run 100 DDIM (eta = 1) steps and
DDRM its own 100 steps (``sampler="ddrm", condition=DDRM(observation)``) from the same exact ``p_T`` draws.

Columns: ``NFE/sample`` = network evaluations per returned sample (particles x score calls per particle, i.e.
K x (steps + 1): the final Tweedie denoising is one more call; the bar's budget counts K x steps, as the issue does);
``SW2`` = sliced Wasserstein-2 (256 seeded projections) between ``n`` returned samples and ``n`` exact posterior
draws; ``floor`` = SW2 between two independent exact sets of the same ``n``, mean ± sd over ``--floor-repeats``
pairs; ``ok`` = within the floor's noise (SW2 <= floor mean + 2 sd); ``TV modes`` = total variation between the
returned samples' mode shares (labelled by the exact posterior) and the exact posterior weights (its own floor is
printed per cell). **The bar**: at d_x = 8, on every d_y, some method within the floor's noise at K x steps <=
128 x 100 = 12800 per returned sample; at d_x = 80 and 800 the same at <= 25600.

Run: ``OMP_NUM_THREADS=1 python benchmarks/inverse.py`` (full: ~46 min for the particle rows, ~3 min for the
approximate ones, on one busy core) or ``--quick``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import scorekit
from scorekit.analytic_posterior import grid_mixture_problem
from scorekit.conditioning import DDRM, DPS, TDS, MCGdiff, PiGDM, Replacement
from scorekit.conditioning.linear import SVD, LinearOperator, Observation
from scorekit.metrics import sliced_wasserstein

F64 = torch.float64
BUDGET = {8: 128 * 100, 80: 2 * 128 * 100, 800: 2 * 128 * 100}


# --- a low-rank dense operator with the SVD contract, O(d_y d_x) per application -------------------------------------
class _HouseholderSVD:
    """``A = U diag(s) V_r^T`` (``V_r`` ``(D, m)``) completed to an orthonormal ``V`` by the Householder QR of
    ``V_r``: ``V = Q diag(r)`` with ``Q`` the product of ``m`` reflections, so ``V^T x`` costs ``O(m D)``."""

    def __init__(self, u, s, v_r):
        d, m = v_r.shape
        self.a_qr, self.tau = torch.geqrf(v_r)
        self.sign = torch.ones(d, dtype=v_r.dtype)
        self.sign[:m] = self.a_qr.diagonal()[:m].sign()  # R = diag(+-1) for orthonormal columns
        self.u, self.m, self.d = u, m, d
        self.s = torch.zeros(d, dtype=v_r.dtype)
        self.s[:m] = s

    def V_adjoint(self, x):  # (B, D) -> (B, D): diag(r) Q^T x
        c = torch.ormqr(self.a_qr, self.tau, x.reshape(x.shape[0], -1).T.to(F64), left=True, transpose=True).T
        return (c * self.sign).to(x.dtype)

    def V(self, c):
        return torch.ormqr(self.a_qr, self.tau, (c.to(F64) * self.sign).T, left=True, transpose=False).T.to(c.dtype)

    def U_adjoint(self, y):
        out = torch.zeros(y.shape[0], self.d, dtype=y.dtype)
        out[:, : self.m] = y.reshape(y.shape[0], -1) @ self.u.to(y.dtype)
        return out

    def U(self, c):
        return c[:, : self.m] @ self.u.T.to(c.dtype)


class LowRankMatrix(LinearOperator):
    """A dense ``(d_y, d_x)`` matrix as a linear operator whose SVD applies in ``O(d_y d_x)`` (``Matrix`` holds a
    full ``(d_x, d_x)`` ``V``, 30x the work of the score at d_x = 800); benchmark-local."""

    def __init__(self, a: torch.Tensor):
        super().__init__((a.shape[1],), (a.shape[0],))
        self.a = a
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        h = _HouseholderSVD(u, s, vh.T)
        self._svd = SVD(h.s, h.V_adjoint, h.V, h.U_adjoint, h.U)

    def forward(self, x):
        return x @ self.a.T.to(x.dtype)

    def adjoint(self, y):
        return y @ self.a.to(y.dtype)

    @property
    def svd(self) -> SVD:
        return self._svd


def observation_of(problem) -> Observation:
    return Observation(LowRankMatrix(problem.matrix), problem.y, problem.sigma_y)


# --- methods ---------------------------------------------------------------------------------------------------------
# (method, K, steps) per d_x: each proposal alone (K = 1, an approximate method), and particle counts at the bar's
# budget; fewer and cheaper rows as d_x grows (one particle-step costs ~7, 25, 200 us at d_x = 8, 80, 800 here)
CONFIGS = {
    8: [("tds", 1, 100), ("mcgdiff", 1, 100), ("tds", 128, 100), ("tds", 32, 400), ("mcgdiff", 128, 100)],
    80: [("tds", 1, 100), ("mcgdiff", 1, 100), ("tds", 64, 400), ("mcgdiff", 256, 100)],
    800: [("tds", 1, 100), ("mcgdiff", 1, 100), ("tds", 32, 400), ("tds", 128, 100), ("mcgdiff", 128, 100),
          ("mcgdiff", 256, 100)],
}
QUICK = [("tds", 1, 100), ("mcgdiff", 1, 100), ("tds", 32, 400), ("mcgdiff", 128, 100)]
SAMPLES = {8: 1000, 80: 300, 800: 100}


def smc_configs(d_x: int, quick: bool) -> list[tuple[str, int, int]]:
    return QUICK if quick else CONFIGS[d_x]


PARTICLE_PROBLEMS = {"tds": TDS, "mcgdiff": MCGdiff}


def run_smc(method, problem, sde, n, k, steps, seed, chunk):
    """``n`` returned samples, ``chunk`` runs at a time (memory); returns ``(x, nfe_per_sample)``."""
    condition, score, out, nfe = PARTICLE_PROBLEMS[method](observation_of(problem)), problem.score(sde), [], 0
    gen = torch.Generator().manual_seed(seed)
    d = problem.means.shape[1]
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        x_T = problem.marginal_sample(b * k, sde, sde.T, gen).reshape(b, k, d)  # one exact p_T draw per particle
        x, info = scorekit.sample(score, sde, (b, d), method, condition=condition, num_particles=k, steps=steps,
                                  dtype=F64, x_T=x_T, generator=gen)
        out.append(x)
        nfe = info["particles"]["nfe_per_sample"]
    return torch.cat(out), nfe


APPROXIMATE = {"replacement": Replacement, "dps": DPS, "pigdm": PiGDM, "ddrm": DDRM}


def run_approximate(method, problem, sde, n, steps, seed):
    """The approximate methods of ``scorekit.conditioning`` (one sample per chain, DDIM eta = 1 steps; DDRM its own
    sampler), from exact ``p_T`` draws; returns ``(x, nfe_per_sample)``."""
    gen = torch.Generator().manual_seed(seed)
    x_T = problem.marginal_sample(n, sde, sde.T, gen)
    condition, score = APPROXIMATE[method](observation_of(problem)), problem.score(sde)
    sampler = {"sampler": "ddrm"} if method == "ddrm" else {"sampler": "ddim", "eta": 1.0}
    x, info = scorekit.sample(score, sde, (n, x_T.shape[1]), steps=steps, x_T=x_T, dtype=F64, condition=condition,
                              generator=gen, **sampler)
    return x, info["nfe"]


# --- the table -------------------------------------------------------------------------------------------------------
def mode_tv(x, post) -> float:
    labels = post.component_log_posterior(x).argmax(-1)
    shares = torch.bincount(labels, minlength=len(post.weights)).double() / len(labels)
    return 0.5 * float((shares - post.weights).abs().sum())


def cell(d_x: int, d_y: int, args) -> list[dict]:
    problem, sde = grid_mixture_problem(d_x, d_y, seed=args.seed), scorekit.VPSDE()
    post, n = problem.posterior, args.n or SAMPLES[d_x] // (2 if args.quick else 1)
    exact = post.sample(n, torch.Generator().manual_seed(args.seed + 1))[0]
    floors, tvs = [], []
    for r in range(args.floor_repeats):
        other = post.sample(n, torch.Generator().manual_seed(args.seed + 100 + r))[0]
        floors.append(sliced_wasserstein(other, exact, generator=torch.Generator().manual_seed(args.seed + 2)))
        tvs.append(mode_tv(other, post))
    floor = torch.tensor(floors)
    base = {"d_x": d_x, "d_y": d_y, "n": n, "floor": float(floor.mean()), "floor_sd": float(floor.std()),
            "tv_floor": sum(tvs) / len(tvs), "modes": int((post.weights > 0.01).sum())}
    rows = []
    configs = smc_configs(d_x, args.quick) if "smc" in args.methods else []
    configs = [(m, 1, 100) for m in APPROXIMATE if "approx" in args.methods] + configs
    for method, k, steps in configs:
        start = time.perf_counter()
        if method in APPROXIMATE:
            x, nfe = run_approximate(method, problem, sde, n, steps, args.seed + 3)
        else:
            x, nfe = run_smc(method, problem, sde, n, k, steps, args.seed + 3, max(1, args.particles_per_chunk // k))
        sw = sliced_wasserstein(x, exact, generator=torch.Generator().manual_seed(args.seed + 2))
        row = dict(base, method=method, K=k, steps=steps, nfe=nfe, sw=sw, tv=mode_tv(x, post),
                   ok=sw <= base["floor"] + 2 * base["floor_sd"], seconds=time.perf_counter() - start)
        rows.append(row)
        print(f"{d_x} {d_y} {method} K={k} steps={steps}: SW2 {sw:.3f} (floor {base['floor']:.3f} ± "
              f"{base['floor_sd']:.3f}) TV {row['tv']:.3f} {row['seconds']:.0f}s", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print("| d_x | d_y | modes > 1 % | n | method | K | steps | NFE/sample | SW2 | floor (± sd) | ok | TV modes "
          "(floor) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bar = "**" if r["ok"] and r["K"] * r["steps"] <= BUDGET[r["d_x"]] else ""
        print(f"| {r['d_x']} | {r['d_y']} | {r['modes']} | {r['n']} | {r['method']} | {r['K']} | {r['steps']} | "
              f"{r['nfe']} | {bar}{r['sw']:.3f}{bar} | {r['floor']:.3f} ± {r['floor_sd']:.3f} | "
              f"{'yes' if r['ok'] else 'no'} | {r['tv']:.3f} ({r['tv_floor']:.3f}) | {r['seconds']:.0f} |")
    print()
    print("The bar (bold: within the floor's noise at <= the budget):")
    for (d_x, d_y) in sorted({(r["d_x"], r["d_y"]) for r in rows}):
        hits = [r for r in rows if (r["d_x"], r["d_y"]) == (d_x, d_y) and r["ok"]
                and r["K"] * r["steps"] <= BUDGET[d_x]]
        best = ", ".join(f"{r['method']} K={r['K']}x{r['steps']}" for r in hits) or "none"
        print(f"- d_x = {d_x}, d_y = {d_y} (budget K x steps <= {BUDGET[d_x]}): {'met' if hits else 'NOT met'} "
              f"({best})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="d_x = 8 and 80, fewer rows, half the samples")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="d_x values (default 8 80 800)")
    parser.add_argument("--dys", type=int, nargs="+", default=[1, 2, 4], help="d_y values (default 1 2 4)")
    parser.add_argument("--n", type=int, default=None, help="returned samples per row (default 1000/300/100)")
    parser.add_argument("--floor-repeats", type=int, default=10, help="exact-vs-exact pairs of the floor")
    parser.add_argument("--particles-per-chunk", type=int, default=16384, help="particles held at once (memory)")
    parser.add_argument("--methods", nargs="+", default=["approx", "smc"], choices=["approx", "smc"],
                        help="approx: replacement, DPS, PiGDM, DDRM (100 steps); smc: TDS and MCGdiff rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dims = args.dims or ([8, 80] if args.quick else [8, 80, 800])
    start = time.perf_counter()
    rows = [row for d_x in dims for d_y in args.dys for row in cell(d_x, d_y, args)]
    print_table(rows)
    print(f"\nwall time {time.perf_counter() - start:.0f} s; {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
