"""Trade-off plots and a markdown report for sampling-rate sweeps (paper Figs. 2-4, 16).

Every function takes plain trial records plus an output path, writes one PNG and returns
the path. A trial record is a dict as produced by the sweep::

    {"trial": "ptjf-lr0.3-seed0", "method": "ptjf", "rate": 0.3, "seed": 0,
     "final": {"en-fr": 4.41, "en-ro": 6.07},   # final per-task validation loss
     "best": {...}, "bleu": {...},              # bleu may be missing
     "examples_seen": {...},
     "history": [{"step": 100, "stage": "joint", "eval_en-fr_loss": 5.1,
                  "examples_seen_en-ro": 800}, ...]}

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly (:mod:`hf_ptjf.figures`), so
importing this module never switches the global pyplot backend of the caller. One run's own curves are the runner's
(:func:`hf_ptjf.runner.curves.plot_run`, also importable from here).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..figures import new_figure, png_path, save_png
from ..history import loss_curve
from ..runner.curves import plot_run  # (a run's own curves: the runner's; still importable from here)
from ..seen import seen_key, seen_label, seen_of_size_unit
from .efficiency import best_trials, efficiency_rows
from .pareto import compare_fronts, hypervolume, pareto_indices, reference_point

__all__ = [
    "METHOD_COLORS",
    "method_colors",
    "plot_run",
    "plot_bleu_fronts",
    "plot_efficiency",
    "plot_fronts",
    "plot_training_curves",
    "write_report",
    "REFERENCE_MARGIN",
]

Trial = Mapping[str, Any]

#: Fixed colours for the paper's methods so figures are comparable across sweeps.
METHOD_COLORS: dict[str, str] = {
    "scalarization": "tab:blue",
    "ptjf": "tab:red",
    "restart": "tab:green",
    "transfer": "tab:purple",
}
_EXTRA_COLORS = ("tab:orange", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
# Methods drawn hollow: the restart baseline, as in the paper's figures.
_HOLLOW_METHODS = frozenset({"restart"})
_BASELINE = "scalarization"
REFERENCE_MARGIN = 0.1


# ---------------------------------------------------------------------------- data helpers


def _check_trials(trials: Sequence[Trial]) -> list[Trial]:
    if isinstance(trials, Mapping) or not isinstance(trials, Iterable):
        raise ValueError("`trials` must be a list of trial records (dicts), not a single record.")
    trials = list(trials)
    if not trials:
        raise ValueError("`trials` is empty: run the sweep first or pass its trial records.")
    for i, t in enumerate(trials):
        if not isinstance(t, Mapping) or "method" not in t:
            raise ValueError(f"`trials[{i}]` must be a dict with at least a 'method' key, got {t!r:.80}.")
    return trials


def _check_tasks(hr_task: str, lr_task: str) -> None:
    if hr_task == lr_task:
        raise ValueError(f"`hr_task` and `lr_task` must differ, both are {hr_task!r}.")


def _value(trial: Trial, metric: str, task: str) -> float | None:
    """``trial[metric][task]`` as a float, or None when missing or NaN."""
    v = (trial.get(metric) or {}).get(task)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _spread(trial: Trial, metric: str, task: str) -> tuple[float, float] | None:
    """``trial[metric + "_range"][task]``: the (min, max) over seeds of a seed-mean record, else None."""
    span = (trial.get(f"{metric}_range") or {}).get(task)
    return None if span is None else (float(span[0]), float(span[1]))


def _objectives(trials: Sequence[Trial], hr_task: str, lr_task: str, metric: str) -> tuple[list[Trial], np.ndarray]:
    """Trials that have ``metric`` for both tasks, and their ``(n, 2)`` [hr, lr] values."""
    kept, rows = [], []
    for t in trials:
        hr, lr = _value(t, metric, hr_task), _value(t, metric, lr_task)
        if hr is not None and lr is not None:
            kept.append(t)
            rows.append((hr, lr))
    if not kept:
        raise ValueError(
            f"No trial has `metric`={metric!r} values for both {hr_task!r} and {lr_task!r}; "
            "check the task names and that the sweep recorded this metric."
        )
    return kept, np.asarray(rows, dtype=np.float64)


def _methods(trials: Iterable[Trial]) -> list[str]:
    """Methods in a stable order: the paper's first, others alphabetically."""
    present = {str(t["method"]) for t in trials}
    return [m for m in METHOD_COLORS if m in present] + sorted(present - METHOD_COLORS.keys())


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """A colour per method: the paper's methods keep theirs (``METHOD_COLORS``), others get the next free one."""
    extra = iter(_EXTRA_COLORS * (len(methods) // len(_EXTRA_COLORS) + 1))
    return {m: METHOD_COLORS.get(m) or next(extra) for m in methods}


def _rate_key(rate: Any) -> tuple[int, float, str]:
    # None (no rate, e.g. a pure fine-tuning run) sorts last; numbers before strings
    if rate is None:
        return (2, 0.0, "")
    try:
        return (0, float(rate), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(rate))


def _rates(trials: Iterable[Trial]) -> list[Any]:
    return sorted({t.get("rate") for t in trials}, key=_rate_key)


def _fmt_rate(rate: Any) -> str:
    return "n/a" if rate is None else f"{rate:g}" if isinstance(rate, (int, float)) else str(rate)


def _front(values: np.ndarray, maximize: bool = False) -> np.ndarray:
    """Indices of the non-dominated rows, sorted by the first column ascending."""
    idx = pareto_indices(-values if maximize else values)
    return idx[np.argsort(values[idx, 0], kind="stable")]


# ---------------------------------------------------------------------------- trade-off fronts


def _front_figure(
    trials: Sequence[Trial],
    hr_task: str,
    lr_task: str,
    path: str | os.PathLike[str],
    metric: str,
    maximize: bool,
    label: str,
) -> Path:
    """Every trial's ``metric`` of both tasks (colour: method, marker: rate) and each method's front."""
    trials = _check_trials(trials)
    _check_tasks(hr_task, lr_task)
    out = png_path(path)
    kept, values = _objectives(trials, hr_task, lr_task, metric)
    methods = _methods(kept)
    colors = method_colors(methods)
    markers = {r: _MARKERS[i % len(_MARKERS)] for i, r in enumerate(_rates(kept))}

    fig = new_figure()
    ax = fig.add_subplot()
    method_of = np.array([str(t["method"]) for t in kept])
    for m in methods:
        sel = np.flatnonzero(method_of == m)
        _draw_method(ax, [kept[i] for i in sel], values[sel], colors[m], markers, m in _HOLLOW_METHODS,
                     (metric, hr_task, lr_task))
        front = sel[_front(values[sel], maximize)]
        # Staircase of the attained region: minimization steps right-then-down ("post"),
        # maximization down-then-right ("pre").
        where = "pre" if maximize else "post"
        ax.step(values[front, 0], values[front, 1], where=where, color=colors[m], alpha=0.8)

    _front_legends(fig, colors, markers)
    ax.set_xlabel(f"{hr_task} {label} (high-resource)")
    ax.set_ylabel(f"{lr_task} {label} (low-resource)")
    sense = "higher is better" if maximize else "lower is better"
    ax.set_title(f"Trade-off fronts: {label}, {sense}")
    ax.grid(alpha=0.3)
    return save_png(fig, out)


def _draw_method(ax: Axes, trials: Sequence[Trial], values: np.ndarray, color: str, markers: Mapping[Any, str],
                 hollow: bool, spread_of: tuple[str, str, str]) -> None:
    """One method's points (a marker per rate) and, for seed means, a bar over each task's min-max across seeds
    (``spread_of``: the metric and the two tasks)."""
    face = "none" if hollow else color
    rate_of = [t.get("rate") for t in trials]
    for rate, marker in markers.items():
        pts = [i for i in range(len(trials)) if rate_of[i] == rate]
        if pts:
            ax.scatter(values[pts, 0], values[pts, 1], marker=marker, s=40, facecolors=face,
                       edgecolors=color, linewidths=1.5 if face == "none" else 0.5, zorder=3)
    metric, hr_task, lr_task = spread_of
    for i, trial in enumerate(trials):
        x, y = _spread(trial, metric, hr_task), _spread(trial, metric, lr_task)
        if x is not None and y is not None:
            ax.errorbar(values[i, 0], values[i, 1], xerr=[[values[i, 0] - x[0]], [x[1] - values[i, 0]]],
                        yerr=[[values[i, 1] - y[0]], [y[1] - values[i, 1]]], fmt="none", ecolor=color,
                        elinewidth=1, capsize=2, alpha=0.7, zorder=2)


def _front_legends(fig: Figure, colors: Mapping[str, str], markers: Mapping[Any, str]) -> None:
    """The method legend (colours, hollow for the restart baseline) and the sampling-rate legend (markers)."""
    method_handles = [
        Line2D([], [], color=color, marker="o", label=m, markerfacecolor="none" if m in _HOLLOW_METHODS else color)
        for m, color in colors.items()
    ]
    rate_handles = [
        Line2D([], [], color="black", marker=mk, linestyle="none", markerfacecolor="none",
               label=f"rate {_fmt_rate(r)}")
        for r, mk in markers.items()
    ]
    # Legends outside the axes: fronts fill the corners a legend would otherwise cover.
    fig.legend(handles=method_handles, title="method", loc="outside right upper", fontsize="small")
    fig.legend(handles=rate_handles, title="sampling rate", loc="outside right lower", fontsize="small")


# ---------------------------------------------------------------------------- public plots


def plot_fronts(
    trials: Sequence[Trial],
    hr_task: str,
    lr_task: str,
    path: str | os.PathLike[str],
    metric: str = "final",
    label: str | None = None,
) -> Path:
    """Scatter of per-trial validation losses with each method's non-dominated front (Fig. 2/16).

    x is the high-resource loss, y the low-resource loss; colour is the method, marker the
    sampling rate, restart-baseline points are hollow, and each method's front is a step
    line. Trials without ``metric`` values for both tasks are skipped.

    Args:
        trials: sweep trial records.
        hr_task, lr_task: high- and low-resource task names (keys of ``trial[metric]``).
        path: output ``.png`` file; parent directories are created.
        metric: per-task loss record to plot, ``"final"`` (default) or ``"best"``, or another minimized one
            (``"off_target"``).
        label: how the axes name ``metric`` (default ``val loss (<metric>)``).
    """
    return _front_figure(trials, hr_task, lr_task, path, metric, maximize=False,
                         label=label or f"val loss ({metric})")


def plot_bleu_fronts(
    trials: Sequence[Trial],
    hr_task: str,
    lr_task: str,
    path: str | os.PathLike[str],
    metric: str = "bleu",
) -> Path:
    """Like :func:`plot_fronts` for BLEU (maximized: negated for dominance).

    Trials without BLEU for both tasks are skipped; ValueError if none has it.
    """
    return _front_figure(trials, hr_task, lr_task, path, metric, maximize=True, label=metric.upper())


def plot_efficiency(trials: Sequence[Trial], lr_task: str, path: str | os.PathLike[str],
                    unit: str = "examples") -> Path:
    """Low-resource examples (or target tokens, ``unit="tokens"``, or characters) seen vs low-resource validation
    loss, best trial per method (Fig. 3).

    The best trial of a method has the lowest ``final[lr_task]``; its curve comes from ``history`` entries
    (``<unit>_seen_<lr_task>``, :func:`hf_ptjf.seen.seen_of_size_unit`, and ``eval_<lr_task>_loss``).
    A filled dot marks the first evaluation of each new training stage (e.g. PTJF's joint stage).
    """
    trials = _check_trials(trials)
    out = png_path(path)
    loss_key, x_key = f"eval_{lr_task}_loss", f"{seen_key(seen_of_size_unit(unit))}_{lr_task}"
    methods = _methods(trials)
    colors = method_colors(methods)

    fig = new_figure()
    ax = fig.add_subplot()
    drawn = 0
    best_of = best_trials(trials, lr_task)
    for m in methods:
        best = best_of.get(m)
        if best is None:
            continue
        xs, ys, stages = loss_curve(best.get("history") or [], loss_key, x_key)
        if not xs:
            continue
        ax.plot(xs, ys, color=colors[m], label=f"{m} (rate {_fmt_rate(best.get('rate'))})")
        for i in range(1, len(stages)):
            if stages[i] != stages[i - 1]:
                ax.plot(xs[i], ys[i], "o", color=colors[m], markersize=6)
        drawn += 1
    if drawn == 0:
        raise ValueError(
            f"No best-per-method trial has a history with {x_key!r} and {loss_key!r}; "
            f"check `lr_task` and that the sweep logged {seen_label(unit)} seen."
        )
    ax.set_xlabel(f"{lr_task} {seen_label(unit)} seen")
    ax.set_ylabel(f"{lr_task} validation loss")
    ax.set_title(f"Low-resource data efficiency ({lr_task}), best trial per method")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_png(fig, out)


def plot_training_curves(
    trials: Sequence[Trial],
    task: str,
    path: str | os.PathLike[str],
    method: str | None = None,
) -> Path:
    """Validation loss of ``task`` vs step, one colour per sampling rate (Fig. 4).

    Args:
        trials: sweep trial records (their ``history``).
        task: task whose ``eval_<task>_loss`` is plotted.
        path: output ``.png`` file.
        method: only plot this method's trials; None plots all, line style per method.
    """
    trials = _check_trials(trials)
    out = png_path(path)
    if method is not None:
        trials = [t for t in trials if str(t["method"]) == method]
        if not trials:
            raise ValueError(f"`method`={method!r} has no trials; pass one of the sweep's methods or None.")
    loss_key = f"eval_{task}_loss"
    rates = _rates(trials)
    palette = colormaps["viridis"](np.linspace(0.0, 0.9, max(len(rates), 1)))
    rate_color = {r: palette[i] for i, r in enumerate(rates)}
    methods = _methods(trials)
    styles = {m: ("-", "--", ":", "-.")[i % 4] for i, m in enumerate(methods)}

    fig = new_figure()
    ax = fig.add_subplot()
    labelled: set[tuple[str, Any]] = set()
    for t in trials:
        xs, ys, _ = loss_curve(t.get("history") or [], loss_key, "step")
        if not xs:
            continue
        key = (str(t["method"]), t.get("rate"))
        label = None
        if key not in labelled:  # one legend entry per (method, rate), not per seed
            labelled.add(key)
            label = f"rate {_fmt_rate(key[1])}" + ("" if method is not None else f" ({key[0]})")
        ax.plot(xs, ys, styles[key[0]], color=rate_color[key[1]], label=label, alpha=0.9)
    if not labelled:
        raise ValueError(f"No trial history has {loss_key!r}; check `task` (e.g. one of the sweep's task names).")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{task} validation loss")
    ax.set_title(f"{task} validation loss" + (f" ({method})" if method else ""))
    ax.grid(alpha=0.3)
    # Outside the axes: with a dozen curves any inside corner hides some of them.
    fig.legend(loc="outside right upper", fontsize="small")
    return save_png(fig, out)


# ---------------------------------------------------------------------------- report


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _try_plot(fn: Any, *args: Any, **kwargs: Any) -> tuple[Path | None, str]:
    """Run an optional plot; a ValueError (no data for it) becomes a note in the report."""
    try:
        return fn(*args, **kwargs), ""
    except ValueError as err:
        return None, str(err)


def _efficiency_section(trials: Sequence[Trial], lr_task: str, unit: str) -> list[str]:
    """Figure 3 as numbers: the low-resource data each method's best trial had seen when it first reached each
    method's best low-resource loss, and the ratio to scalarization's (the paper: PTJF needs a fraction)."""
    rows = efficiency_rows(trials, lr_task, unit)
    if not rows:
        return []
    best = best_trials(trials, lr_task)
    methods = [m for m in _methods(trials) if m in rows[0]["seen"]]
    others = [m for m in methods if m != _BASELINE] if _BASELINE in methods else []
    seen = seen_label(unit)

    def amount(x: float | None) -> str:
        return "never" if x is None else f"{x:,.0f}"

    lines = ["## Low-resource data efficiency (Figure 3)", "",
             f"{_md(lr_task)} {seen} seen by each method's best trial (lowest final {_md(lr_task)} loss) when its "
             f"{_md(lr_task)} validation loss first reached each method's best level; the ratio is to "
             f"{_BASELINE}'s (below 1: fewer). The paper's claim: PTJF reaches {_BASELINE}'s best level with a "
             "fraction of the low-resource data.", "",
             "| level | whose best | " + " | ".join(f"{_md(m)} (rate {_fmt_rate(best[m].get('rate'))})" for m in methods)
             + "".join(f" | {_md(m)} / {_BASELINE}" for m in others) + " |",
             "|---:|---|" + "---:|" * (len(methods) + len(others))]
    for r in rows:
        cells = [amount(r["seen"][m]) for m in methods]
        for m in others:
            a, b = r["seen"][m], r["seen"][_BASELINE]
            cells.append(f"{a / b:.2f}" if a is not None and b else "-")
        lines.append(f"| {r['level']:.4f} | {_md(r['of'])} | " + " | ".join(cells) + " |")
    return lines + [""]


def write_report(
    trials: Sequence[Trial],
    hr_task: str,
    lr_task: str,
    out_dir: str | os.PathLike[str],
    unit: str = "examples",
) -> Path:
    """Write ``out_dir/report.md``: figures, the per-method Pareto fronts and their hypervolumes. ``unit``: what the
    low-resource efficiency figure counts as seen (``examples``, ``tokens`` or ``characters``: the sweep's
    ``size_unit``).

    Fronts use the final validation loss of both tasks (both minimized). Hypervolumes are
    taken against one shared reference point, the worst observed finite loss per task plus
    ``REFERENCE_MARGIN`` (10%) of the observed range (see :func:`hf_ptjf.pareto.reference_point`),
    so they are comparable across methods of this sweep but not across sweeps. When a
    ``scalarization`` baseline is present each method's front is also compared with it.

    Returns:
        Path of the written ``report.md`` (PNGs are written next to it).
    """
    trials = _check_trials(trials)
    _check_tasks(hr_task, lr_task)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept, values = _objectives(trials, hr_task, lr_task, "final")
    methods = _methods(kept)
    lines = [
        f"# Trade-off report: {hr_task} (high-resource) vs {lr_task} (low-resource)",
        "",
        f"{len(kept)} trials with final validation losses for both tasks"
        + (f" ({len(trials) - len(kept)} skipped: missing or NaN final loss)" if len(kept) < len(trials) else "")
        + f"; methods: {', '.join(methods)}. Both losses are minimized.",
        "",
    ]
    lines += _figures_section(trials, kept, hr_task, lr_task, out, unit)
    front_lines, fronts = _fronts_section(kept, values, methods, hr_task, lr_task)
    lines += front_lines
    lines += _hypervolume_section(kept, fronts, reference_point(values, margin=REFERENCE_MARGIN), hr_task, lr_task)
    lines += _efficiency_section(trials, lr_task, unit)

    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _figures_section(trials: Sequence[Trial], kept: Sequence[Trial], hr_task: str, lr_task: str, out: Path,
                     unit: str) -> list[str]:
    """Draw the report's figures into ``out``; the lines embedding them (a note for each that had no data)."""
    figures = [("Validation-loss trade-off fronts", plot_fronts(kept, hr_task, lr_task, out / "fronts.png"), "")]
    optional = [
        ("BLEU trade-off fronts", plot_bleu_fronts, (trials, hr_task, lr_task, out / "fronts_bleu.png")),
        (f"Low-resource efficiency ({lr_task})", plot_efficiency, (trials, lr_task, out / "efficiency.png", unit)),
    ] + [
        (f"Training curves ({task})", plot_training_curves, (trials, task, out / f"curves_{_slug(task)}.png"))
        for task in (hr_task, lr_task)
    ]
    for title, fn, args in optional:
        figures.append((title, *_try_plot(fn, *args)))
    lines = ["## Figures", ""]
    for title, png, note in figures:
        lines += [f"### {title}", "", f"![{title}]({png.name})" if png is not None else f"_Skipped: {note}_", ""]
    return lines


def _fronts_section(kept: Sequence[Trial], values: np.ndarray, methods: Sequence[str], hr_task: str, lr_task: str
                    ) -> tuple[list[str], dict[str, np.ndarray]]:
    """The table of each method's non-dominated trials (with the seed range of seed means), and the fronts."""
    method_of = np.array([str(t["method"]) for t in kept])
    spread = any(_spread(t, "final", task) is not None for t in kept for task in (hr_task, lr_task))
    lines = [
        "## Pareto fronts (final validation loss)",
        "",
        "Non-dominated trials of each method, sorted by high-resource loss"
        + (" (seed means; the seed range is each task's min-max over the seeds)." if spread else "."),
        "",
        f"| method | trial | rate | {_md(hr_task)} loss | {_md(lr_task)} loss |" + (" seed range |" if spread else ""),
        "|---|---|---:|---:|---:|" + ("---:|" if spread else ""),
    ]
    fronts: dict[str, np.ndarray] = {}
    for m in methods:
        sel = np.flatnonzero(method_of == m)
        fronts[m] = values[sel[_front(values[sel])]]
        for i in sel[_front(values[sel])]:
            t = kept[i]
            name = t.get("trial", f"{m}#{i}")
            row = f"| {_md(m)} | {_md(name)} | {_fmt_rate(t.get('rate'))} | {values[i, 0]:.4f} | {values[i, 1]:.4f} |"
            if spread:
                spans = [_spread(t, "final", task) for task in (hr_task, lr_task)]
                row += " " + " / ".join("-" if s is None else f"{s[0]:.4f}-{s[1]:.4f}" for s in spans) + " |"
            lines.append(row)
    return lines, fronts


def _hypervolume_section(kept: Sequence[Trial], fronts: Mapping[str, np.ndarray], ref: np.ndarray, hr_task: str,
                         lr_task: str) -> list[str]:
    """Each method's hypervolume against the shared reference point, and its front against scalarization's."""
    method_of = np.array([str(t["method"]) for t in kept])
    lines = [
        "",
        "## Hypervolume",
        "",
        f"Reference point ({_md(hr_task)}, {_md(lr_task)}) = ({ref[0]:.4f}, {ref[1]:.4f}): the worst observed final "
        f"loss per task over all trials plus {REFERENCE_MARGIN:.0%} of its observed range. Higher is better; "
        "values are comparable within this report only.",
        "",
    ]
    base = fronts.get(_BASELINE)
    if base is None:
        lines += ["| method | trials | front size | hypervolume |", "|---|---:|---:|---:|"]
    else:
        lines += [
            f"| method | trials | front size | hypervolume | vs {_BASELINE} | "
            f"its front points dominated by {_BASELINE} | {_BASELINE} front points it dominates |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
    for m, front in fronts.items():
        row = f"| {_md(m)} | {int((method_of == m).sum())} | {len(front)} | {hypervolume(front, ref):.4f} |"
        if base is not None:
            cmp = compare_fronts(front, base, ref)
            row += f" {cmp.hv_diff:+.4f} | {int(cmp.a_dominated.sum())} | {int(cmp.b_dominated.sum())} |"
        lines.append(row)
    lines.append("")
    return lines
