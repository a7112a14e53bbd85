"""Sampling-rate sweeps: a grid of trials per method, run N at a time, gathered into one table + report.

A sweep (paper Sec. 4.1) trains every method at every low-resource sampling rate (and optionally every
learning rate and seed) at equal total steps ``N``, takes each trial's final per-task validation loss,
and compares the methods' trade-off fronts. One module per step of the flow:

* :mod:`~hf_ptjf.sweep.config`: :class:`SweepConfig` (the YAML: a base recipe and the grid), :func:`load_sweep`;
* :mod:`~hf_ptjf.sweep.trials`: :func:`expand_trials`, one resolved recipe per trial, shared pre-training first;
* :mod:`~hf_ptjf.sweep.running`: :func:`run_trials` as subprocesses, ``parallel`` at a time, with a lock per trial
  and a launch deadline; :func:`run_sweep`, the whole flow;
* :mod:`~hf_ptjf.sweep.gathering`: records, seed means, ``sweep_results.{csv,json}``, ``summary.md``, the report.

The command line is ``hf-ptjf sweep SWEEP_CONFIG`` (or ``python recipes/sweep.py``), :mod:`hf_ptjf.cli.sweep`.
"""

from .config import SweepConfig, load_sweep
from .gathering import RESULTS_CSV, RESULTS_JSON, gather, seed_means, summary_markdown, trial_records, write_tables
from .running import (
    LOCK,
    TRIAL_LOG,
    TRIAL_RECIPE,
    launch_deadline,
    launch_trial,
    prepare_tokenizer,
    run_sweep,
    run_trials,
    running_elsewhere,
    take_lock,
    trial_command,
    trial_env,
)
from .trials import Trial, expand_trials, read_results

__all__ = [
    "LOCK",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "TRIAL_LOG",
    "TRIAL_RECIPE",
    "SweepConfig",
    "Trial",
    "expand_trials",
    "gather",
    "launch_deadline",
    "launch_trial",
    "load_sweep",
    "prepare_tokenizer",
    "read_results",
    "run_sweep",
    "run_trials",
    "running_elsewhere",
    "seed_means",
    "summary_markdown",
    "take_lock",
    "trial_command",
    "trial_env",
    "trial_records",
    "write_tables",
]
