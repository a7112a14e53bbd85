"""``hf-ptjf sweep SWEEP_CONFIG [key=value ...] [--gather-only] [--list]`` (also ``python recipes/sweep.py``).

Trials (one recipe each) run as subprocesses, ``parallel`` at a time with ``threads`` torch threads each;
a rerun skips finished trials. Results: ``<output_dir>/sweep_results.{csv,json}``, ``report.md`` and PNGs.
See :mod:`hf_ptjf.sweep.config` for the config format and ``recipes/configs/repro_*.yaml`` for examples.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..sweep import RESULTS_CSV, expand_trials, gather, load_sweep, run_sweep
from .policy import configure_logging, report_user_errors

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "recipes/sweep.py") -> argparse.ArgumentParser:
    """``SWEEP_CONFIG [key=value ...] [--gather-only] [--list]``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a sampling-rate sweep: a grid of trials per method, gathered into one table + report.")
    parser.add_argument("config", help="sweep YAML")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the sweep config")
    parser.add_argument("--gather-only", action="store_true", help="only rebuild tables and report from finished trials")
    parser.add_argument("--list", action="store_true", help="print the trials (and whether complete) and exit")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "recipes/sweep.py") -> int:
    """Run (or list, or gather) a sweep; exit status 1 when a trial failed or was blocked, 2 for bad input."""
    args = build_parser(prog).parse_intermixed_args(argv)  # options may come between the config and the overrides
    configure_logging()
    return report_user_errors(lambda: _sweep(args))


def _sweep(args: argparse.Namespace) -> int:
    cfg = load_sweep(args.config, args.overrides)
    if args.list:
        for t in expand_trials(cfg):
            print(f"{t.trial:40s} {'complete' if t.is_complete() else '-':8s} {t.output_dir}")
        return 0
    if args.gather_only:
        records = gather(cfg)
        print(f"{len(records)} trials -> {cfg.report_out / RESULTS_CSV}")
        return 0
    result = run_sweep(cfg)
    bad = {k: v for k, v in result["status"].items() if v in ("failed", "blocked")}
    print(f"{len(result['records'])} trials gathered in {result['wall_time_s']}s -> {cfg.report_out / RESULTS_CSV}")
    if bad:
        print(f"not complete: {bad}", file=sys.stderr)
        return 1
    return 0
