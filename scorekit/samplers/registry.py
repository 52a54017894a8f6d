"""The one table of samplers: name -> :class:`SamplerSpec`. Everything that needs to know about samplers reads it.

Readers: ``scorekit.sample`` (options, default steps, grid, loop), the schedulers (which samplers have a
``step()`` form), the pipelines (settings, determinism), the CLI (``--sampler`` choices, one flag per option and
the help texts), the model cards (``scorekit.hub``: default steps), the trainer's ``--eval_sampler`` and the README's
sampler table (``tests/test_registry.py`` checks it against :func:`markdown_table`).

This module and :mod:`scorekit.samplers.options` import no torch (``scorekit --help`` reads them); a spec names its
loop by ``"module:function"``, imported on first use by :func:`load_loop`.

Adding a sampler: write ``scorekit/samplers/<name>.py`` with its kernels and a loop
``loop(x, ctx, grid, opts) -> x`` (see :mod:`scorekit.samplers.base`), an options dataclass in
:mod:`scorekit.samplers.options`, and one :func:`register` line below. A sampler that solves a problem described by
a condition of its own (``ddrm`` and ``scorekit.conditioning.DDRM``) names that class in ``condition=``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import options as o

GRIDS = ("fixed", "levels", "adaptive")
SCHEDULERS = ("ScoreSDEPCScheduler", "ScoreSDEODEScheduler")


@dataclass(frozen=True)
class SamplerSpec:
    """What scorekit knows about one sampler.

    Args:
        name: the ``sampler=`` string.
        options: its :class:`~scorekit.samplers.options.SamplerOptions` subclass (the accepted settings).
        loop: ``"module:function"`` (or the function itself) run as ``loop(x, ctx, grid, opts) -> x``.
        default_steps: ``steps`` when none are given.
        summary: one line for the CLI help and the README table.
        nfe: the cost in score evaluations, for the README table.
        grid: ``"fixed"``: ``steps + 1`` times from ``T`` (or the grid's first time) to ``eps``, built by
            :func:`scorekit.samplers.grids.build_grid` and handed to the loop (``timesteps=`` sets it);
            ``"levels"``: ``steps`` noise levels from ``T`` to ``eps`` (ALD); ``"adaptive"``: none (the solver picks
            its steps; ``steps`` is not used).
        scheduler: the scorekit scheduler whose config selects this sampler (``ScoreSDEPCScheduler``:
            ``predictor=...``; ``ScoreSDEODEScheduler``: ``solver=...``), or ``None`` (``sampler=`` of the pipelines
            and ``scorekit.sample`` only).
        has_step: whether that scheduler runs it through ``set_timesteps`` / ``step`` in a diffusers loop (otherwise
            the pipelines run it through ``scorekit.sample``, which owns the model calls).
        particles: the option holding ``K`` for a particle sampler: ``sample()`` then runs ``B * K`` particles
            (rows ``b * K .. b * K + K - 1`` belong to sample ``b``, each drawn from generator ``b`` of a list) and
            the loop returns ``B`` samples; ``None`` for the others.
        condition: the :class:`~scorekit.conditioning.Condition` class (``"module:Class"``, imported on first use,
            or the class) this sampler reads its problem from: ``sample()`` refuses, before any work, the sampler
            without such a condition (alone or in a ``Compose``) and such a condition with any other sampler; the CLI
            and the trainer, which build no condition of that kind, do not offer it. ``None``: any condition.
    """

    name: str
    options: type[o.SamplerOptions]
    loop: str | Callable
    default_steps: int
    summary: str
    nfe: str
    grid: str = "fixed"
    scheduler: str | None = None
    has_step: bool = False
    particles: str | None = None
    condition: str | type | None = None

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise ValueError(f"grid={self.grid!r} is not supported; expected one of {list(GRIDS)}")
        if self.scheduler not in (None, *SCHEDULERS):
            raise ValueError(f"scheduler={self.scheduler!r} is not supported; expected None or one of {SCHEDULERS}")
        if self.has_step and self.scheduler is None:
            raise ValueError(f"sampler {self.name!r} has_step=True needs the scheduler that steps it")
        if self.options.name != self.name:
            raise ValueError(f"options class {self.options.__name__} is for sampler {self.options.name!r}, not "
                             f"{self.name!r}")

    @property
    def condition_name(self) -> str | None:
        """The class name of the condition this sampler needs (without importing it), or ``None``."""
        if self.condition is None:
            return None
        return self.condition.rpartition(":")[2] if isinstance(self.condition, str) else self.condition.__name__

    @property
    def deterministic(self) -> bool:
        """Whether the sampler with its default settings draws no noise after ``x_T``."""
        return self.options().deterministic


REGISTRY: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add ``spec`` to the registry (a name may be registered once)."""
    if spec.name in REGISTRY:
        raise ValueError(f"sampler {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


@contextmanager
def registered(spec: SamplerSpec) -> Iterator[SamplerSpec]:
    """Register ``spec`` for the duration of a ``with`` block (tests, plug-ins)."""
    register(spec)
    try:
        yield spec
    finally:
        REGISTRY.pop(spec.name, None)


def get_spec(name) -> SamplerSpec:
    """The spec of ``name``; a ValueError naming ``sampler`` and the registered names otherwise."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"sampler={name!r} is not supported; expected one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def sampler_names(standalone: bool = False) -> list[str]:
    """The registered names; ``standalone``: only those that need no condition of their own (``spec.condition``),
    what a command line without an observation can offer."""
    return [n for n, s in REGISTRY.items() if not (standalone and s.condition is not None)]


def _resolve(ref: str | Callable | type) -> Callable | type:
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def load_loop(spec: SamplerSpec) -> Callable:
    """The loop function of ``spec`` (imports its module on first use)."""
    return _resolve(spec.loop)


def load_condition(spec: SamplerSpec) -> type | None:
    """The condition class ``spec`` needs (imports its module on first use), or ``None``."""
    return None if spec.condition is None else _resolve(spec.condition)


def markdown_table() -> str:
    """The README's sampler table, one row per registered sampler."""
    rows = ["| sampler | what | NFE | default steps | `step()` form | settings |", "|---|---|---|---:|---|---|"]
    for s in REGISTRY.values():
        settings = ", ".join(f"`{n}`" for n in s.options.option_names()) or "-"
        step = f"`{s.scheduler}`" if s.has_step else "-"
        rows.append(f"| `{s.name}` | {s.summary} | {s.nfe} | {s.default_steps} | {step} | {settings} |")
    return "\n".join(rows)


PC, ODE = SCHEDULERS
register(SamplerSpec(
    "pc", o.PCOptions, "scorekit.samplers.pc:pc_loop", 1000, scheduler=PC, has_step=True,
    summary="predictor-corrector (Song et al. 2021, Algorithm 1)",
    nfe="`steps * (1 + n_corrector_steps)` (no evaluation for a `none` predictor / corrector)"))
register(SamplerSpec(
    "ode", o.ODEOptions, "scorekit.samplers.ode:ode_loop", 100, scheduler=ODE, has_step=True,
    summary="probability-flow ODE (eq. 13): Euler, Heun or adaptive (torchdiffeq, scipy)",
    nfe="Euler `steps`, Heun `2 * steps`, adaptive: counted; plus 1 for denoising"))
register(SamplerSpec(
    "ddim", o.DDIMOptions, "scorekit.samplers.ddim:ddim_loop", 100, scheduler=ODE, has_step=True,
    summary="DDIM for any SDE (eta = 0: the PF-ODE's DDIM discretization)", nfe="`steps`, plus 1 for denoising"))
register(SamplerSpec(
    "ald", o.ALDOptions, "scorekit.samplers.ald:ald_loop", 100, grid="levels",
    summary="NCSN annealed Langevin dynamics (Song & Ermon 2019), one noise level per step",
    nfe="`steps * n_corrector_steps`"))
register(SamplerSpec(
    "dpmsolver++", o.DPMSolverOptions, "scorekit.samplers.dpm_solver:multistep_loop", 19,
    scheduler=ODE, has_step=True, summary="multistep DPM-Solver++ (1 = DDIM, 2M, 3M)",
    nfe="`steps`, plus 1 for denoising"))
register(SamplerSpec(
    "dpmsolver++-singlestep", o.DPMSolverSinglestepOptions, "scorekit.samplers.dpm_solver:singlestep_loop", 19,
    scheduler=ODE,
    summary="singlestep DPM-Solver++ (1, 2S, 3S); an order-k step spans k grid intervals, as diffusers' "
            "DPMSolverSinglestepScheduler", nfe="`steps`, plus 1 for denoising"))
register(SamplerSpec(
    "sde-dpmsolver++", o.SDEDPMSolverOptions, "scorekit.samplers.dpm_solver:sde_multistep_loop", 19,
    scheduler=ODE, has_step=True, summary="SDE-DPM-Solver++ (1 = DDIM with eta = 1, 2M)",
    nfe="`steps`, plus 1 for denoising"))
register(SamplerSpec(
    "edm-heun", o.EDMHeunOptions, "scorekit.samplers.edm:edm_heun_loop", 24, scheduler=ODE, has_step=True,
    summary="EDM's Heun sampler with optional churn (Karras et al. 2022, Algorithm 2)",
    nfe="`2 * steps`, plus 1 (EDM's last Euler step to sigma = 0)"))
register(SamplerSpec(
    "dpmsolver-adaptive", o.AdaptiveEIOptions, "scorekit.samplers.adaptive_ei:adaptive_ei_loop", 1,
    grid="adaptive", scheduler=ODE, summary="adaptive DPM-Solver-12 / -23 (Lu et al. 2022, §4.2)",
    nfe="counted (`order` per accepted step), plus 1 for denoising"))
register(SamplerSpec(
    "ddrm", o.DDRMOptions, "scorekit.samplers.ddrm:ddrm_loop", 20, condition="scorekit.conditioning.inverse:DDRM",
    summary="DDRM for linear inverse problems (Kawar et al. 2022): SVD-space updates, no network gradients; needs "
            "`condition=DDRM(observation, eta, eta_b)`", nfe="`steps`, plus 1 for denoising"))
register(SamplerSpec(
    "tds", o.TDSOptions, "scorekit.samplers.tds:tds_loop", 100, particles="num_particles",
    condition="scorekit.conditioning.inverse:TDS",
    summary="twisted diffusion sampler (Wu et al. 2023): SMC with K particles per sample, exact as K grows; any "
            "observation or differentiable likelihood; needs `condition=TDS(observation)`",
    nfe="`steps + 1` per particle (with a network gradient each), `K (steps + 1)` per returned sample"))
register(SamplerSpec(
    "mcgdiff", o.MCGdiffOptions, "scorekit.samplers.mcgdiff:mcgdiff_loop", 100, particles="num_particles",
    condition="scorekit.conditioning.inverse:MCGdiff",
    summary="MCGdiff (Cardoso et al. 2024): SMC in the operator's SVD with K particles per sample, exact as K grows, "
            "no network gradients; needs `condition=MCGdiff(observation)`",
    nfe="`steps` per particle, plus 1 for denoising; K times that per returned sample"))
