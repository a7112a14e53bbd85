"""``hf-ptjf compare OUT_DIR RUN_DIR [RUN_DIR ...] [--label method]`` (also ``python -m hf_ptjf.analysis.compare``):
``compare.md``, ``bars.png`` and ``curves_<task>.png`` for finished runs, seeds pooled (:mod:`hf_ptjf.analysis.compare`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ..analysis.compare import compare_table, load_runs, plot_loss_vs_tokens, plot_task_bars, tasks_of
from .policy import report_user_errors

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m hf_ptjf.analysis.compare") -> argparse.ArgumentParser:
    """``OUT_DIR RUN_DIR [RUN_DIR ...] [--label method|run_name]``."""
    p = argparse.ArgumentParser(prog=prog, description="Compare finished runs task by task: methods side by side, "
                                "seeds pooled (the paper's Figures 7 and 8).")
    p.add_argument("out_dir", help="where the table and plots go")
    p.add_argument("runs", nargs="+", help="output_dir of each finished run")
    p.add_argument("--label", default="method", help="group runs by `method` (default) or `run_name`")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m hf_ptjf.analysis.compare") -> int:
    """Write compare.md, bars.png and curves_<task>.png for the runs given; 2 (one line) for a missing or unfinished
    run."""
    args = build_parser(prog).parse_intermixed_args(argv)  # options may come between the positionals
    return report_user_errors(lambda: _compare(args))


def _compare(args: argparse.Namespace) -> int:
    runs = load_runs(args.runs, args.label)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(compare_table(runs))
    plot_task_bars(runs, out / "bars.png")
    tasks = tasks_of(runs)
    for task in tasks:
        plot_loss_vs_tokens(runs, task, out / f"curves_{task}.png")
    print(f"wrote {out / 'compare.md'}, bars.png and {len(tasks)} curves to {out}")
    return 0
