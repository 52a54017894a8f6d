"""diffusers pipelines of scorekit (installed as ``scorekit.pipelines``)."""

from .pipeline_score_sde import ScoreSDEPipeline, ScoreSDEPipelineOutput, as_score_sde_scheduler

__all__ = ["ScoreSDEPipeline", "ScoreSDEPipelineOutput", "as_score_sde_scheduler"]
