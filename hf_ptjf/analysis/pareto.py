"""Pareto fronts and hypervolumes for trade-off sweeps (K objectives, all minimized).

The evidence for PTJF is a *trade-off front*: every trial of a sampling-rate grid gives one
point of final per-task validation losses, and a method is better when its non-dominated
set sits closer to the origin. Everything here is a pure numpy function of an ``(n, K)``
array-like of points; maximized objectives (BLEU, chrF++) should be negated by the caller, or read from trial
records with :func:`front_objectives`, which orients them by :data:`FRONT_METRICS`.

Conventions
-----------
* ``a`` dominates ``b`` iff ``a <= b`` on every objective and ``a < b`` on at least one.
* :func:`non_dominated` returns a **boolean mask** aligned with the input rows, so it can
  index the trial records the points came from. Exact duplicates do not dominate each
  other; by default only the first occurrence is kept (deterministic, input order).
* :func:`hypervolume` is the Lebesgue measure of the region dominated by the points and
  bounded by ``reference``. Points not strictly better than the reference on every
  objective contribute nothing.
* NaN is rejected (a diverged trial should be dropped or mapped to ``inf`` by the caller);
  ``+inf`` is allowed and simply dominated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "FRONT_METRICS",
    "FrontComparison",
    "FrontMetric",
    "compare_fronts",
    "dominated_by",
    "dominates",
    "front_objectives",
    "hypervolume",
    "non_dominated",
    "pareto_front",
    "pareto_indices",
    "reference_point",
]


@dataclass(frozen=True)
class FrontMetric:
    """What a trade-off front can be drawn on: the per-task record of a sweep trial and its sense.

    Attributes:
        key: the trial record's per-task mapping (``final``, ``chrf``, ``off_target``, ``bleu``).
        maximize: higher is better (negated for dominance).
        label: how figures and tables name it.
    """

    key: str
    maximize: bool
    label: str


#: The sweep's ``front_metric`` values: final validation loss (default), chrF++, the off-target rate, BLEU.
FRONT_METRICS: dict[str, FrontMetric] = {
    "loss": FrontMetric("final", False, "final val loss"),
    "chrf": FrontMetric("chrf", True, "chrF++"),
    "off_target": FrontMetric("off_target", False, "off-target rate"),
    "bleu": FrontMetric("bleu", True, "BLEU"),
}


def front_objectives(records: Sequence[Mapping[str, Any]], tasks: Sequence[str], metric: str
                     ) -> tuple[list[Mapping[str, Any]], np.ndarray, np.ndarray]:
    """``(kept records, values, minimized values)``: the records with a finite ``metric`` for every task of
    ``tasks``, their ``(n, K)`` values as recorded, and the same oriented for minimization (negated when higher is
    better), ready for :func:`pareto_indices`, :func:`hypervolume` and :func:`reference_point`.

    Raises:
        ValueError: ``metric`` is not one of :data:`FRONT_METRICS`.
    """
    if metric not in FRONT_METRICS:
        raise ValueError(f"`metric`={metric!r} is not a front metric; use one of {sorted(FRONT_METRICS)}.")
    spec = FRONT_METRICS[metric]
    kept, rows = [], []
    for record in records:
        values = [(record.get(spec.key) or {}).get(task) for task in tasks]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            kept.append(record)
            rows.append([float(v) for v in values])
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(tasks))
    return kept, values, -values if spec.maximize else values


def _points(points: ArrayLike, name: str = "points", k: int | None = None) -> np.ndarray:
    """Validate ``points`` as a float64 ``(n, K)`` array; ``[]`` is ``(0, k)``."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, k if k is not None else (arr.shape[-1] if arr.ndim == 2 else 0))
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be 2-D with shape (n_points, n_objectives), got shape {arr.shape}; "
            "wrap a single point as [point]."
        )
    if k is not None and arr.shape[1] != k:
        raise ValueError(f"`{name}` has {arr.shape[1]} objectives but {k} were expected; pass matching columns.")
    if np.isnan(arr).any():
        raise ValueError(f"`{name}` contains NaN; drop diverged trials or replace NaN with inf.")
    return arr


def _vector(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D vector of objectives, got shape {arr.shape}.")
    if np.isnan(arr).any():
        raise ValueError(f"`{name}` contains NaN.")
    return arr


def dominates(a: ArrayLike, b: ArrayLike) -> bool:
    """Whether point ``a`` Pareto-dominates point ``b`` (minimization).

    True iff ``a <= b`` everywhere and ``a < b`` somewhere; a point never dominates itself.
    """
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same number of objectives, got {a.size} and {b.size}.")
    return bool(np.all(a <= b) and np.any(a < b))


def dominated_by(points: ArrayLike, others: ArrayLike) -> np.ndarray:
    """Boolean mask over ``points``: True where some row of ``others`` dominates that point.

    O(n * m * K) time, O(m * K) extra memory.
    """
    p = _points(points, "points")
    o = _points(others, "others", k=p.shape[1] if p.size else None)
    if p.size == 0 or o.size == 0:
        return np.zeros(len(p), dtype=bool)
    if o.shape[1] != p.shape[1]:
        raise ValueError(
            f"`points` and `others` must have the same number of objectives, got {p.shape[1]} and {o.shape[1]}."
        )
    out = np.empty(len(p), dtype=bool)
    for i, x in enumerate(p):  # one row at a time keeps memory linear in len(others)
        out[i] = bool(np.any(np.all(o <= x, axis=1) & np.any(o < x, axis=1)))
    return out


def non_dominated(points: ArrayLike, *, keep_duplicates: bool = False) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (shape ``(n,)``).

    Args:
        points: ``(n, K)`` objectives, all minimized.
        keep_duplicates: exact duplicates of a non-dominated point never dominate each
            other. If False (default) only the first occurrence is marked, so the front is
            a set; if True every copy is marked.

    O(n^2 * K) time, O(n * K) extra memory; fine for sweep grids (hundreds of trials).
    """
    p = _points(points)
    mask = ~dominated_by(p, p)
    if not keep_duplicates:
        for i in np.flatnonzero(mask):
            # mark later exact copies of a kept point as not-on-front
            copies = np.flatnonzero(np.all(p == p[i], axis=1))
            mask[copies[copies > i]] = False
    return mask


def pareto_indices(points: ArrayLike) -> np.ndarray:
    """Row indices of the non-dominated points, sorted by the first objective (ties: next ones)."""
    p = _points(points)
    idx = np.flatnonzero(non_dominated(p))
    if idx.size == 0:
        return idx
    # lexsort sorts by the *last* key first, so feed the objectives reversed
    order = np.lexsort(p[idx].T[::-1])
    return idx[order]


def pareto_front(points: ArrayLike) -> np.ndarray:
    """The non-dominated points (duplicates once), ``(m, K)``, sorted by the first objective."""
    p = _points(points)
    return p[pareto_indices(p)]


def _hv2d(p: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D sweep, O(n log n); ``p`` strictly inside ``ref``, may hold dominated rows."""
    p = p[np.lexsort((p[:, 1], p[:, 0]))]
    area, best_y = 0.0, ref[1]
    for x, y in p:
        if y < best_y:  # only the strip below the current staircase is new
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def _hv(p: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume by slicing along the last objective (HSO-style recursion)."""
    n, k = p.shape
    if n == 0:
        return 0.0
    if k == 1:
        return float(ref[0] - p[:, 0].min())
    if k == 2:
        return _hv2d(p, ref)
    p = p[np.argsort(p[:, -1], kind="stable")]
    total = 0.0
    for i in range(n):
        upper = p[i + 1, -1] if i + 1 < n else ref[-1]
        if upper > p[i, -1]:  # slab [z_i, z_{i+1}) is dominated by the first i+1 points
            total += (upper - p[i, -1]) * _hv(p[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(points: ArrayLike, reference: ArrayLike) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by ``reference`` (minimization).

    Points that are not strictly better than ``reference`` on every objective contribute
    nothing. 2-D uses a sweep (O(n log n)); K >= 3 slices along the last objective and
    recurses down to the 2-D sweep, O(n^(K-1) log n) time: exact and fast for the small
    fronts of a sweep (n up to a few hundred for K=3), not meant for large K.
    """
    ref = _vector(reference, "reference")
    if not np.all(np.isfinite(ref)):
        raise ValueError(
            "`reference` must be finite; use e.g. reference_point(points) for the worst values + a margin."
        )
    p = _points(points, k=ref.size)
    p = p[np.all(p < ref, axis=1)]
    if p.size:
        p = p[non_dominated(p)]  # dominated points add no volume; pruning keeps recursion small
    return float(_hv(p, ref))


def reference_point(points: ArrayLike, margin: float = 0.1) -> np.ndarray:
    """Hypervolume reference: the worst finite value per objective plus a margin.

    ``reference = max + margin * (max - min)`` per objective over finite values; where an
    objective has zero range the margin is taken relative to ``max(|max|, 1)``, so every
    observed point (the worst included) contributes a positive volume.
    """
    if not margin > 0:
        raise ValueError(f"`margin` must be > 0 so the worst point still counts, got {margin!r}.")
    p = _points(points)
    if p.size == 0:
        raise ValueError("`points` is empty: a reference point needs at least one observed point.")
    finite = np.where(np.isfinite(p), p, np.nan)
    if np.isnan(finite).all(axis=0).any():
        raise ValueError("`points` has an objective with no finite value; drop diverged trials first.")
    hi, lo = np.nanmax(finite, axis=0), np.nanmin(finite, axis=0)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
    return hi + margin * span


@dataclass(frozen=True, eq=False)
class FrontComparison:
    """How two point sets compare (minimization), e.g. PTJF vs scalarization.

    Attributes:
        a_dominated: mask over ``a``: rows dominated by some point of ``b``.
        b_dominated: mask over ``b``: rows dominated by some point of ``a``.
        hv_a, hv_b: hypervolumes against ``reference``.
        hv_diff: ``hv_a - hv_b`` (> 0: ``a`` covers more of the objective space).
        reference: the reference point used.
    """

    a_dominated: np.ndarray
    b_dominated: np.ndarray
    hv_a: float
    hv_b: float
    hv_diff: float
    reference: np.ndarray

    @property
    def a_strictly_better(self) -> bool:
        """Every point of ``b`` is dominated by ``a`` and none of ``a`` by ``b``."""
        return bool(self.b_dominated.all() and not self.a_dominated.any() and self.b_dominated.size > 0)


def compare_fronts(a: ArrayLike, b: ArrayLike, reference: ArrayLike) -> FrontComparison:
    """Cross-dominance and hypervolumes of point sets ``a`` and ``b`` against ``reference``."""
    ref = _vector(reference, "reference")
    pa, pb = _points(a, "a", k=ref.size), _points(b, "b", k=ref.size)
    hv_a, hv_b = hypervolume(pa, ref), hypervolume(pb, ref)
    return FrontComparison(
        a_dominated=dominated_by(pa, pb),
        b_dominated=dominated_by(pb, pa),
        hv_a=hv_a,
        hv_b=hv_b,
        hv_diff=hv_a - hv_b,
        reference=ref,
    )
