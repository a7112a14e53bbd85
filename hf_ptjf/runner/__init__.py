"""Running a recipe: the stage loop (:mod:`~hf_ptjf.runner.loop`) and, beside it, the run directory's records
(:mod:`~hf_ptjf.runner.records`), the handoff between stages (:mod:`~hf_ptjf.runner.handoff`), evaluation
(:mod:`~hf_ptjf.runner.evaluation`), results (:mod:`~hf_ptjf.runner.results`) and the CLI (:mod:`~hf_ptjf.runner.cli`)."""

from .loop import RecipeRunner, run_recipe
from .records import CONFIG_RECORD, REPORT_NAME, RESULTS_NAME, STAGE_RECORD, StageResult, latest_checkpoint
from .results import render_report, summarize

__all__ = [
    "CONFIG_RECORD",
    "REPORT_NAME",
    "RESULTS_NAME",
    "STAGE_RECORD",
    "RecipeRunner",
    "StageResult",
    "latest_checkpoint",
    "render_report",
    "run_recipe",
    "summarize",
]
