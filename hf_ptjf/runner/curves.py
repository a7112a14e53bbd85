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

__all__ = ["plot_run", "rate_curves"]


def plot_run(results: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """A run's curves against the global step, across its stages (``results.json`` of the recipe runner).

    Writes ``dev_loss.png`` (validation loss per task), ``train_loss.png`` (training loss per task where it
    was logged, else overall) and ``examples_seen.png`` (examples seen per task, counted across stages), and for a
    run with an online mixture ``rates.png`` (each task's sampling rate against the step, under its validation loss).
    A dashed line marks each stage boundary: there the optimizer state and LR schedule start anew. Returns
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
    if any(k.startswith("rate_") for h in history for k in h):
        written["rates"] = _rates_figure(results, history, boundaries, out)
    return written


def rate_curves(results: Mapping[str, Any], history: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Each task's sampling rate against the global step: an online stage's logged ``rate_<task>``, a fixed-rate
    stage's rate from its first to its last step."""
    curves: dict[str, tuple[list[float], list[float]]] = {t: ([], []) for t in results.get("tasks") or {}}
    start = 0
    for stage in results.get("stages") or []:
        end = start + int(stage.get("steps") or 0)
        logged = [h for h in history if start < h.get("step", 0) <= end and any(k.startswith("rate_") for k in h)]
        for task, (xs, ys) in curves.items():
            points = [(h["step"], h[f"rate_{task}"]) for h in logged if f"rate_{task}" in h]
            if not points and task in (stage.get("rates") or {}):  # fixed rates: flat over the stage
                points = [(start, stage["rates"][task]), (end, stage["rates"][task])]
            xs += [float(x) for x, _ in points]
            ys += [float(y) for _, y in points]
        start = end
    return curves


def _rates_figure(results: Mapping[str, Any], history: list[dict[str, Any]], boundaries: list[tuple[int, str]],
                  out: Path) -> Path:
    """``rates.png``: validation loss per task (top) and sampling rate per task (bottom), against the step."""
    fig = new_figure((7.5, 6.4))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for task, (xs, ys) in rate_curves(results, history).items():
        line = bottom.plot(xs, ys, label=task)[0]
        lx, ly, _ = loss_curve(history, f"eval_{task}_loss", "step")
        top.plot(lx, ly, color=line.get_color())
    for ax in (top, bottom):
        for x, _ in boundaries:
            ax.axvline(x, color="gray", linestyle="--", linewidth=0.8)
        ax.grid(alpha=0.3)
    top.set_ylabel("validation loss")
    bottom.set_ylabel("sampling rate")
    bottom.set_xlabel("step (all stages)")
    top.set_title(f"{results.get('run_name', 'run')}: rates over time (online mixing) and validation loss")
    fig.legend(loc="outside right upper", fontsize="small")
    return save_png(fig, png_path(out / "rates.png"))


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
