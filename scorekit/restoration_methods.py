"""The inverse-problem methods by name, as the restoration pipeline and ``scorekit restore --method`` offer them.

One table, :data:`METHODS`, torch-free like the sampler registry (``scorekit restore --help`` reads it before torch
is imported). Each entry says which condition of :mod:`scorekit.conditioning` carries the observation, which sampler
runs it and with what settings when the caller names none:

==============  ==============================  ===============================================================
method          condition                       sampler
==============  ==============================  ===============================================================
``replacement``  ``Replacement(observation)``   any; by default the model's own, switched to ``sde-dpmsolver++``
                                                when that one is deterministic (replacement needs fresh noise)
``dps``          ``DPS(observation, scale)``    any; by default the paper's: ancestral sampling, no corrector
``pigdm``        ``PiGDM(observation, scale)``  any; by default the paper's: DDIM with ``eta = 1``
``ddrm``         ``DDRM(observation, eta, …)``  ``ddrm`` only
``tds``          ``TDS(observation, …)``        ``tds`` only (``num_particles`` per returned sample)
``mcgdiff``      ``MCGdiff(observation)``       ``mcgdiff`` only (``num_particles`` per returned sample)
==============  ==============================  ===============================================================

A method's own modelling settings (``options``: DPS's and PiGDM's ``scale``, DDRM's ``eta`` / ``eta_b``, TDS's
``data_variance``) go to its condition; ``tests/test_restoration_pipeline.py`` checks them against the condition
classes' signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .samplers.registry import get_spec


@dataclass(frozen=True)
class MethodSpec:
    """One restoration method.

    Args:
        name: the ``method=`` string.
        condition: ``"module:Class"`` of its :class:`~scorekit.conditioning.InverseProblem` condition.
        summary: one line for the CLI's help.
        sampler: the sampler it runs as (``ddrm``, ``tds``, ``mcgdiff``: a sampler of its own), or ``None`` for a
            method that any sampler runs through the condition hooks.
        defaults: the sampler and its settings when the caller names no sampler (a method with a sampler of its
            own: that sampler); empty for ``replacement``, whose default follows the model (module doc).
        options: the condition's own settings (keyword arguments after the observation).
        needs_noise: whether a deterministic sampler is biased with it (replacement: the pipelines then pick a
            stochastic default and warn about a deterministic sampler named explicitly).
    """

    name: str
    condition: str
    summary: str
    sampler: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    needs_noise: bool = False

    @property
    def particles(self) -> bool:
        """Whether the method runs ``num_particles`` particles per returned sample."""
        return self.sampler is not None and get_spec(self.sampler).particles is not None


METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("replacement", "scorekit.conditioning.replacement:Replacement",
               "replace the observed SVD coordinates after every step (Song et al. 2021; DDNM for noisy y)",
               needs_noise=True),
    MethodSpec("dps", "scorekit.conditioning.posterior_guidance:DPS",
               "diffusion posterior sampling (Chung et al. 2023): a likelihood gradient through the network",
               defaults={"sampler": "pc", "predictor": "ancestral_sampling", "corrector": "none"}, options=("scale",)),
    MethodSpec("pigdm", "scorekit.conditioning.posterior_guidance:PiGDM",
               "pseudoinverse-guided diffusion (Song et al. 2023): a Gaussian likelihood gradient through the network",
               defaults={"sampler": "ddim", "eta": 1.0}, options=("scale",)),
    MethodSpec("ddrm", "scorekit.conditioning.inverse:DDRM",
               "denoising diffusion restoration (Kawar et al. 2022): SVD-space updates, no network gradient",
               sampler="ddrm", defaults={"sampler": "ddrm"}, options=("eta", "eta_b")),
    MethodSpec("tds", "scorekit.conditioning.inverse:TDS",
               "twisted diffusion sampler (Wu et al. 2023): SMC with K particles, exact as K grows",
               sampler="tds", defaults={"sampler": "tds"}, options=("data_variance",)),
    MethodSpec("mcgdiff", "scorekit.conditioning.inverse:MCGdiff",
               "MCGdiff (Cardoso et al. 2024): SMC in the operator's SVD with K particles, exact as K grows",
               sampler="mcgdiff", defaults={"sampler": "mcgdiff"}),
)}


def get_method(name: Any) -> MethodSpec:
    """The spec of ``name``; a ValueError naming ``method`` and the methods otherwise (a PF-ODE solver name gets a
    pointer to where that setting goes)."""
    if isinstance(name, str) and name in METHODS:
        return METHODS[name]
    from .samplers.options import ADAPTIVE_METHODS, FIXED_METHODS

    hint = ""
    if name in FIXED_METHODS + ADAPTIVE_METHODS:
        hint = (f"; {name!r} is a probability-flow ODE solver: with sampler='ode' pass it as "
                f"sampler_options={{'method': {name!r}}} (the CLI's --ode-method)")
    raise ValueError(f"method={name!r} is not a restoration method; expected one of {list(METHODS)}{hint}")


def method_of_sampler(sampler: str) -> MethodSpec | None:
    """The method whose own sampler ``sampler`` is (``"tds"`` -> ``tds``), or ``None``."""
    return next((m for m in METHODS.values() if m.sampler == sampler), None)


def add_method_flags(parser) -> None:
    """Add ``--method``, ``--num-particles``, ``--sampler`` and ``--steps`` to an ``argparse`` parser, for scripts
    that call a restoration pipeline (``examples/``; :func:`method_arguments` turns them into its arguments)."""
    from .samplers.registry import sampler_names

    parser.add_argument("--method", choices=list(METHODS), default="replacement", help="restoration method")
    parser.add_argument("--num-particles", type=int, default=None, help="particles per sample (tds, mcgdiff)")
    parser.add_argument("--sampler", choices=sampler_names(standalone=True), default=None,
                        help="sampler of replacement, dps, pigdm (default: the method's; replacement: the model's, "
                             "made stochastic)")
    parser.add_argument("--steps", type=int, default=None, help="time steps (default: the sampler's)")


def method_arguments(args) -> dict[str, Any]:
    """The restoration pipeline's keyword arguments from :func:`add_method_flags`'s flags."""
    return dict(method=args.method, num_particles=args.num_particles, sampler=args.sampler,
                num_inference_steps=args.steps)
