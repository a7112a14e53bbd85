"""What a sample budget means per task under given rates: expected examples and passes (``hf-ptjf-inspect``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .strategies import positive, task_sizes

__all__ = ["TaskPlan", "plan", "rates_by_name"]


@dataclass(frozen=True)
class TaskPlan:
    """What a sample budget means for one task under given rates (expected values)."""

    name: str
    size: int
    rate: float
    expected_examples: float
    expected_epochs: float


def plan(
    sizes: Sequence[float],
    rates: Sequence[float],
    budget: float,
    names: Sequence[str] | None = None,
) -> list[TaskPlan]:
    """Expected examples (rate * budget) and epochs (examples / size) per task for ``budget`` samples."""
    d = task_sizes(sizes)
    q = np.asarray(rates, dtype=np.float64)
    if q.shape != d.shape:
        raise ValueError(f"`rates` has {q.size} entries but `sizes` has {d.size}; they must match.")
    positive(budget, "budget")
    names = list(names) if names is not None else [f"task{i}" for i in range(d.size)]
    if len(names) != d.size:
        raise ValueError(f"`names` has {len(names)} entries but `sizes` has {d.size}.")
    return [
        TaskPlan(name, int(size), float(rate), float(rate * budget), float(rate * budget / size))
        for name, size, rate in zip(names, d, q)
    ]


def rates_by_name(rates: np.ndarray, names: Sequence[str]) -> Mapping[str, float]:
    """Pair rates with task names (for logs and model cards)."""
    return {n: float(r) for n, r in zip(names, rates)}
