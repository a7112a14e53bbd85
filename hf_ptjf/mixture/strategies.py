"""Rate strategies: pure functions, task sizes in, sampling probabilities out, registered by name.

Each strategy returns a float64 array that sums to 1 (through :func:`normalise`, the one normalisation) and is chosen
by name from :data:`STRATEGIES`, in the spirit of mosaicml/streaming; a new one is a function decorated with
:func:`register_strategy` in any module (the package's own are below):

* ``proportional``: q_i = D_i / sum(D)
* ``temperature``: q_i ∝ (D_i / sum(D)) ** (1 / tau)   (tau=1 is proportional, tau→∞ uniform)
* ``static``: fixed user weights, normalised (scalarization in the paper)
* ``unimax``: Chung et al. 2023, a uniform budget with a per-task epoch cap

Any strategy can additionally be capped so no task is planned to be repeated more than ``max_epochs`` times within a
sample budget (:func:`cap_epochs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..checks import did_you_mean
from ..errors import UserError

__all__ = ["RATE_STRATEGIES", "STRATEGIES", "Strategy", "cap_epochs", "mixing_rates", "normalise", "positive", "proportional",
           "register_online_strategy", "register_strategy", "static", "strategy", "task_sizes", "temperature", "unimax"]


def task_sizes(sizes: Sequence[float], name: str = "sizes") -> np.ndarray:
    arr = np.asarray(sizes, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D sequence of task sizes, got {sizes!r}.")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"`{name}` must be positive (every task needs at least one example), got {arr.tolist()}. "
            "Remove empty tasks from the mixture."
        )
    return arr


def normalise(x: np.ndarray) -> np.ndarray:
    """``x / sum(x)``: the one normalisation of the mixture (every strategy's rates go through it)."""
    return x / x.sum()


def proportional(sizes: Sequence[float]) -> np.ndarray:
    """Sample each task in proportion to its size: q_i = D_i / sum(D)."""
    return normalise(task_sizes(sizes))


def temperature(sizes: Sequence[float], tau: float) -> np.ndarray:
    """Temperature sampling: q_i ∝ (D_i / sum(D)) ** (1 / tau).

    tau=1 is proportional sampling, larger tau flattens towards uniform (the paper uses tau=3.33).
    """
    if tau is None or not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"`tau` (temperature) must be a finite number > 0, got {tau!r}; use 1.0 for proportional.")
    p = proportional(sizes)
    # log-space keeps tiny tasks finite under small tau
    logits = np.log(p) / float(tau)
    return normalise(np.exp(logits - logits.max()))


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
    return normalise(w)


def unimax(sizes: Sequence[float], budget: float, max_epochs: float = 1.0) -> np.ndarray:
    """UniMax (Chung et al. 2023): as uniform as possible, but no task beyond ``max_epochs`` passes.

    Tasks are visited from smallest to largest; each gets
    ``min(remaining_budget / tasks_left, max_epochs * size)`` examples, and the rates are
    proportional to these allocations.
    """
    d = task_sizes(sizes)
    positive(budget, "budget")
    positive(max_epochs, "max_epochs")
    alloc = np.zeros_like(d)
    remaining = float(budget)
    order = np.argsort(d, kind="stable")
    for n_left, i in zip(range(len(d), 0, -1), order):
        alloc[i] = min(remaining / n_left, max_epochs * d[i])
        remaining -= alloc[i]
    return normalise(alloc)


def cap_epochs(rates: Sequence[float], sizes: Sequence[float], budget: float, max_epochs: float) -> np.ndarray:
    """Cap each task at ``max_epochs`` planned passes within ``budget`` samples.

    A capped task's excess is redistributed to the uncapped tasks in proportion to their rates,
    repeatedly, until no task exceeds its cap. If the budget exceeds what all caps allow together,
    every task is capped and the rates are proportional to the caps.
    """
    q = np.asarray(rates, dtype=np.float64)
    d = task_sizes(sizes)
    if q.shape != d.shape:
        raise ValueError(f"`rates` has {q.size} entries but `sizes` has {d.size}; they must match.")
    positive(budget, "budget")
    positive(max_epochs, "max_epochs")
    caps = max_epochs * d
    if caps.sum() <= budget:
        return normalise(caps)
    alloc = q * budget
    capped = np.zeros(d.size, dtype=bool)
    while True:
        over = (alloc > caps * (1 + 1e-12)) & ~capped
        if not over.any():
            return normalise(alloc)
        capped |= over
        alloc[capped] = caps[capped]
        free = ~capped
        left = budget - alloc[capped].sum()
        weights = q[free]
        # an uncapped task with rate 0 stays at 0; if all free rates are 0 spread evenly
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(free.sum(), 1.0 / free.sum())
        alloc[free] = weights * left


def positive(value: float, name: str) -> None:
    """Refuse a ``value`` that is not a finite number > 0, naming it."""
    if value is None or not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")



@dataclass(frozen=True)
class Strategy:
    """A registered rate strategy: ``rates(sizes, **params)`` (sizes a float64 array, in the mixture's size unit).

    ``params`` are the names of its parameters (keys of a recipe's ``mixture:`` section); ``uses_sizes``: whether
    the rates depend on the task sizes; ``uses_budget``: whether it needs the stage's budget (passed as ``budget``).
    """

    name: str
    rates: Callable[..., np.ndarray]
    params: tuple[str, ...] = ()
    uses_sizes: bool = True
    uses_budget: bool = False
    online: Callable[..., Any] | None = None  # an online strategy's class (hf_ptjf.mixture.online), built from params


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, *, params: Sequence[str] = (), uses_sizes: bool = True,
                      uses_budget: bool = False) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register ``fn(sizes, **params) -> rates`` as strategy ``name`` (a decorator); it is then usable by name from a
    recipe's ``mixture: {strategy: name}``, from ``MixtureTrainingArguments(mixture_strategy=name)`` and from
    :class:`~hf_ptjf.mixture.Mixture`. Registering a taken name is refused (unregister it first to replace it)."""
    def register(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in STRATEGIES:
            raise ValueError(f"a rate strategy named `{name}` is already registered; pick another name.")
        STRATEGIES[name] = Strategy(name, fn, tuple(params), uses_sizes, uses_budget)
        return fn
    return register


def register_online_strategy(name: str, cls: Callable[..., Any], *, params: Sequence[str]) -> Callable[..., Any]:
    """Register ``cls`` (an :class:`~hf_ptjf.mixture.online.OnlineStrategy` built from ``params``, keys of a recipe's
    ``mixture:`` section) as the online strategy ``name``; its rates start at its ``initial`` mixture's."""
    if name in STRATEGIES:
        raise ValueError(f"a rate strategy named `{name}` is already registered; pick another name.")

    def initial_only(sizes: Sequence[float], **_: Any) -> np.ndarray:
        raise ValueError(f"strategy `{name}` decides its rates while training: its first rates are its `initial` "
                         "mixture's (Mixture.rates computes them).")
    STRATEGIES[name] = Strategy(name, initial_only, tuple(params), uses_sizes=False, online=cls)
    return cls


def strategy(name: str) -> Strategy:
    """The registered strategy ``name``, or a user error naming the known ones."""
    if name not in STRATEGIES:
        raise UserError(f"unknown rate strategy `{name}`.{did_you_mean(name, STRATEGIES)} Choose one of "
                        f"{sorted(STRATEGIES)} (or register your own with hf_ptjf.mixture.register_strategy).")
    return STRATEGIES[name]


register_strategy("proportional")(lambda sizes: proportional(sizes))
register_strategy("temperature", params=("tau",))(lambda sizes, tau: temperature(sizes, tau))
register_strategy("static", params=("weights",), uses_sizes=False)(lambda sizes, weights: static(weights, sizes))
register_strategy("unimax", params=("max_epochs",), uses_budget=True)(
    lambda sizes, budget, max_epochs=1.0: unimax(sizes, budget, max_epochs))


class _Registry(Mapping[str, Callable[..., np.ndarray]]):
    """``RATE_STRATEGIES``: name -> rate function, a live view of :data:`STRATEGIES` (the old registry's shape)."""

    def __getitem__(self, name: str) -> Callable[..., np.ndarray]:
        return STRATEGIES[name].rates

    def __iter__(self):
        return iter(STRATEGIES)

    def __len__(self) -> int:
        return len(STRATEGIES)


RATE_STRATEGIES: Mapping[str, Callable[..., np.ndarray]] = _Registry()


def mixing_rates(strategy_name: str, sizes: Sequence[float], *, max_epochs: float | None = None,
                 budget: float | None = None, **params: object) -> np.ndarray:
    """Rates for a registered strategy with its parameters; ``max_epochs`` with ``budget`` caps any strategy's
    epochs (:func:`cap_epochs`; UniMax uses them natively).

    >>> mixing_rates("temperature", [900, 100], tau=1.0).round(2).tolist()
    [0.9, 0.1]
    """
    chosen = strategy(strategy_name)
    allowed = set(chosen.params) - ({"max_epochs"} if chosen.uses_budget else set())
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"strategy `{chosen.name}` got unexpected parameter(s) {sorted(unknown)}; it accepts "
                         f"{sorted(allowed) or 'none'}.")
    missing = sorted(p for p in allowed if params.get(p) is None)
    if missing:
        raise ValueError(f"strategy `{chosen.name}` needs {missing}.")
    if chosen.uses_budget:
        if budget is None:
            raise ValueError(f"strategy `{chosen.name}` needs `budget` (total examples the run will draw).")
        extra = {"max_epochs": max_epochs} if max_epochs is not None and "max_epochs" in chosen.params else {}
        return chosen.rates(sizes, budget=budget, **params, **extra)
    rates = chosen.rates(sizes, **params)
    if max_epochs is not None:
        if budget is None:
            raise ValueError("`max_epochs` needs `budget` (total examples the run will draw) to cap epochs.")
        rates = cap_epochs(rates, sizes, budget, max_epochs)
    return rates
