"""A run's results: ``results.json`` (per task final / best loss, BLEU, chrF++, off-target rate, examples, target tokens and characters seen;
per stage its record; the whole history) and its Markdown rendering, ``report.md``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..history import cumulative_counts  # (its home since issue 25; still importable from here)
from ..recipe import RecipeConfig
from ..seen import SEEN_UNITS, seen_key, total_seen
from .records import StageResult

__all__ = ["best_loss", "cumulative_counts", "off_target_fields", "render_report", "summarize", "where_everything_is"]


def summarize(cfg: RecipeConfig, stages: list[StageResult]) -> dict[str, Any]:
    """results.json: per task final/best loss, BLEU, what it saw (``SEEN_UNITS``); per stage the record."""
    offset, history = 0, []
    for s in stages:
        for h in s.history:
            history.append({**h, "stage": s.name, "step": offset + h.get("step", 0)})
        offset += s.steps
    tasks: dict[str, dict[str, Any]] = {}
    records = [{**asdict(s), "reset": _reset(cfg, s)} for s in stages]
    last = stages[-1] if stages else None
    for name in cfg.task_names:
        final = last.metrics.get(f"eval_{name}_loss") if last else None
        tasks[name] = {
            "final_loss": final,
            "final_ce": last.metrics.get(f"eval_{name}_ce", final) if last else None,  # without label smoothing
            "best_loss": best_loss(history, name, final),
            "bleu": last.metrics.get(f"eval_{name}_bleu") if last else None,
            **off_target_fields(last.metrics if last else {}, name),  # chrf, off_target (+ a note when unknown)
            **{seen_key(unit): total_seen(records, unit, name) for unit in SEEN_UNITS},
        }
    return {
        "run_name": cfg.run_name,
        "method": cfg.method,
        "complete": len(stages) == len(cfg.stages),
        "total_steps": offset,
        "tasks": tasks,
        "stages": records,
        "samples": next((s.samples for s in reversed(stages) if s.samples), {}),
        "history": history,
    }


def off_target_fields(metrics: Mapping[str, Any], task: str) -> dict[str, Any]:
    """A task's ``chrf`` (chrF++) and ``off_target`` rate from a stage's metrics; with ``off_target_note`` instead of
    a rate when the language detector does not know the task's target language."""
    out = {"chrf": metrics.get(f"eval_{task}_chrf"), "off_target": metrics.get(f"eval_{task}_off_target")}
    note = metrics.get(f"eval_{task}_off_target_note")
    return {**out, "off_target_note": note} if note else out


def _reset(cfg: RecipeConfig, stage: StageResult) -> dict[str, str]:
    """What the stage started anew (its ``reset:``; the first stage always starts fresh)."""
    spec = next((s for s in cfg.stages if s.name == stage.name), None)
    return asdict(spec.reset) if spec is not None else {"optimizer": "fresh", "lr_schedule": "fresh"}


def best_loss(history: Sequence[Mapping[str, Any]], task: str, final: float | None) -> float | None:
    """The lowest validation loss of ``task`` over a history and its final evaluation (None if never evaluated)."""
    losses = [h[f"eval_{task}_loss"] for h in history if h.get(f"eval_{task}_loss") is not None]
    losses += [final] if final is not None else []
    return min(losses) if losses else None


def render_report(results: dict[str, Any], figures: Mapping[str, str] | None = None) -> str:
    """report.md: the results as Markdown tables, the curves (``figures``: name -> path relative to the
    report) and a few decoded translations per task."""
    lines = [f"# {results['run_name']} ({results['method'] or 'custom stages'})", "", "## Tasks", "",
             "| task | final val loss | final cross-entropy | best val loss | BLEU | chrF++ | off-target rate "
             "| examples seen | target tokens seen | characters seen |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in results["tasks"].items():
        cells = [_fmt(t.get(k)) for k in ("final_loss", "final_ce", "best_loss", "bleu", "chrf", "off_target",
                                          *(seen_key(unit) for unit in SEEN_UNITS))]
        if t.get("off_target_note"):
            cells[5] = _cell(t["off_target_note"])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if any(t.get("off_target") is not None or t.get("off_target_note") for t in results["tasks"].values()):
        lines += ["", "chrF++: sacreBLEU's chrF with word bigrams; off-target rate: the share of those hypotheses "
                  "whose detected language (py3langid) is not the task's target language."]
    lines += ["", "## Stages", "", "| # | stage | steps | wall time (s) | tasks (rate) | reset (optimizer, LR schedule) "
              "| Hub repo @ sha |", "|---|---|---|---|---|---|---|"]
    for s in results["stages"]:
        rates = ", ".join(f"{t} ({r:.3f})" for t, r in s["rates"].items())
        if s.get("online"):  # rates decided while training: the first and the last
            last = s["online"]["final_rates"]
            rates = (f"{s['online']['strategy']}, online: " +
                     ", ".join(f"{t} ({r:.3f} → {last.get(t, r):.3f})" for t, r in s["rates"].items()))
        hub = f"{s['hub_repo']} @ {s['hub_sha'][:10]}" if s.get("hub_sha") else "local"
        reset = s.get("reset") or {}
        reset = f"{reset.get('optimizer', 'fresh')}, {reset.get('lr_schedule', 'fresh')}"
        lines.append(f"| {s['index']} | {s['name']} | {s['steps']} | {s['wall_time_s']} | {rates} | {reset} | {hub} |")
    if figures:
        lines += ["", "## Curves", "", "Against the step over all stages; a dashed line marks a stage boundary, "
                  "where the optimizer state and the LR schedule start anew (unless the stage's reset keeps them: "
                  "the table above).", ""]
        lines += [f"![{name.replace('_', ' ')}]({path})" for name, path in figures.items()]
    if results.get("samples"):
        lines += ["", "## Sample translations (last stage, validation split)", ""]
        for task, rows in results["samples"].items():
            lines += [f"**{task}**", "", "| source | reference | hypothesis | language |", "|---|---|---|---|"]
            lines += [f"| {_cell(r['source'])} | {_cell(r['reference'])} | {_cell(r['hypothesis'])} | "
                      f"{_language_cell(r)} |" for r in rows]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def where_everything_is(results: dict[str, Any], output_dir: str | Path) -> str:
    """The end of a run: where its report, results, plots, samples, checkpoints and TensorBoard logs are."""
    out = Path(output_dir)
    lines = [f"Run directory: {out}", f"  report:      {out / 'report.md'}", f"  results:     {out / 'results.json'}"]
    plots = sorted((out / "plots").glob("*.png"))
    if plots:
        lines.append(f"  plots:       {', '.join(str(p) for p in plots)}")
    for stage in results.get("stages", []):
        stage_dir = Path(stage["output_dir"]).parent
        samples = sorted(stage_dir.glob("samples_*.jsonl"))
        hub = f" (Hub: {stage['hub_repo']} @ {stage['hub_sha'][:10]})" if stage.get("hub_sha") else ""
        lines.append(f"  stage {stage['name']}: model {stage['output_dir']}{hub}")
        if samples:
            lines.append(f"    samples:   {', '.join(str(p) for p in samples)}")
    if (out / "tensorboard").is_dir():
        lines.append(f"  TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return "\n".join(lines)


def _language_cell(row: Mapping[str, Any]) -> str:
    """The hypothesis's detected language, marked when it is not the task's target (rows of older runs: ``-``)."""
    if "language" not in row:
        return "-"
    lang = row["language"] or "none (no letters)"
    return f"**off-target: {lang}**" if row.get("off_target") else lang


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x)
