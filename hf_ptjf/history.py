"""A run's logged history (``results.json``'s ``history``, a sweep trial's): its per-stage counters made to run
across stages, and the curve of one logged value against another.

Below the runner and the analysis tools alike: the runner draws its own run's curves from it, the analysis reads
finished runs and sweeps through it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from .seen import SEEN_UNITS, seen_key, total_seen

__all__ = ["cumulative_counts", "loss_curve"]


def cumulative_counts(history: list[dict[str, Any]], stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Make the per-stage ``<unit>_seen_<task>`` counters (``SEEN_UNITS``) run across stages."""
    offsets: dict[str, dict[str, int]] = {}
    for i, s in enumerate(stages):
        offsets[s["name"]] = {f"{seen_key(unit)}_{t}": total_seen(stages[:i], unit, t)
                              for unit in SEEN_UNITS for t in _tasks_seen(stages)}
    out = []
    for h in history:
        off = offsets.get(h.get("stage"), {})
        # a count the earlier stages did not make (None: characters of rows without them) is unknown from then on
        out.append({k: (v + off[k] if off.get(k) is not None and isinstance(v, (int, float)) else v)
                    for k, v in h.items() if not (k in off and off[k] is None)})
    return out


def _tasks_seen(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({t for s in stages for t in (s.get("examples_seen") or {})})


def loss_curve(history: Iterable[Mapping[str, Any]], loss_key: str, x_key: str
               ) -> tuple[list[float], list[float], list[Any]]:
    """(x, loss, stage) points from a trial history, x forward-filled in step order.

    Trainer logs often put counters and eval losses in separate entries, so an eval entry
    takes the latest ``x_key`` value logged at or before its step.
    """
    xs, ys, stages = [], [], []
    last_x = None
    entries = sorted(history, key=lambda e: e.get("step", 0))  # stable: same-step order kept
    for e in entries:
        if e.get(x_key) is not None:
            last_x = float(e[x_key])
        loss = e.get(loss_key)
        if loss is not None and last_x is not None and not math.isnan(float(loss)):
            xs.append(last_x)
            ys.append(float(loss))
            stages.append(e.get("stage"))
    return xs, ys, stages
