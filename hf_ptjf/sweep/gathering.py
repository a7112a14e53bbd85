"""Gathering a sweep: each complete trial's record, seed means, ``sweep_results.{csv,json}``, ``summary.md``
(with the fronts on the sweep's ``front_metric``: chrF++, the off-target rate or BLEU besides the loss) and the
report (:func:`hf_ptjf.analysis.plots.write_report`).

The record of a trial that fine-tuned from a shared pre-training run includes that run's history, examples seen
and wall time, so it reads like an unshared PTJF trial; its examples-seen counters run across stages.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..analysis.pareto import FRONT_METRICS, front_objectives, hypervolume, pareto_indices, reference_point
from ..recipe import METHODS
from ..runner.results import best_loss, cumulative_counts
from ..seen import SEEN_UNITS, seen_key, seen_label, seen_of_size_unit, total_seen
from .config import SweepConfig
from .trials import PRETRAIN, Trial, expand_trials, read_results

__all__ = ["RESULTS_CSV", "RESULTS_JSON", "gather", "records_from_csv", "seed_means", "summary_markdown", "trial_records",
           "write_gathered", "write_tables"]

RESULTS_CSV = "sweep_results.csv"
RESULTS_JSON = "sweep_results.json"


def _record(t: Trial, by_id: Mapping[str, Trial], status: str | None) -> dict[str, Any] | None:
    res = read_results(t.out)
    if not res.get("complete"):
        return None
    stages = list(res.get("stages", []))
    history = list(res.get("history", []))
    if t.depends_on:  # prepend the shared pre-training run, as if it were this trial's first stage
        pre = read_results(by_id[t.depends_on].out)
        offset = sum(s["steps"] for s in pre.get("stages", []))
        history = list(pre.get("history", [])) + [{**h, "step": h.get("step", 0) + offset} for h in history]
        stages = list(pre.get("stages", [])) + stages
    history = cumulative_counts(history, stages)
    final = {k: v.get("final_loss") for k, v in res["tasks"].items()}
    best = {task: best_loss(history, task, final[task]) for task in res["tasks"]}
    return {
        "trial": t.trial,
        "method": t.label,
        "base_method": t.method,
        "rate": t.rate,
        "seed": t.seed,
        "lr": t.lr if t.lr is not None else t.recipe.get("learning_rate"),
        "first_stage_steps": t.first_stage_steps,
        "total_steps": t.total_steps,
        "pretrain": t.depends_on,
        "status": status or "complete",
        "wall_time_s": round(sum(float(s.get("wall_time_s") or 0) for s in stages), 2),
        "final": final,
        "final_ce": {k: v.get("final_ce") for k, v in res["tasks"].items()},  # without label smoothing (if logged)
        "best": best,
        "bleu": {k: v.get("bleu") for k, v in res["tasks"].items() if v.get("bleu") is not None},
        **{key: _numbers(res["tasks"], key) for key in ("chrf", "off_target")},  # chrF++, share not in the target
        **{seen_key(unit): {task: total_seen(stages, unit, task) for task in res["tasks"]} for unit in SEEN_UNITS},
        "output_dir": t.output_dir,
        "recipe": t.recipe,
        "history": history,
    }


def _numbers(tasks: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, float]:
    """Each task's ``key`` where the run measured it (an off-target note, for a language the detector does not know,
    is not a number and stays in the trial's results.json)."""
    return {k: v[key] for k, v in tasks.items() if isinstance(v.get(key), (int, float))}


def trial_records(cfg: SweepConfig, trials: Sequence[Trial], status: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Records of the complete trials (shared pre-training runs are folded into their trials)."""
    by_id = {t.trial: t for t in trials}
    records = (_record(t, by_id, (status or {}).get(t.trial)) for t in trials if t.method != PRETRAIN)
    return [r for r in records if r is not None]


def _mean_history(rs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per step, the evaluations and seen counts every seed logged, averaged."""
    steps: dict[int, list[Mapping[str, Any]]] = {}
    for r in rs:
        for h in r["history"]:
            steps.setdefault(h.get("step", 0), []).append(h)
    history = []
    for step in sorted(steps):
        hs = steps[step]
        row: dict[str, Any] = {"step": step, "stage": hs[0].get("stage")}
        for key in {k for h in hs for k in h if k.startswith(("eval_", *(f"{seen_key(u)}_" for u in SEEN_UNITS)))}:
            xs = [h[key] for h in hs if isinstance(h.get(key), (int, float))]
            if len(xs) == len(rs):
                row[key] = sum(xs) / len(xs)
        history.append(row)
    return history


def _per_task(rs: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[float] | None]:
    """Each task's values of ``key`` over the seeds; None when a seed lacks it."""
    values = {}
    for task in rs[0].get(key) or {}:
        xs = [(r.get(key) or {}).get(task) for r in rs]
        values[task] = None if any(x is None for x in xs) else xs
    return values


def _mean(rs: Sequence[Mapping[str, Any]], key: str) -> dict[str, float | None]:
    return {task: None if xs is None else sum(xs) / len(xs) for task, xs in _per_task(rs, key).items()}


def seed_means(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per (method, rate, lr): losses averaged over seeds (``final_range``: the final losses' min and max
    over two or more seeds); histories averaged per step."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["method"], r["rate"], r["lr"]), []).append(r)
    out = []
    for (method, rate, lr), rs in groups.items():
        out.append({
            "trial": f"{method}" + ("" if rate is None else f"-r{rate:g}") + f" (mean of {len(rs)})",
            "method": method, "rate": rate, "lr": lr, "seed": "mean", "n_seeds": len(rs),
            "final": _mean(rs, "final"), "best": _mean(rs, "best"),
            "chrf": _mean(rs, "chrf"), "off_target": _mean(rs, "off_target"),
            # the spread the fronts and the report show beside each mean (one seed has none)
            "final_range": {t: None if xs is None else [min(xs), max(xs)] for t, xs in _per_task(rs, "final").items()}
            if len(rs) > 1 else {},
            **{seen_key(u): _mean(rs, seen_key(u)) for u in SEEN_UNITS},
            "history": _mean_history(rs),
        })
    return out


# The columns of sweep_results.csv: a trial's settings, then ``<key>_<task>`` per task, then its output_dir.
CSV_TRIAL_KEYS = ("trial", "method", "base_method", "rate", "lr", "seed", "first_stage_steps", "total_steps",
                  "pretrain", "status", "wall_time_s")
CSV_TASK_KEYS = ("final", "final_ce", "best", "bleu", "chrf", "off_target", "examples_seen")
_CSV_INTS = ("seed", "first_stage_steps", "total_steps", "examples_seen")


def _csv_row(rec: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, Any]:
    row = {k: rec.get(k) for k in CSV_TRIAL_KEYS}
    for task in tasks:
        for key in CSV_TASK_KEYS:
            row[f"{key}_{task}"] = (rec.get(key) or {}).get(task)
    row["output_dir"] = rec.get("output_dir")
    return row


def _csv_value(key: str, text: str) -> Any:
    if text == "":
        return None
    if key in _CSV_INTS:
        return int(text)
    try:
        return float(text)
    except ValueError:  # a name: trial, method, pretrain, status
        return text


def records_from_csv(path: str | Path) -> list[dict[str, Any]]:
    """The trial records a ``sweep_results.csv`` holds (without histories or recipes), e.g. to gather seeds whose
    trial folders are on another machine with this machine's trials (:func:`write_gathered`)."""
    records = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            tasks = [k[len("final_"):] for k in row if k.startswith("final_") and not k.startswith("final_ce_")]
            rec: dict[str, Any] = {k: _csv_value(k, row[k]) for k in CSV_TRIAL_KEYS}
            for key in CSV_TASK_KEYS:
                values = {t: _csv_value(key, row[f"{key}_{t}"]) for t in tasks}
                rec[key] = {t: v for t, v in values.items() if v is not None}
            records.append({**rec, "output_dir": row["output_dir"], "recipe": {}, "history": []})
    return records


def write_tables(cfg: SweepConfig, records: Sequence[Mapping[str, Any]], status: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """``sweep_results.csv`` (one row per trial: config + metrics) and ``sweep_results.json`` (+ histories); returns
    their paths."""
    cfg.report_out.mkdir(parents=True, exist_ok=True)
    tasks = sorted({t for r in records for t in r["final"]}, key=lambda t: (t != cfg.hr_task, t != cfg.lr_task, t))
    rows = [_csv_row(r, tasks) for r in records]
    csv_path = cfg.report_out / RESULTS_CSV
    with open(csv_path, "w", newline="") as f:
        fields = list(rows[0]) if rows else ["trial"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    json_path = cfg.report_out / RESULTS_JSON
    json_path.write_text(json.dumps({"sweep": dataclasses.asdict(cfg), "status": dict(status or {}),
                                     "trials": list(records)}, indent=1, default=str))
    return csv_path, json_path


def _seen_cell(values: Sequence[int | None]) -> str:
    """Mean count over seeds; ``-`` when a seed's count is unknown (characters of rows that carried none)."""
    if not values or any(v is None for v in values):
        return "-"
    return f"{sum(values) / len(values):.0f}"


def _stat(xs: Sequence[float | None]) -> str:
    """Mean over seeds, with the min-max range when there are several."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = sum(xs) / len(xs)
    return f"{m:.3f}" if len(xs) == 1 else f"{m:.3f} ({min(xs):.3f}-{max(xs):.3f})"


def _summary_row(cfg: SweepConfig, method: str, rate: float, lr: Any, rs: Sequence[Mapping[str, Any]]) -> str:
    hr, lr_task = cfg.hr_task, cfg.lr_task
    steps = []
    for r in rs:
        evals = [(h[f"eval_{lr_task}_loss"], h["step"]) for h in r["history"] if h.get(f"eval_{lr_task}_loss") is not None]
        if evals:
            steps.append(min(evals)[1])
    seen = seen_key(seen_of_size_unit(cfg.size_unit))
    return (f"| {method} | {'n/a' if rate < 0 else f'{rate:g}'} | {lr if lr is not None else '-'} | {len(rs)} | "
            f"{_stat([r['final'].get(hr) for r in rs])} | {_stat([r['final'].get(lr_task) for r in rs])} | "
            f"{_stat([(r.get('final_ce') or {}).get(lr_task) for r in rs])} | "
            f"{_stat([r['best'].get(lr_task) for r in rs])} | {'/'.join(str(s) for s in steps) or '-'} | "
            f"{_seen_cell([(r.get(seen) or {}).get(lr_task) for r in rs])} | "
            f"{_stat([(r.get('chrf') or {}).get(lr_task) for r in rs])} | "
            f"{_stat([(r.get('off_target') or {}).get(lr_task) for r in rs])} | "
            f"{_stat([(r.get('off_target') or {}).get(hr) for r in rs])} | "
            f"{sum(float(r['wall_time_s']) for r in rs) / len(rs):.0f} |")


def summary_markdown(cfg: SweepConfig, records: Sequence[Mapping[str, Any]], front_figure: str | None = None) -> str:
    """Per (method, rate): seeds, final/best losses (mean and range over seeds), what the low-resource task saw (in
    the sweep's ``size_unit``), chrF++ and off-target rates, wall time; then, unless the sweep's ``front_metric`` is
    the loss, the fronts on that metric (``front_figure``: their PNG beside summary.md)."""
    hr, lr = cfg.hr_task, cfg.lr_task
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["method"], r["rate"] if r["rate"] is not None else -1.0, r["lr"]), []).append(r)
    order = {m: i for i, m in enumerate(METHODS)}
    lines = [f"# Sweep summary: {hr} (high-resource) vs {lr} (low-resource)", "",
             "Mean over seeds (min-max). Final = last evaluation (with the recipe's label smoothing); CE = the same "
             "without label smoothing (`-` for runs made before it was logged); best = lowest evaluation during "
             "training (early stopping, for reference only: the fronts use final losses). chrF++ and the off-target rate "
             "(the share of hypotheses not in the task's target language) are the last stage's, `-` when the trials "
             "did not generate (eval.bleu false).", "",
             f"| method | rate | lr | seeds | final {hr} | final {lr} | final {lr} CE | best {lr} | best {lr} at step | "
             f"{lr} {seen_label(cfg.size_unit)} seen | {lr} chrF++ | {lr} off-target | {hr} off-target | "
             "wall time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (method, rate, lr_), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0].split("@")[0], 9),
                                                                           kv[0][0], kv[0][1], str(kv[0][2]))):
        lines.append(_summary_row(cfg, method, rate, lr_, rs))
    if cfg.front_metric != "loss":
        lines += ["", *metric_front_lines(records, hr, lr, cfg.front_metric, front_figure)]
    return "\n".join(lines) + "\n"


def metric_front_lines(records: Sequence[Mapping[str, Any]], hr: str, lr: str, metric: str,
                       figure: str | None = None) -> list[str]:
    """summary.md's section on the fronts of ``metric`` (a :data:`~hf_ptjf.analysis.pareto.FRONT_METRICS` name):
    per method its non-dominated trials on (``hr``, ``lr``) and its hypervolume against one shared reference point
    (the worst value per task plus 10% of the range, in the minimized orientation), and the figure if drawn."""
    spec = FRONT_METRICS[metric]
    kept, values, minimized = front_objectives(records, [hr, lr], metric)
    sense = "higher is better" if spec.maximize else "lower is better"
    lines = [f"## Fronts on {spec.label} ({sense})", ""]
    if not kept:
        return lines + [f"_No trial recorded {spec.label} for both {hr} and {lr}._"]
    lines += [f"![fronts on {spec.label}]({figure})", ""] if figure else []
    ref = reference_point(minimized, margin=0.1)
    lines += [f"| method | trial | rate | {hr} {spec.label} | {lr} {spec.label} | front size | hypervolume |",
              "|---|---|---:|---:|---:|---:|---:|"]
    methods = sorted({str(r["method"]) for r in kept}, key=lambda m: (m not in METHODS, m))
    for m in methods:
        sel = np.flatnonzero([str(r["method"]) == m for r in kept])
        front = sel[pareto_indices(minimized[sel])]
        volume = hypervolume(minimized[front], ref)
        for j, i in enumerate(front):
            rate = kept[i].get("rate")
            lines.append(f"| {m} | {kept[i].get('trial')} | {'n/a' if rate is None else f'{rate:g}'} | "
                         f"{values[i, 0]:.4f} | {values[i, 1]:.4f} | {len(front) if j == 0 else ''} | "
                         f"{f'{volume:.4f}' if j == 0 else ''} |")
    return lines


def gather(cfg: SweepConfig, trials: Sequence[Trial] | None = None, status: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Tables + ``report.md`` and PNGs (all trials) + ``mean/report.md`` (seed means, with several seeds)."""
    trials = expand_trials(cfg) if trials is None else trials
    records = trial_records(cfg, trials, status)
    write_gathered(cfg, records, status)
    return records


def write_gathered(cfg: SweepConfig, records: Sequence[Mapping[str, Any]], status: Mapping[str, str] | None = None) -> None:
    """What :func:`gather` writes for ``records``: the tables, summary.md, report.md with its PNGs, and with
    several ``cfg.seeds`` the seed means' report under mean/."""
    from ..analysis.plots import write_report  # matplotlib: imported only when a report is written

    write_tables(cfg, records, status)
    if records:
        figure = _metric_front_figure(cfg, records)
        (cfg.report_out / "summary.md").write_text(summary_markdown(cfg, records, figure))
        write_report(records, cfg.hr_task, cfg.lr_task, cfg.report_out, cfg.size_unit)
        if len(cfg.seeds) > 1:
            write_report(seed_means(records), cfg.hr_task, cfg.lr_task, cfg.report_out / "mean", cfg.size_unit)


def _metric_front_figure(cfg: SweepConfig, records: Sequence[Mapping[str, Any]]) -> str | None:
    """``fronts_<front_metric>.png`` beside summary.md (None for the loss, drawn by the report, or without data)."""
    from ..analysis.plots import plot_bleu_fronts, plot_fronts  # matplotlib: imported only when a report is written

    if cfg.front_metric == "loss":
        return None
    spec = FRONT_METRICS[cfg.front_metric]
    path = cfg.report_out / f"fronts_{cfg.front_metric}.png"
    try:
        if spec.maximize:
            plot_bleu_fronts(records, cfg.hr_task, cfg.lr_task, path, metric=spec.key)
        else:
            plot_fronts(records, cfg.hr_task, cfg.lr_task, path, metric=spec.key, label=spec.label)
    except ValueError:  # no trial has the metric for both tasks: the section says so
        return None
    return path.name
