"""Low-resource data efficiency (the paper's Figure 3), measured from trial histories.

The paper's claim: PTJF reaches scalarization's best low-resource loss having seen a fraction of the low-resource
examples. For each method's best trial (lowest final low-resource loss) the curve of low-resource validation loss
against low-resource data seen (examples, target tokens or characters: the sweep's ``size_unit``) gives, for a loss
level, the amount seen when the trial first reached it. :func:`efficiency_rows` reads it at each method's best
level, so the table says whether each method reached the others' best, and with what fraction of the data.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..history import loss_curve  # (its home since issue 25; still importable from here)
from ..seen import seen_key, seen_of_size_unit

__all__ = ["best_trials", "efficiency_rows", "loss_curve", "seen_to_reach"]

Trial = Mapping[str, Any]


def best_trials(trials: Sequence[Trial], lr_task: str) -> dict[str, Trial]:
    """Each method's trial with the lowest final ``lr_task`` loss (methods in first-seen order)."""
    out: dict[str, Trial] = {}
    for t in trials:
        final = (t.get("final") or {}).get(lr_task)
        if final is None or math.isnan(float(final)):
            continue
        m = str(t["method"])
        if m not in out or final < out[m]["final"][lr_task]:
            out[m] = t
    return out


def seen_to_reach(xs: Sequence[float], ys: Sequence[float], level: float) -> float | None:
    """The data seen when the loss first was at or below ``level`` (``None``: never)."""
    return next((x for x, y in zip(xs, ys) if y <= level), None)


def efficiency_rows(trials: Sequence[Trial], lr_task: str, unit: str = "examples") -> list[dict[str, Any]]:
    """One row per method's best loss level: ``{"level", "of": method, "seen": {method: amount or None}}``, levels
    from the lowest; each method's best trial read at every level."""
    x_key, loss_key = f"{seen_key(seen_of_size_unit(unit))}_{lr_task}", f"eval_{lr_task}_loss"
    curves = {m: loss_curve(t.get("history") or [], loss_key, x_key)[:2] for m, t in best_trials(trials, lr_task).items()}
    curves = {m: c for m, c in curves.items() if c[0]}
    levels = sorted((min(ys), m) for m, (_, ys) in curves.items())
    return [{"level": level, "of": of, "seen": {m: seen_to_reach(xs, ys, level) for m, (xs, ys) in curves.items()}}
            for level, of in levels]
