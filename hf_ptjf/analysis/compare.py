"""Compare finished runs task by task: methods side by side, seeds pooled (the paper's Figures 7 and 8).

``hf-ptjf compare OUT_DIR RUN_DIR [RUN_DIR ...] [--label method]`` (or ``python -m hf_ptjf.analysis.compare``,
the command line in :mod:`hf_ptjf.cli.compare`) reads each run's
``results.json`` (and ``recipe.resolved.json`` for its seed), then writes to ``OUT_DIR``:

* ``compare.md``: per task and method, the final and best validation loss over seeds (mean, min-max), the task's
  tokens seen, BLEU, chrF++ and the off-target rate (the share of hypotheses not in the task's target language),
  and the runs' wall times;
* ``bars.png``: grouped bars per task, one bar per method (final loss, seed mean, min-max whiskers): Fig. 7;
* ``curves_<task>.png``: the task's validation loss against the task's own tokens seen, one line per run: Fig. 8.

Runs are grouped by ``--label``: ``method`` (the recipe's) or ``run_name``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..runner.results import cumulative_counts

__all__ = ["RunRecord", "compare_table", "load_runs", "main", "plot_loss_vs_tokens", "plot_task_bars", "tasks_of"]


@dataclass
class RunRecord:
    """One finished run."""

    label: str  # what it is grouped by (its method, or its run name)
    seed: int | None
    dir: str
    results: dict[str, Any]  # its results.json
    wall_time_s: float


def load_runs(dirs: Sequence[str | Path], label: str = "method") -> list[RunRecord]:
    """The finished runs in ``dirs`` (a run without a complete results.json is refused, naming it)."""
    runs = []
    for d in map(Path, dirs):
        path = d / "results.json"
        if not path.is_file():
            raise ValueError(f"{d}: no results.json; give the output_dir of a finished run.")
        results = json.loads(path.read_text())
        if not results.get("complete"):
            raise ValueError(f"{d}: the run has not finished (results.json says complete: false); finish or drop it.")
        recipe = d / "recipe.resolved.json"
        seed = json.loads(recipe.read_text()).get("seed") if recipe.is_file() else None
        if label not in ("method", "run_name"):
            raise ValueError(f"--label must be method or run_name, got {label!r}.")
        runs.append(RunRecord(label=str(results.get(label)), seed=seed, dir=str(d), results=results,
                              wall_time_s=sum(s.get("wall_time_s", 0.0) for s in results["stages"])))
    return runs


def _groups(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for r in runs:
        out.setdefault(str(r.label), []).append(r)
    return out


def tasks_of(runs: Sequence[RunRecord]) -> list[str]:
    """The tasks of the runs, in the order they first appear."""
    return list(dict.fromkeys(t for r in runs for t in r.results["tasks"]))


def _spread(values: Sequence[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f}" + (f" ({v.min():.3f}-{v.max():.3f})" if len(v) > 1 else "")


def compare_table(runs: Sequence[RunRecord]) -> str:
    """Markdown: per task, per label, final / best loss over seeds, the task's tokens seen, BLEU, chrF++ and the
    off-target rate (``-`` for runs that did not generate); then wall times."""
    groups = _groups(runs)
    lines = ["| task | method | seeds | final loss | best loss | best at step | tokens seen | BLEU | chrF++ | "
             "off-target rate |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for task in tasks_of(runs):
        for label, rs in groups.items():
            rows = [r.results["tasks"][task] for r in rs if task in r.results["tasks"]]
            steps = [_best_step(r.results["history"], task) for r in rs]
            lines.append(f"| {task} | {label} | {len(rows)} | {_spread([x['final_loss'] for x in rows])} | "
                         f"{_spread([x['best_loss'] for x in rows])} | {', '.join(str(s) for s in steps)} | "
                         f"{int(np.mean([x['target_tokens_seen'] for x in rows])):,} | "
                         + " | ".join(_generation_cell(rows, key) for key in ("bleu", "chrf", "off_target")) + " |")
    lines += ["", "| method | seed | steps | wall time (s) | run |", "|---|---:|---:|---:|---|"]
    for label, rs in groups.items():
        for r in sorted(rs, key=lambda r: (r.seed is None, r.seed)):
            lines.append(f"| {label} | {r.seed} | {r.results['total_steps']} | {r.wall_time_s:.0f} | "
                         f"{r.dir} |")
    return "\n".join(lines) + "\n"


def _generation_cell(rows: Sequence[Mapping[str, Any]], key: str) -> str:
    """A generation metric over the seeds that measured it; ``-`` when none did, and for the off-target rate of a
    target language the detector does not know, ``n/a`` (each run's results.json has the note)."""
    values = [x[key] for x in rows if isinstance(x.get(key), (int, float))]
    if values:
        return _spread(values) + (f" ({len(values)} of {len(rows)} runs)" if len(values) < len(rows) else "")
    return "n/a (target language unknown to the detector)" if any(x.get(f"{key}_note") for x in rows) else "-"


def _best_step(history: Sequence[Mapping[str, Any]], task: str) -> int | None:
    evals = [(h[f"eval_{task}_loss"], h["step"]) for h in history if h.get(f"eval_{task}_loss") is not None]
    return min(evals)[1] if evals else None


def plot_task_bars(runs: Sequence[RunRecord], path: str | Path, metric: str = "final_loss") -> Path:
    """Grouped bars: per task, one bar per label (mean over seeds) with min-max whiskers."""
    from ..figures import new_figure, save_png
    from .plots import method_colors

    groups, tasks = _groups(runs), tasks_of(runs)
    colors = method_colors(list(groups))
    fig = new_figure((max(6.0, 1.6 * len(tasks) + 2), 4.2))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(groups))
    for g, (label, rs) in enumerate(groups.items()):
        values = [[r.results["tasks"][t][metric] for r in rs] for t in tasks]
        mean = np.array([np.mean(v) for v in values])
        err = np.array([[m - min(v) for m, v in zip(mean, values)], [max(v) - m for m, v in zip(mean, values)]])
        x = np.arange(len(tasks)) + (g - (len(groups) - 1) / 2) * width
        ax.bar(x, mean, width, yerr=err, capsize=3, label=f"{label} ({len(rs)} run{'s' * (len(rs) > 1)})",
               color=colors[label])
    ax.set_xticks(np.arange(len(tasks)), tasks)
    low = min(min(r.results["tasks"][t][metric] for r in runs) for t in tasks)
    ax.set_ylim(bottom=max(0.0, low - 0.5))
    ax.set_ylabel(f"validation {metric.replace('_', ' ')} (seed mean, min-max)")
    ax.legend()
    return save_png(fig, Path(path))


def plot_loss_vs_tokens(runs: Sequence[RunRecord], task: str, path: str | Path) -> Path:
    """The task's validation loss against the task's own tokens seen (cumulative over stages), one line a run."""
    from ..figures import new_figure, save_png
    from .plots import method_colors

    groups = _groups(runs)
    colors = method_colors(list(groups))
    fig = new_figure()
    ax = fig.add_subplot()
    for label, rs in groups.items():
        for i, r in enumerate(rs):
            history = cumulative_counts(r.results["history"], r.results["stages"])
            points = [(h.get(f"target_tokens_seen_{task}", 0), h[f"eval_{task}_loss"]) for h in history
                      if h.get(f"eval_{task}_loss") is not None]
            if points:
                x, y = zip(*points)
                ax.plot(x, y, marker=".", color=colors[label], alpha=0.85,
                        label=label if i == 0 else None)
    ax.set_xlabel(f"{task} tokens seen")
    ax.set_ylabel(f"{task} validation loss")
    ax.legend()
    return save_png(fig, Path(path))


def __getattr__(name: str) -> Any:
    # `main` is the command line, which sits above this module (hf_ptjf.cli.compare): looked up when asked for,
    # so that `from hf_ptjf.analysis.compare import main` keeps working without this module importing the CLI
    if name == "main":
        return import_module("hf_ptjf.cli.compare").main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # `python -m hf_ptjf.analysis.compare`, the spelling of `hf-ptjf compare` before it
    sys.exit(import_module("hf_ptjf.cli.compare").main(prog="python -m hf_ptjf.analysis.compare"))
