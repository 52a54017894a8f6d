"""diffusers schedulers over scorekit's sampling math."""

from .foreign import translate_foreign_config
from .scheduling_score_sde_base import ScoreSDESchedulerBase, ScoreSDESchedulerOutput
from .scheduling_score_sde_ode import ScoreSDEODEScheduler
from .scheduling_score_sde_pc import ScoreSDEPCScheduler

__all__ = ["ScoreSDEPCScheduler", "ScoreSDEODEScheduler", "ScoreSDESchedulerBase", "ScoreSDESchedulerOutput",
           "translate_foreign_config"]
