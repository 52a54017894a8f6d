"""diffusers pipelines of scorekit (installed as ``scorekit.pipelines``)."""

from .outputs import ScoreSDELikelihoodOutput, ScoreSDEPipelineOutput, ScoreSDERestorationOutput
from .pipeline_score_sde import ScoreSDEPipeline, as_score_sde_scheduler
from .pipeline_score_sde_conditional import (
    ScoreSDEClassConditionalPipeline,
    ScoreSDEColorizationPipeline,
    ScoreSDEInpaintPipeline,
)
from .pipeline_score_sde_restoration import ScoreSDERestorationPipeline

__all__ = [
    "ScoreSDEPipeline",
    "ScoreSDEPipelineOutput",
    "ScoreSDELikelihoodOutput",
    "ScoreSDEClassConditionalPipeline",
    "ScoreSDEInpaintPipeline",
    "ScoreSDEColorizationPipeline",
    "ScoreSDERestorationPipeline",
    "ScoreSDERestorationOutput",
    "as_score_sde_scheduler",
]
