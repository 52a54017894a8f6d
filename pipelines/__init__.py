"""diffusers pipelines of scorekit (installed as ``scorekit.pipelines``)."""

from .outputs import ScoreSDELikelihoodOutput, ScoreSDEPipelineOutput
from .pipeline_score_sde import ScoreSDEPipeline, as_score_sde_scheduler
from .pipeline_score_sde_conditional import (
    ScoreSDEClassConditionalPipeline,
    ScoreSDEColorizationPipeline,
    ScoreSDEInpaintPipeline,
)

__all__ = [
    "ScoreSDEPipeline",
    "ScoreSDEPipelineOutput",
    "ScoreSDELikelihoodOutput",
    "ScoreSDEClassConditionalPipeline",
    "ScoreSDEInpaintPipeline",
    "ScoreSDEColorizationPipeline",
    "as_score_sde_scheduler",
]
