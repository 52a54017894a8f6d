"""scorekit: score-based SDE diffusion models (Song et al., ICLR 2021) in the diffusers ecosystem.

Every public name loads on first use (PEP 562), so ``import scorekit`` (and the torch-free sampler registry,
``scorekit.samplers.registry``, which the CLI reads for its help) imports neither torch nor diffusers: the
``scorekit`` command parses its arguments (and answers ``--help``) before it pays for them.
"""

import importlib
import importlib.util

from .diffusers_registration import register as _register_with_diffusers

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(["ClassifierGuidance", "Colorize", "Compose", "Condition", "Inpaint", "classifier_guidance",
                     "Observation", "Replacement", "DPS", "PiGDM", "DDRM", "TDS", "MCGdiff", "LinearOperator", "Mask",
                     "Gray", "Downsample", "Blur", "Matrix"], "scorekit.conditioning"),
    **dict.fromkeys(["decode", "encode", "interpolate", "slerp"], "scorekit.latents"),
    **dict.fromkeys(["bits_per_dim", "log_likelihood"], "scorekit.likelihood"),
    **dict.fromkeys(["sample", "SAMPLERS"], "scorekit.sampling"),
    **dict.fromkeys(["PREDICTORS", "CORRECTORS"], "scorekit.samplers.pc"),
    "ddim_step": "scorekit.samplers.ddim",
    **dict.fromkeys(["tweedie_denoise", "pf_ode_drift"], "scorekit.samplers.kernels"),
    "model_score_fn": "scorekit.score",
    **dict.fromkeys(["SDE", "SDES", "VESDE", "VPSDE", "SubVPSDE", "DiscreteVPSDE", "get_sde"], "scorekit.sde"),
    **dict.fromkeys(["ScoreSDEPipeline", "ScoreSDEPipelineOutput", "ScoreSDEClassConditionalPipeline",
                     "ScoreSDEInpaintPipeline", "ScoreSDEColorizationPipeline", "ScoreSDERestorationPipeline",
                     "ScoreSDERestorationOutput"], "scorekit.pipelines"),
    **dict.fromkeys(["ScoreSDEPCScheduler", "ScoreSDEODEScheduler"], "scorekit.schedulers"),
    **dict.fromkeys(["TimeClassifierModel", "classifier_log_prob_fn"], "scorekit.models"),
}

# diffusers' loader looks these base classes up in a component's library ("scorekit" in model_index.json)
_LOADER_BASES = {"ModelMixin": "diffusers", "SchedulerMixin": "diffusers"}


def __getattr__(name):
    # every public name loads on first use: `import scorekit` stays light (no torch until a name needs it)
    if name in _LAZY or name in _LOADER_BASES:
        return getattr(importlib.import_module(_LAZY.get(name) or _LOADER_BASES[name]), name)  # read live: SAMPLERS
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # a submodule: scorekit.sde, scorekit.utils, ...
    raise AttributeError(f"module 'scorekit' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})


_register_with_diffusers()  # DiffusionPipeline.from_pretrained of scorekit repos (cheap; see diffusers_registration)

__all__ = list(_LAZY)
