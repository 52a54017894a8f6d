"""The settings of every sampler as small dataclasses that validate themselves on construction (torch-free).

One class per registry entry; its fields are exactly the options ``scorekit.sample(..., sampler=NAME, **options)``
accepts besides the common arguments (``steps``, ``denoise``, ``eps``, ``x_T``, ``condition``, ``generator``,
``dtype``, ``device``, ``progress``, ``callback``). Each field carries its help text (``metadata["help"]``), which
the CLI turns into a flag and the README's sampler table into a column, so nothing here may import torch: ``scorekit
--help`` reads this module without it. An instance is also the typed form of a sampler choice:
``scorekit.sample(score_fn, sde, shape, sampler=EDMHeunOptions(s_churn=10))``.

A field whose value is ``None`` by default stands for "the sampler's own default" (``order``, ``time_grid``): the
instance resolves it on construction, so ``opts.order`` is always the order that runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..checks import check_bool, check_choice, check_count, check_positive

PREDICTORS = ("reverse_diffusion", "euler_maruyama", "ancestral_sampling", "none")
PREDICTOR_ALIASES = {"euler": "euler_maruyama", "em": "euler_maruyama", "ancestral": "ancestral_sampling"}
CORRECTORS = ("langevin", "ald", "none")
CORRECTOR_ALIASES = {"annealed_langevin": "ald"}
SNR_NORMS = ("auto", "sample", "batch")
PER_SAMPLE_MIN_DIM = 64  # snr_norm="auto": per-sample norms from this many coordinates per sample (see samplers.pc)
FIXED_METHODS = ("euler", "heun")
TORCHDIFFEQ_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
SCIPY_METHODS = ("scipy_RK45", "scipy_RK23", "scipy_DOP853", "scipy_LSODA")
ADAPTIVE_METHODS = TORCHDIFFEQ_METHODS + SCIPY_METHODS
TIME_GRIDS = ("uniform", "logsnr", "karras")


def option(default: Any, help: str, *, choices: Sequence[str] | None = None, flag_type: type | None = None):
    """A dataclass field with its help text; ``choices`` / ``flag_type`` tell the CLI how to parse it."""
    return field(default=default, metadata={"help": help, "choices": choices, "type": flag_type})


@dataclass(frozen=True, eq=False)
class SamplerOptions:
    """The settings of one sampler (subclasses: one per registry entry). Validates on construction."""

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError / TypeError naming the setting when a value is not accepted."""

    @property
    def deterministic(self) -> bool:
        """Whether the run draws no noise after ``x_T`` (replacement conditioning is then biased)."""
        return False

    @property
    def adaptive(self) -> bool:
        """Whether the solver chooses its own steps (no grid; ``steps`` is not used)."""
        return False

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in cls.fields())

    @classmethod
    def describe(cls) -> str:
        """``name=default, ...`` of every setting (for error messages and help texts)."""
        return ", ".join(f"{f.name}={f.default!r}" for f in cls.fields()) or "none"

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> SamplerOptions:
        """Build from keyword arguments; a key that is not a setting of this sampler is a ValueError that names the
        sampler and lists its settings."""
        unknown = [k for k in options if k not in cls.option_names()]
        if unknown:
            k = unknown[0]
            raise ValueError(f"{k}={options[k]!r} is not a setting of sampler={cls.name!r}; its settings are "
                             f"{cls.describe()} (with the common arguments steps, denoise, eps, x_T, condition, "
                             f"generator, dtype, device, progress, callback)")
        return cls(**options)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.fields()}

    def _resolve(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


TIMESTEPS_HELP = ("a user time grid: strictly decreasing times inside [eps, T] (sets steps = len - 1); a grid that "
                  "starts below T starts from N(0, std(t_0)^2 I), see scorekit.samplers.grids.start_state")


@dataclass(frozen=True, eq=False)
class GridOptions(SamplerOptions):
    """Settings of a sampler that steps over a fixed time grid."""

    timesteps: Sequence[float] | None = option(None, TIMESTEPS_HELP, flag_type=float)


@dataclass(frozen=True, eq=False)
class PCOptions(GridOptions):
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1)."""

    name: ClassVar[str] = "pc"
    predictor: str = option("reverse_diffusion", "PC predictor (aliases: euler, em, ancestral)", choices=PREDICTORS)
    corrector: str = option("langevin", "PC corrector (alias: annealed_langevin)", choices=CORRECTORS)
    snr: float = option(0.16, "signal-to-noise ratio of the corrector (Algorithms 4-5), > 0", flag_type=float)
    n_corrector_steps: int = option(1, "corrector steps per time step (pc) or Langevin steps per level (ald)",
                                    flag_type=int)
    probability_flow: bool = option(False, "run the PC predictor on the probability-flow ODE (eq. 13)")
    snr_norm: str = option("auto", "norms of the Langevin step size: 'sample' (each sample's own: an image does not "
                           "depend on its batch-mates), 'batch' (their batch means: the paper's Algorithm 4, "
                           "score_sde, diffusers' ScoreSdeVe) or 'auto' (per sample from 64 coordinates per sample "
                           "up, else batch; see scorekit.samplers.pc)", choices=SNR_NORMS)

    def validate(self) -> None:
        predictor = PREDICTOR_ALIASES.get(self.predictor, self.predictor)
        check_choice("predictor", predictor, list(PREDICTORS) + list(PREDICTOR_ALIASES))
        corrector = CORRECTOR_ALIASES.get(self.corrector, self.corrector)
        check_choice("corrector", corrector, list(CORRECTORS) + list(CORRECTOR_ALIASES))
        check_positive("snr", self.snr)
        check_positive("n_corrector_steps", self.n_corrector_steps, integer=True)
        check_bool("probability_flow", self.probability_flow)
        check_choice("snr_norm", self.snr_norm, SNR_NORMS)
        if self.probability_flow and predictor not in ("euler_maruyama", "reverse_diffusion"):
            raise ValueError(f"probability_flow=True needs predictor 'euler_maruyama' or 'reverse_diffusion', got "
                             f"{self.predictor!r}")

    @property
    def predictor_name(self) -> str:
        return PREDICTOR_ALIASES.get(self.predictor, self.predictor)

    @property
    def corrector_name(self) -> str:
        return CORRECTOR_ALIASES.get(self.corrector, self.corrector)

    @property
    def deterministic(self) -> bool:
        return (self.probability_flow or self.predictor_name == "none") and self.corrector_name == "none"


@dataclass(frozen=True, eq=False)
class ALDOptions(SamplerOptions):
    """NCSN annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1)."""

    name: ClassVar[str] = "ald"
    n_corrector_steps: int = option(1, "Langevin steps per noise level", flag_type=int)
    step_size: float = option(2e-5, "NCSN's eps: the step at level i is step_size * std_i^2 / std_L^2",
                              flag_type=float)

    def validate(self) -> None:
        check_positive("n_corrector_steps", self.n_corrector_steps, integer=True)
        check_positive("step_size", self.step_size)


@dataclass(frozen=True, eq=False)
class ODEOptions(GridOptions):
    """Probability-flow ODE (eq. 13), fixed-step or adaptive."""

    name: ClassVar[str] = "ode"
    method: str = option("dopri5", "ODE solver: euler, heun (fixed steps) or an adaptive one (dopri5, bosh3, "
                         "scipy_RK45, ...: torchdiffeq or scipy)", choices=FIXED_METHODS + ADAPTIVE_METHODS)
    rtol: float = option(1e-5, "relative tolerance of an adaptive solve", flag_type=float)
    atol: float = option(1e-5, "absolute tolerance of an adaptive solve", flag_type=float)

    def validate(self) -> None:
        check_choice("method", self.method, FIXED_METHODS + ADAPTIVE_METHODS)
        check_positive("rtol", self.rtol)
        check_positive("atol", self.atol)
        if self.timesteps is not None and self.adaptive:
            raise ValueError(f"timesteps= needs a fixed-step method {list(FIXED_METHODS)}; method={self.method!r} "
                             f"chooses its own steps")

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS

    @property
    def deterministic(self) -> bool:
        return True


@dataclass(frozen=True, eq=False)
class DDIMOptions(GridOptions):
    """DDIM (Song, Meng & Ermon 2021) for any SDE."""

    name: ClassVar[str] = "ddim"
    eta: float = option(0.0, "DDIM stochasticity, >= 0 (0: the PF-ODE's DDIM discretization)", flag_type=float)

    def validate(self) -> None:
        check_positive("eta", self.eta, allow_zero=True)

    @property
    def deterministic(self) -> bool:
        return self.eta == 0


@dataclass(frozen=True, eq=False)
class FewStepGridOptions(GridOptions):
    """A grid chosen independently of the solver (``scorekit.samplers.grids``)."""

    default_grid: ClassVar[str] = "logsnr"
    time_grid: str | None = option(None, "time grid: uniform (in t), logsnr (uniform half-log-SNR) or karras (EDM's "
                                   "rho-schedule); unset: karras for edm-heun, logsnr for the others",
                                   choices=TIME_GRIDS)
    rho: float = option(7.0, "exponent of the karras grid (EDM: 7)", flag_type=float)

    def validate(self) -> None:
        self._resolve("time_grid", self.default_grid if self.time_grid is None else self.time_grid)
        check_choice("time_grid", self.time_grid, TIME_GRIDS)
        check_positive("rho", self.rho)


def _check_order(opts: SamplerOptions, orders: tuple[int, ...], default: int) -> None:
    order = default if opts.order is None else opts.order
    if isinstance(order, bool) or order not in orders:
        raise ValueError(f"order={order!r} is not supported by sampler={opts.name!r}; expected one of "
                         f"{list(orders)}")
    opts._resolve("order", order)


ORDER_HELP = ("solver order: dpmsolver++ 1 (= DDIM), 2 (2M) or 3 (3M); dpmsolver++-singlestep 1, 2 (2S) or 3 (3S); "
              "sde-dpmsolver++ 1 or 2; dpmsolver-adaptive 2 or 3 (unset: 2, 3, 2 and 3 respectively)")


@dataclass(frozen=True, eq=False)
class DPMSolverOptions(FewStepGridOptions):
    """Multistep DPM-Solver++ (Lu et al. 2022): 1 (= DDIM), 2M, 3M."""

    name: ClassVar[str] = "dpmsolver++"
    orders: ClassVar[tuple[int, ...]] = (1, 2, 3)
    default_order: ClassVar[int] = 2
    order: int | None = option(None, ORDER_HELP, flag_type=int)

    def validate(self) -> None:
        super().validate()
        _check_order(self, self.orders, self.default_order)

    @property
    def deterministic(self) -> bool:
        return True


@dataclass(frozen=True, eq=False)
class DPMSolverSinglestepOptions(DPMSolverOptions):
    """Singlestep DPM-Solver++ (1, 2S, 3S); ``steps`` counts model evaluations as diffusers' singlestep does."""

    name: ClassVar[str] = "dpmsolver++-singlestep"
    default_order: ClassVar[int] = 3


@dataclass(frozen=True, eq=False)
class SDEDPMSolverOptions(DPMSolverOptions):
    """SDE-DPM-Solver++ (1, 2M), Lu et al. 2022 eq. 18."""

    name: ClassVar[str] = "sde-dpmsolver++"
    orders: ClassVar[tuple[int, ...]] = (1, 2)

    @property
    def deterministic(self) -> bool:
        return False


@dataclass(frozen=True, eq=False)
class EDMHeunOptions(FewStepGridOptions):
    """EDM's Heun sampler with optional churn (Karras et al. 2022, Algorithm 2)."""

    name: ClassVar[str] = "edm-heun"
    default_grid: ClassVar[str] = "karras"
    s_churn: float = option(0.0, "EDM's S_churn (0: the deterministic Heun)", flag_type=float)
    s_noise: float = option(1.0, "EDM's S_noise", flag_type=float)
    s_tmin: float = option(0.0, "EDM's S_tmin, in units of sigma = std / alpha", flag_type=float)
    s_tmax: float = option(math.inf, "EDM's S_tmax, in units of sigma = std / alpha", flag_type=float)

    def validate(self) -> None:
        super().validate()
        for name in ("s_churn", "s_noise", "s_tmin"):
            check_positive(name, getattr(self, name), allow_zero=True)
        if not (isinstance(self.s_tmax, (int, float)) and self.s_tmax >= self.s_tmin):
            raise ValueError(f"s_tmax must be a number >= s_tmin={self.s_tmin}, got {self.s_tmax!r}")

    @property
    def deterministic(self) -> bool:
        return self.s_churn == 0


@dataclass(frozen=True, eq=False)
class AdaptiveEIOptions(SamplerOptions):
    """Adaptive DPM-Solver-12 / -23 (Lu et al. 2022, §4.2)."""

    name: ClassVar[str] = "dpmsolver-adaptive"
    order: int | None = option(None, ORDER_HELP, flag_type=int)
    rtol: float = option(1e-5, "relative tolerance of an adaptive solve", flag_type=float)
    atol: float = option(1e-5, "absolute tolerance of an adaptive solve", flag_type=float)

    def validate(self) -> None:
        _check_order(self, (2, 3), 3)
        check_positive("rtol", self.rtol)
        check_positive("atol", self.atol)

    @property
    def deterministic(self) -> bool:
        return True

    @property
    def adaptive(self) -> bool:
        return True


@dataclass(frozen=True, eq=False)
class DDRMOptions(SamplerOptions):
    """DDRM (Kawar et al. 2022) on the uniform time grid; it has no settings of its own: the observation and DDRM's
    ``eta`` / ``eta_b`` are the condition's, ``scorekit.conditioning.DDRM(observation, eta, eta_b)``, which
    ``sampler="ddrm"`` needs."""

    name: ClassVar[str] = "ddrm"


@dataclass(frozen=True, eq=False)
class ParticleOptions(SamplerOptions):
    """Settings every particle sampler shares: sequential Monte Carlo over ``K`` particles per returned sample
    (``scorekit.samplers.smc``). The problem (observation, likelihood) is the sampler's condition's."""

    num_particles: int = option(16, "K, the particles per sample (>= 1; 1: the sampler's proposal alone, without "
                                "weights); a returned sample costs K times the NFE", flag_type=int)
    ess_threshold: float = option(0.5, "resample a sample's particles when their effective sample size falls below "
                                  "ess_threshold * K; in (0, 1] (1: at every step)", flag_type=float)
    return_particles: bool = option(False, "return all K weighted particles, (B, K, ...), with their log-weights in "
                                    "info['particles'], instead of one draw per sample (scorekit.sample, "
                                    "ScoreSDERestorationPipeline, scorekit restore)")

    def validate(self) -> None:
        check_count("num_particles", self.num_particles)
        check_positive("ess_threshold", self.ess_threshold)
        if self.ess_threshold > 1:
            raise ValueError(f"ess_threshold must be in (0, 1] (resample when ESS < ess_threshold * num_particles), "
                             f"got {self.ess_threshold!r}")
        if not isinstance(self.return_particles, bool):
            raise ValueError(f"return_particles must be True or False, got {self.return_particles!r}")


@dataclass(frozen=True, eq=False)
class TDSOptions(ParticleOptions):
    """The twisted diffusion sampler (Wu et al. 2023) on the uniform time grid; its problem is the condition's,
    ``scorekit.conditioning.TDS(observation | log_likelihood=..., data_variance=...)``, which ``sampler="tds"``
    needs."""

    name: ClassVar[str] = "tds"


@dataclass(frozen=True, eq=False)
class MCGdiffOptions(ParticleOptions):
    """MCGdiff (Cardoso et al. 2024) on the uniform time grid; its observation is the condition's,
    ``scorekit.conditioning.MCGdiff(observation)`` (an operator with an SVD), which ``sampler="mcgdiff"`` needs."""

    name: ClassVar[str] = "mcgdiff"
