"""scorekit: score-based SDE diffusion models (Song et al., ICLR 2021) in the diffusers ecosystem.

Every public name loads on first use (PEP 562), so ``import scorekit`` imports neither torch nor diffusers: the
``scorekit`` command parses its arguments (and answers ``--help``) before it pays for them.
"""

import importlib
import importlib.util

from .diffusers_registration import register as _register_with_diffusers

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(("ClassifierGuidance", "Colorize", "Compose", "Condition", "Inpaint", "classifier_guidance"),
                    "scorekit.conditioning"),
    "CORRECTORS": "scorekit.correctors",
    "ddim_step": "scorekit.ddim", "tweedie_denoise": "scorekit.ddim",
    **dict.fromkeys(("decode", "encode", "interpolate", "slerp"), "scorekit.latents"),
    "bits_per_dim": "scorekit.likelihood", "log_likelihood": "scorekit.likelihood",
    "pf_ode_drift": "scorekit.ode",
    "PREDICTORS": "scorekit.predictors",
    "SAMPLERS": "scorekit.sampling", "sample": "scorekit.sampling",
    "model_score_fn": "scorekit.score",
    **dict.fromkeys(("SDE", "SDES", "VESDE", "VPSDE", "SubVPSDE", "get_sde"), "scorekit.sde"),
    **dict.fromkeys(("ScoreSDEPipeline", "ScoreSDEPipelineOutput", "ScoreSDEClassConditionalPipeline",
                     "ScoreSDEInpaintPipeline", "ScoreSDEColorizationPipeline"), "scorekit.pipelines"),
    "ScoreSDEPCScheduler": "scorekit.schedulers", "ScoreSDEODEScheduler": "scorekit.schedulers",
    "TimeClassifierModel": "scorekit.models", "classifier_log_prob_fn": "scorekit.models",
}

# diffusers' loader looks these base classes up in a component's library ("scorekit" in model_index.json)
_LOADER_BASES = {"ModelMixin": "diffusers", "SchedulerMixin": "diffusers"}


def __getattr__(name):
    if name in _LAZY or name in _LOADER_BASES:
        value = getattr(importlib.import_module(_LAZY.get(name) or _LOADER_BASES[name]), name)
        globals()[name] = value  # resolved once
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # a submodule: scorekit.sde, scorekit.utils, ...
    raise AttributeError(f"module 'scorekit' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})


_register_with_diffusers()  # DiffusionPipeline.from_pretrained of scorekit repos (cheap; see diffusers_registration)

__all__ = [
    "SDE", "VPSDE", "SubVPSDE", "VESDE", "SDES", "get_sde", "sample", "SAMPLERS", "PREDICTORS", "CORRECTORS",
    "pf_ode_drift", "ddim_step", "tweedie_denoise", "model_score_fn", "Condition", "Compose",
    "ScoreSDEPipeline", "ScoreSDEPipelineOutput", "ScoreSDEClassConditionalPipeline", "ScoreSDEInpaintPipeline",
    "ScoreSDEColorizationPipeline", "ScoreSDEPCScheduler", "ScoreSDEODEScheduler", "TimeClassifierModel",
    "classifier_log_prob_fn", "Inpaint", "Colorize", "ClassifierGuidance", "classifier_guidance",
    "log_likelihood", "bits_per_dim", "encode", "decode", "slerp", "interpolate",
]
