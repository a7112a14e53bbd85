"""A run's results: ``results.json`` (per task final / best loss, BLEU, examples and tokens seen; per stage its
record; the whole history) and its Markdown rendering, ``report.md``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..recipe import RecipeConfig
from .records import StageResult

__all__ = ["render_report", "summarize"]


def summarize(cfg: RecipeConfig, stages: list[StageResult]) -> dict[str, Any]:
    """results.json: per task final/best loss, BLEU, examples/tokens seen; per stage the record."""
    offset, history = 0, []
    for s in stages:
        for h in s.history:
            history.append({**h, "stage": s.name, "step": offset + h.get("step", 0)})
        offset += s.steps
    tasks: dict[str, dict[str, Any]] = {}
    last = stages[-1] if stages else None
    for name in cfg.task_names:
        losses = [h[f"eval_{name}_loss"] for h in history if f"eval_{name}_loss" in h]
        if last:
            losses.append(last.metrics.get(f"eval_{name}_loss"))
        losses = [x for x in losses if x is not None]
        tasks[name] = {
            "final_loss": last.metrics.get(f"eval_{name}_loss") if last else None,
            "best_loss": min(losses) if losses else None,
            "bleu": last.metrics.get(f"eval_{name}_bleu") if last else None,
            "examples_seen": sum(s.examples_seen.get(name, 0) for s in stages),
            "target_tokens_seen": sum(s.target_tokens_seen.get(name, 0) for s in stages),
        }
    return {
        "run_name": cfg.run_name,
        "method": cfg.method,
        "complete": len(stages) == len(cfg.stages),
        "total_steps": offset,
        "tasks": tasks,
        "stages": [asdict(s) for s in stages],
        "history": history,
    }


def render_report(results: dict[str, Any]) -> str:
    """report.md: the results as Markdown tables."""
    lines = [f"# {results['run_name']} ({results['method'] or 'custom stages'})", "", "## Tasks", "",
             "| task | final val loss | best val loss | BLEU | examples seen | target tokens seen |",
             "|---|---|---|---|---|---|"]
    for name, t in results["tasks"].items():
        cells = [_fmt(t[k]) for k in ("final_loss", "best_loss", "bleu", "examples_seen", "target_tokens_seen")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Stages", "", "| # | stage | steps | wall time (s) | tasks (rate) | Hub repo @ sha |", "|---|---|---|---|---|---|"]
    for s in results["stages"]:
        rates = ", ".join(f"{t} ({r:.3f})" for t, r in s["rates"].items())
        hub = f"{s['hub_repo']} @ {s['hub_sha'][:10]}" if s.get("hub_sha") else "local"
        lines.append(f"| {s['index']} | {s['name']} | {s['steps']} | {s['wall_time_s']} | {rates} | {hub} |")
    return "\n".join(lines) + "\n"


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x)
