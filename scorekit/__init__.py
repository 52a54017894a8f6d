"""scorekit: score-based SDE diffusion models (Song et al., ICLR 2021) in the diffusers ecosystem."""

from .conditioning import (
    DDRM,
    DPS,
    ClassifierGuidance,
    Colorize,
    Compose,
    Condition,
    Inpaint,
    Observation,
    PiGDM,
    Replacement,
    classifier_guidance,
)
from .correctors import CORRECTORS
from .ddim import ddim_step, tweedie_denoise
from .diffusers_registration import register as _register_with_diffusers
from .latents import decode, encode, interpolate, slerp
from .likelihood import bits_per_dim, log_likelihood
from .ode import pf_ode_drift
from .predictors import PREDICTORS
from .sampling import SAMPLERS, sample
from .score import model_score_fn
from .sde import SDE, SDES, VESDE, VPSDE, SubVPSDE, get_sde

__version__ = "0.1.0"

_LAZY = {
    "ScoreSDEPipeline": "scorekit.pipelines",
    "ScoreSDEPipelineOutput": "scorekit.pipelines",
    "ScoreSDEClassConditionalPipeline": "scorekit.pipelines",
    "ScoreSDEInpaintPipeline": "scorekit.pipelines",
    "ScoreSDEColorizationPipeline": "scorekit.pipelines",
    "ScoreSDEPCScheduler": "scorekit.schedulers",
    "ScoreSDEODEScheduler": "scorekit.schedulers",
    "TimeClassifierModel": "scorekit.models",
    "classifier_log_prob_fn": "scorekit.models",
}


# diffusers' loader looks these base classes up in a component's library ("scorekit" in model_index.json)
_LOADER_BASES = {"ModelMixin": "diffusers", "SchedulerMixin": "diffusers"}


def __getattr__(name):
    # diffusers-dependent classes load on first use, so `import scorekit` stays light for pure-math users.
    if name in _LAZY or name in _LOADER_BASES:
        import importlib

        return getattr(importlib.import_module(_LAZY.get(name) or _LOADER_BASES[name]), name)
    raise AttributeError(f"module 'scorekit' has no attribute {name!r}")


_register_with_diffusers()  # DiffusionPipeline.from_pretrained of scorekit repos (cheap; see diffusers_registration)

__all__ = [
    "SDE", "VPSDE", "SubVPSDE", "VESDE", "SDES", "get_sde", "sample", "SAMPLERS", "PREDICTORS", "CORRECTORS",
    "pf_ode_drift", "ddim_step", "tweedie_denoise", "model_score_fn", "Condition", "Compose", *_LAZY,
    "Inpaint", "Colorize", "ClassifierGuidance", "classifier_guidance", "Observation", "Replacement", "DPS", "PiGDM",
    "DDRM",
    "log_likelihood", "bits_per_dim", "encode", "decode", "slerp", "interpolate",
]
