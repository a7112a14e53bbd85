"""``hf-ptjf inspect RECIPE.yaml [key=value ...]`` (also ``hf-ptjf-inspect``, ``python -m hf_ptjf.analysis.inspect``):
is PTJF expected to help this recipe? The per-stage plan, the deciding numbers and the verdict
(:mod:`hf_ptjf.analysis.inspect`, calibrated in docs/inspect-calibration.md)."""

from __future__ import annotations

import argparse
from typing import Sequence

from ..analysis.inspect import DEFAULT_MIN_STATIC_RATE, DEFAULT_OVERFIT_PASSES, format_report, measure_recipe, recipe_report
from ..recipe import load_recipe
from .policy import report_user_errors

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "hf-ptjf-inspect") -> argparse.ArgumentParser:
    """``RECIPE [key=value ...] [--num-processes N] [--overfit-passes T] [--min-static-rate R] ...``."""
    p = argparse.ArgumentParser(prog=prog,
                                description="Is PTJF expected to help this recipe? Per-stage plan, deciding numbers, verdict.")
    p.add_argument("config", help="recipe YAML (read like recipes/run.py reads it)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, as for recipes/run.py")
    p.add_argument("--num-processes", type=int, default=1, help="data-parallel processes (default 1)")
    p.add_argument("--overfit-passes", type=float, default=DEFAULT_OVERFIT_PASSES,
                   help=f"passes beyond which static sampling overfits a task (default {DEFAULT_OVERFIT_PASSES:g})")
    p.add_argument("--min-static-rate", type=float, default=DEFAULT_MIN_STATIC_RATE,
                   help=f"below this non-overfitting static rate, PTJF is expected to help (default {DEFAULT_MIN_STATIC_RATE})")
    p.add_argument("--hr-min-size", type=int, default=None,
                   help="training examples a task needs to count as high-resource (default: budget / overfit passes)")
    p.add_argument("--tokenizer", default=None, help="count subword tokens with this tokenizer (default: whitespace words)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "hf-ptjf-inspect") -> int:
    """Print the applicability report of a recipe; 2 (one ``error:`` line) for bad input."""
    args = build_parser(prog).parse_intermixed_args(argv)  # options may come between the positionals
    return report_user_errors(lambda: _inspect(args))


def _inspect(args: argparse.Namespace) -> int:
    cfg = load_recipe(args.config, args.overrides)
    sizes, tokens, note = measure_recipe(cfg, args.tokenizer)
    report = recipe_report(cfg, sizes, tokens, num_processes=args.num_processes, overfit_passes=args.overfit_passes,
                           min_static_rate=args.min_static_rate, hr_min_size=args.hr_min_size)
    print(note + format_report(report))
    return 0
