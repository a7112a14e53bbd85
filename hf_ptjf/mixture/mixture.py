"""`Mixture`: which tasks a stage trains on and how they are mixed, from its YAML section to the sampler's rates.

The one description of a mixture: a recipe's ``mixture:`` section, the ``mixture_*`` fields of
:class:`~hf_ptjf.MixtureTrainingArguments`, ``MixtureTrainer(rates=...)`` (:meth:`Mixture.fixed`), the sweep and
``hf-ptjf-inspect`` all build one, and :meth:`Mixture.stage_rates` is the only place rates are computed (strategies
from :mod:`hf_ptjf.mixture.strategies`, sizes and budgets converted between units here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..checks import did_you_mean, is_number
from .strategies import STRATEGIES, mixing_rates, strategy

__all__ = ["SIZE_UNITS", "Mixture", "MixtureSpec"]

SIZE_UNITS = ("examples", "tokens", "characters")  # what task sizes can be measured in (`Mixture.size_unit`)


@dataclass
class Mixture:
    """Which tasks a stage trains on and how they are mixed.

    ``strategy`` (a name registered in :data:`~hf_ptjf.mixture.strategies.STRATEGIES`) defaults to ``static`` when
    ``weights`` are given, else ``temperature`` (``tau=1``: proportional).
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
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {self.strategy!r}."
                             f"{did_you_mean(self.strategy, STRATEGIES)}")
        if self.strategy == "temperature" and not is_number(self.tau, 0, float("inf"), open_low=True):
            raise ValueError(f"tau must be > 0 and finite (1.0 is proportional, 3.33 the paper's), got {self.tau!r}")
        if self.weights is not None and not isinstance(self.weights, (Mapping, list, tuple)):
            raise ValueError(f"weights must be a mapping {{task: weight}} or a list with one weight per task, "
                             f"got {self.weights!r}")
        if self.strategy == "static" and self.weights is None:
            raise ValueError("strategy `static` needs `weights` (by task name, or one per task in order)")
        if self.weights is not None and self.strategy != "static":
            raise ValueError(f"`weights` are used by strategy `static` only; remove them or set `strategy: static` "
                             f"(strategy is {self.strategy!r})")
        if self.max_epochs is not None and not is_number(self.max_epochs, 0, float("inf"), open_low=True):
            raise ValueError(f"max_epochs must be a finite number > 0, got {self.max_epochs!r}")
        if self.strategy == "unimax" and self.max_epochs is None:
            self.max_epochs = 1.0
        if self.size_unit not in SIZE_UNITS:
            raise ValueError(f"size_unit must be one of {list(SIZE_UNITS)}, got {self.size_unit!r}")

    # ------------------------------------------------------------------ other ways to describe a mixture
    @classmethod
    def fixed(cls, rates: Mapping[str, float] | Sequence[float], tasks: Sequence[str]) -> "Mixture":
        """Rates given by the caller (by task name, or in task order): a ``static`` mixture of those weights."""
        if isinstance(rates, Mapping):
            unknown = set(rates) - set(tasks)
            if unknown:
                raise ValueError(f"`rates` names unknown task(s) {sorted(unknown)}; tasks are {list(tasks)}.")
            rates = [rates.get(n, 0.0) for n in tasks]
        return cls(tasks=list(tasks), strategy="static", weights=[float(r) for r in rates])

    @classmethod
    def from_training_args(cls, args: Any) -> "Mixture":
        """The mixture the ``mixture_*`` fields of :class:`~hf_ptjf.MixtureTrainingArguments` describe."""
        if args.mixture_strategy == "static" and args.mixture_weights is None:
            raise ValueError("`mixture_strategy='static'` needs `mixture_weights` (one per task).")
        return cls(strategy=args.mixture_strategy, tau=args.mixture_tau, max_epochs=args.mixture_max_epochs,
                   weights=args.mixture_weights if args.mixture_strategy == "static" else None)

    # ------------------------------------------------------------------ what the rates depend on
    @property
    def uses_sizes(self) -> bool:
        """Do the rates depend on the tasks' sizes (every strategy but ``static``, and any epoch cap)?"""
        return strategy(self.strategy).uses_sizes or self.max_epochs is not None

    @property
    def uses_budget(self) -> bool:
        """Do the rates depend on the stage's budget (UniMax, an epoch cap)?"""
        return strategy(self.strategy).uses_budget or self.max_epochs is not None

    def weight_list(self, tasks: Sequence[str]) -> list[float] | None:
        """Weights in the order of ``tasks`` (missing names weigh 0)."""
        if self.weights is None:
            return None
        if isinstance(self.weights, Mapping):
            return [float(self.weights.get(t, 0.0)) for t in tasks]
        return [float(w) for w in self.weights]

    # ------------------------------------------------------------------ rates
    def rates(self, sizes: Mapping[str, float], budget: float | None = None) -> np.ndarray:
        """Sampling probabilities of the tasks in ``sizes`` (name -> size in ``size_unit``), in that order.

        ``budget`` (what the stage draws, in ``size_unit``) is needed by ``unimax`` and by an epoch cap.
        """
        names = list(sizes)
        params: dict[str, Any] = {}
        for name in strategy(self.strategy).params:
            if name == "weights":
                params[name] = self.weight_list(names)
            elif name != "max_epochs":
                params[name] = getattr(self, name)
        return mixing_rates(self.strategy, [sizes[n] for n in names], max_epochs=self.max_epochs,
                            budget=budget if self.uses_budget else None, **params)

    def stage_rates(self, tasks: Sequence[str], sizes: Mapping[str, float] | Any,
                    budget_examples: float) -> dict[str, float]:
        """The rate of each of ``tasks`` for a stage that draws ``budget_examples`` examples.

        ``sizes``: a :class:`~hf_ptjf.data.sizes.TaskSizes` (any ``size_unit``), or ``{task: examples}``. With sizes in
        tokens or characters, UniMax's budget and an epoch cap are converted to that unit through the tasks' mean size
        per example (:meth:`budget_in_unit`).
        """
        tasks = list(tasks)
        budget = float(budget_examples)
        if not self.uses_sizes or len(tasks) == 1:  # sizes play no part (a streamed task may have none)
            unit_sizes = {t: 1.0 for t in tasks}
        elif hasattr(sizes, "of"):
            unit_sizes = sizes.of(self.size_unit, tasks)
            if self.uses_budget:
                budget = self.budget_in_unit(budget, sizes, tasks)
        else:
            if self.size_unit != "examples":
                raise ValueError(f"size_unit {self.size_unit!r} needs the tasks' sizes in that unit (a TaskSizes).")
            unit_sizes = {t: sizes[t] for t in tasks}
        return {t: float(r) for t, r in zip(tasks, self.rates(unit_sizes, budget))}

    def budget_in_unit(self, budget_examples: float, sizes: Any, tasks: Sequence[str]) -> float:
        """A budget in examples expressed in ``size_unit`` (the tasks' mean ``size_unit`` per example)."""
        return budget_examples * sizes.per_example(self.size_unit, tasks)


MixtureSpec = Mixture  # the name of releases up to 0.1 (recipes' `mixture:` sections, MixtureTrainer docs)
