"""A run's curves, ``plots/*.png`` beside its report: validation loss, training loss and examples seen per task,
against the step over all stages.

The runner draws them at the end of every stage (:meth:`hf_ptjf.runner.records.RunDirectory.write_plots`); matplotlib
is imported only then.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..figures import new_figure, png_path, save_png
from ..history import cumulative_counts, loss_curve

__all__ = ["plot_run"]


def plot_run(results: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """A run's curves against the global step, across its stages (``results.json`` of the recipe runner).

    Writes ``dev_loss.png`` (validation loss per task), ``train_loss.png`` (training loss per task where it
    was logged, else overall) and ``examples_seen.png`` (examples seen per task, counted across stages). A
    dashed line marks each stage boundary: there the optimizer state and LR schedule start anew. Returns
    ``{name: path}`` of the figures that had data.
    """
    out = Path(out_dir)
    history = cumulative_counts(list(results.get("history") or []), results.get("stages") or [])
    boundaries, step = [], 0
    for stage in results.get("stages") or []:
        boundaries.append((step, stage["name"]))
        step += int(stage.get("steps") or 0)
    written = {}
    for name, (keys, labels, ylabel) in _panels(list(results.get("tasks") or {}), history).items():
        fig = new_figure()
        ax = fig.add_subplot()
        drawn = False
        for key, label in zip(keys, labels):
            xs, ys, _ = loss_curve(history, key, "step")
            if xs:
                ax.plot(xs, ys, label=label)
                drawn = True
        if not drawn:
            continue
        for x, stage in boundaries:
            ax.axvline(x, color="gray", linestyle="--", linewidth=0.8)
            ax.annotate(f" {stage}" + (" (reset)" if x else ""), (x, 1.0), xycoords=("data", "axes fraction"),
                        va="top", fontsize="small", color="gray")
        ax.set_xlabel("step (all stages)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{results.get('run_name', 'run')}: {ylabel}")
        ax.grid(alpha=0.3)
        fig.legend(loc="outside right upper", fontsize="small")
        written[name] = save_png(fig, png_path(out / f"{name}.png"))
    return written


def _panels(tasks: list[str], history: list[dict[str, Any]]) -> dict[str, tuple[list[str], list[str], str]]:
    """Each figure's logged keys, their legend labels and its y label."""
    train_keys = [f"train_{t}_loss" for t in tasks]
    if not any(k in h for h in history for k in train_keys):
        train_keys = ["loss"]
    return {
        "dev_loss": ([f"eval_{t}_loss" for t in tasks], tasks, "validation loss (nats/token)"),
        "train_loss": (train_keys, tasks if train_keys[0] != "loss" else ["all tasks"], "training loss"),
        "examples_seen": ([f"examples_seen_{t}" for t in tasks], tasks, "examples seen (all stages)"),
    }
