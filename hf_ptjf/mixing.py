"""Mixing rates: pure functions, task sizes in, sampling probabilities out.

Each strategy returns a float64 numpy array that sums to 1 and is chosen by name through
:func:`mixing_rates` (the ``RATE_STRATEGIES`` registry), in the spirit of mosaicml/streaming.

* ``proportional``: q_i = D_i / sum(D)
* ``temperature``: q_i ∝ (D_i / sum(D)) ** (1 / tau)   (tau=1 is proportional, tau→∞ uniform)
* ``static``: fixed user weights, normalised (scalarization in the paper)
* ``unimax``: Chung et al. 2023, a uniform budget with a per-task epoch cap

Any strategy can additionally be capped so no task is planned to be repeated more than
``max_epochs`` times within a sample budget (:func:`cap_epochs`); :func:`plan` reports the
expected examples and epochs per task for a budget (used by ``hf-ptjf-inspect``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

SIZE_UNITS = ("examples", "tokens", "characters")  # what task sizes can be measured in (`MixtureSpec.size_unit`)

__all__ = [
    "RATE_STRATEGIES",
    "MixtureSpec",
    "TaskPlan",
    "cap_epochs",
    "mixing_rates",
    "plan",
    "proportional",
    "static",
    "temperature",
    "unimax",
]


def _sizes(sizes: Sequence[float], name: str = "sizes") -> np.ndarray:
    arr = np.asarray(sizes, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D sequence of task sizes, got {sizes!r}.")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"`{name}` must be positive (every task needs at least one example), got {arr.tolist()}. "
            "Remove empty tasks from the mixture."
        )
    return arr


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / x.sum()


def proportional(sizes: Sequence[float]) -> np.ndarray:
    """Sample each task in proportion to its size: q_i = D_i / sum(D)."""
    return _normalise(_sizes(sizes))


def temperature(sizes: Sequence[float], tau: float) -> np.ndarray:
    """Temperature sampling: q_i ∝ (D_i / sum(D)) ** (1 / tau).

    tau=1 is proportional sampling, larger tau flattens towards uniform (the paper uses tau=3.33).
    """
    if tau is None or not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"`tau` (temperature) must be a finite number > 0, got {tau!r}; use 1.0 for proportional.")
    p = proportional(sizes)
    # log-space keeps tiny tasks finite under small tau
    logits = np.log(p) / float(tau)
    return _normalise(np.exp(logits - logits.max()))


def static(weights: Sequence[float], sizes: Sequence[float] | None = None) -> np.ndarray:
    """Scalarization: fixed per-task weights w_i >= 0 (not all zero), normalised to sum to 1."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"`weights` must be a non-empty 1-D sequence, got {weights!r}.")
    if sizes is not None and len(sizes) != w.size:
        raise ValueError(f"`weights` has {w.size} entries but there are {len(sizes)} tasks; give one weight per task.")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"`weights` must be finite and >= 0, got {w.tolist()}.")
    if w.sum() <= 0:
        raise ValueError("`weights` are all zero: give at least one task a positive weight.")
    return _normalise(w)


def unimax(sizes: Sequence[float], budget: float, max_epochs: float = 1.0) -> np.ndarray:
    """UniMax (Chung et al. 2023): as uniform as possible, but no task beyond ``max_epochs`` passes.

    Tasks are visited from smallest to largest; each gets
    ``min(remaining_budget / tasks_left, max_epochs * size)`` examples, and the rates are
    proportional to these allocations.
    """
    d = _sizes(sizes)
    _positive(budget, "budget")
    _positive(max_epochs, "max_epochs")
    alloc = np.zeros_like(d)
    remaining = float(budget)
    order = np.argsort(d, kind="stable")
    for n_left, i in zip(range(len(d), 0, -1), order):
        alloc[i] = min(remaining / n_left, max_epochs * d[i])
        remaining -= alloc[i]
    return _normalise(alloc)


def cap_epochs(rates: Sequence[float], sizes: Sequence[float], budget: float, max_epochs: float) -> np.ndarray:
    """Cap each task at ``max_epochs`` planned passes within ``budget`` samples.

    A capped task's excess is redistributed to the uncapped tasks in proportion to their rates,
    repeatedly, until no task exceeds its cap. If the budget exceeds what all caps allow together,
    every task is capped and the rates are proportional to the caps.
    """
    q = np.asarray(rates, dtype=np.float64)
    d = _sizes(sizes)
    if q.shape != d.shape:
        raise ValueError(f"`rates` has {q.size} entries but `sizes` has {d.size}; they must match.")
    _positive(budget, "budget")
    _positive(max_epochs, "max_epochs")
    caps = max_epochs * d
    if caps.sum() <= budget:
        return _normalise(caps)
    alloc = q * budget
    capped = np.zeros(d.size, dtype=bool)
    while True:
        over = (alloc > caps * (1 + 1e-12)) & ~capped
        if not over.any():
            return _normalise(alloc)
        capped |= over
        alloc[capped] = caps[capped]
        free = ~capped
        left = budget - alloc[capped].sum()
        weights = q[free]
        # an uncapped task with rate 0 stays at 0; if all free rates are 0 spread evenly
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(free.sum(), 1.0 / free.sum())
        alloc[free] = weights * left


def _positive(value: float, name: str) -> None:
    if value is None or not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")


# name -> function(sizes, **params); every entry takes the task sizes first.
RATE_STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "proportional": lambda sizes: proportional(sizes),
    "temperature": lambda sizes, tau: temperature(sizes, tau),
    "static": lambda sizes, weights: static(weights, sizes),
    "unimax": lambda sizes, budget, max_epochs=1.0: unimax(sizes, budget, max_epochs),
}
_PARAMS = {"proportional": (), "temperature": ("tau",), "static": ("weights",), "unimax": ("budget", "max_epochs")}


def mixing_rates(
    strategy: str,
    sizes: Sequence[float],
    *,
    max_epochs: float | None = None,
    budget: float | None = None,
    **params: object,
) -> np.ndarray:
    """Rates for ``strategy`` (a key of ``RATE_STRATEGIES``) with its parameters.

    ``max_epochs`` together with ``budget`` applies :func:`cap_epochs` to any strategy (UniMax uses
    them natively).

    >>> mixing_rates("temperature", [900, 100], tau=1.0).round(2).tolist()
    [0.9, 0.1]
    """
    if strategy not in RATE_STRATEGIES:
        raise ValueError(f"unknown rate strategy `{strategy}`; choose one of {sorted(RATE_STRATEGIES)}.")
    allowed = _PARAMS[strategy]
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(
            f"strategy `{strategy}` got unexpected parameter(s) {sorted(unknown)}; it accepts {list(allowed) or 'none'}."
        )
    if strategy == "unimax":
        if budget is None:
            raise ValueError("strategy `unimax` needs `budget` (total examples the run will draw).")
        return unimax(sizes, budget, max_epochs if max_epochs is not None else 1.0)
    missing = [p for p in allowed if params.get(p) is None]
    if missing:
        raise ValueError(f"strategy `{strategy}` needs {missing}.")
    rates = RATE_STRATEGIES[strategy](sizes, **params)
    if max_epochs is not None:
        if budget is None:
            raise ValueError("`max_epochs` needs `budget` (total examples the run will draw) to cap epochs.")
        rates = cap_epochs(rates, sizes, budget, max_epochs)
    return rates


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
    d = _sizes(sizes)
    q = np.asarray(rates, dtype=np.float64)
    if q.shape != d.shape:
        raise ValueError(f"`rates` has {q.size} entries but `sizes` has {d.size}; they must match.")
    _positive(budget, "budget")
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


@dataclass
class MixtureSpec:
    """Which tasks a stage trains on and how they are mixed: the one description of a mixture.

    A recipe's ``mixture:`` section, :class:`~hf_ptjf.trainer.MixtureTrainingArguments`' ``mixture_*`` fields and
    ``hf-ptjf-inspect`` all become a ``MixtureSpec``, and :meth:`rates` is the only place rates are computed.
    ``strategy`` defaults to ``static`` when ``weights`` are given, else ``temperature`` (``tau=1``: proportional).
    """

    tasks: list[str] | None = None  # None: every task of the recipe
    strategy: str | None = None
    tau: float = 1.0
    weights: Mapping[str, float] | list[float] | None = None  # for `static`, by task name or in task order
    max_epochs: float | None = None  # epoch cap (UniMax's cap; optional for the others)
    size_unit: str = "examples"  # what task sizes (and UniMax's budget / an epoch cap) are measured in

    def __post_init__(self) -> None:
        if self.strategy is None:
            self.strategy = "static" if self.weights is not None else "temperature"
        if self.strategy not in RATE_STRATEGIES:
            raise ValueError(f"strategy must be one of {sorted(RATE_STRATEGIES)}, got {self.strategy!r}")
        if self.strategy == "temperature" and not (
            isinstance(self.tau, (int, float)) and not isinstance(self.tau, bool) and 0 < self.tau < float("inf")
        ):
            raise ValueError(f"tau must be > 0 and finite (1.0 is proportional, 3.33 the paper's), got {self.tau!r}")
        if self.weights is not None and not isinstance(self.weights, (Mapping, list, tuple)):
            raise ValueError(f"weights must be a mapping {{task: weight}} or a list with one weight per task, "
                             f"got {self.weights!r}")
        if self.strategy == "static" and self.weights is None:
            raise ValueError("strategy `static` needs `weights` (by task name, or one per task in order)")
        if self.weights is not None and self.strategy != "static":
            raise ValueError(f"`weights` are used by strategy `static` only; remove them or set `strategy: static` "
                             f"(strategy is {self.strategy!r})")
        if self.max_epochs is not None and not (
            isinstance(self.max_epochs, (int, float)) and not isinstance(self.max_epochs, bool)
            and 0 < self.max_epochs < float("inf")
        ):
            raise ValueError(f"max_epochs must be a finite number > 0, got {self.max_epochs!r}")
        if self.strategy == "unimax" and self.max_epochs is None:
            self.max_epochs = 1.0
        if self.size_unit not in SIZE_UNITS:
            raise ValueError(f"size_unit must be one of {list(SIZE_UNITS)}, got {self.size_unit!r}")

    @property
    def uses_sizes(self) -> bool:
        """Do the rates depend on the tasks' sizes (every strategy but ``static``, and any epoch cap)?"""
        return self.strategy != "static" or self.max_epochs is not None

    @property
    def uses_budget(self) -> bool:
        """Do the rates depend on the stage's budget (UniMax, an epoch cap)?"""
        return self.strategy == "unimax" or self.max_epochs is not None

    def weight_list(self, tasks: Sequence[str]) -> list[float] | None:
        """Weights in the order of ``tasks`` (missing names weigh 0)."""
        if self.weights is None:
            return None
        if isinstance(self.weights, Mapping):
            return [float(self.weights.get(t, 0.0)) for t in tasks]
        return [float(w) for w in self.weights]

    def rates(self, sizes: Mapping[str, float], budget: float | None = None) -> np.ndarray:
        """Sampling probabilities of the tasks in ``sizes`` (name -> training examples), in that order.

        ``budget`` (what the stage draws, in ``size_unit``) is needed by ``unimax`` and by an epoch cap
        (``max_epochs``).
        """
        names = list(sizes)
        params: dict[str, Any] = {}
        if self.strategy == "temperature":
            params["tau"] = self.tau
        elif self.strategy == "static":
            params["weights"] = self.weight_list(names)
        return mixing_rates(self.strategy, [sizes[n] for n in names], max_epochs=self.max_epochs,
                            budget=budget if self.uses_budget else None, **params)
