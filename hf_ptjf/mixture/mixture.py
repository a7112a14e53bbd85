"""`Mixture`: which tasks a stage trains on and how they are mixed, from its YAML section to the sampler's rates.

The one description of a mixture: a recipe's ``mixture:`` section, the ``mixture_*`` fields of
:class:`~hf_ptjf.MixtureTrainingArguments`, ``MixtureTrainer(rates=...)`` (:meth:`Mixture.fixed`), the sweep and
``hf-ptjf-inspect`` all build one, and :meth:`Mixture.stage_rates` is the only place rates are computed (strategies
from :mod:`hf_ptjf.mixture.strategies`, sizes and budgets converted between units here).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..checks import did_you_mean, is_number
from .strategies import STRATEGIES, mixing_rates, strategy

__all__ = ["ONLINE_FIELDS", "SIZE_UNITS", "Mixture", "MixtureSpec", "mixture_record"]

SIZE_UNITS = ("examples", "tokens", "characters")  # what task sizes can be measured in (`Mixture.size_unit`)
ONLINE_FIELDS = ("initial", "update_every", "alpha", "floor")  # an online strategy's fields of a `Mixture`


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
    # An online strategy's (``odm``; None: its defaults, filled in): where its rates start, and its parameters.
    initial: "Mixture | Mapping[str, Any] | None" = None  # the first rates: another (fixed-rate) mixture's; None: uniform
    update_every: int | None = None  # optimizer steps between rate updates
    alpha: float | None = None  # the reward's moving-average weight
    floor: float | None = None  # the least rate of a task

    def __post_init__(self) -> None:
        if self.strategy is None:
            self.strategy = "static" if self.weights is not None else "temperature"
        self._check_online()
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

    def _check_online(self) -> None:
        """An online strategy's parameters at their defaults where not given; refused with any other strategy."""
        chosen = STRATEGIES.get(self.strategy) if self.strategy is not None else None
        if chosen is None or chosen.online is None:
            given = [name for name in ONLINE_FIELDS if getattr(self, name) is not None]
            if given:
                online = sorted(n for n, s in STRATEGIES.items() if s.online is not None)
                raise ValueError(f"{', '.join(f'`{n}`' for n in given)}: used by online strategies only "
                                 f"({', '.join(online)}); set `strategy: {online[0]}` or remove them "
                                 f"(strategy is {self.strategy!r})")
            return
        defaults = {f.name: f.default for f in dataclasses.fields(chosen.online) if f.init}
        for name in chosen.params:
            if getattr(self, name) is None:
                setattr(self, name, defaults[name])
        self.online_strategy()  # its own checks of the parameters, now
        if isinstance(self.initial, Mapping):
            if "tasks" in self.initial:
                raise ValueError("`initial.tasks`: the initial rates are over the stage's tasks; remove `tasks` there")
            self.initial = Mixture(**self.initial)
        if self.initial is not None and (not isinstance(self.initial, Mixture) or self.initial.online):
            got = f"strategy `{self.initial.strategy}`" if isinstance(self.initial, Mixture) else repr(self.initial)
            raise ValueError(f"`initial` must be a fixed-rate mixture (e.g. {{strategy: temperature, tau: 3.33}}), "
                             f"got {got}")

    @property
    def online(self) -> bool:
        """Are the rates decided while training (an online strategy such as ``odm``)?"""
        return strategy(self.strategy).online is not None

    def online_strategy(self) -> Any:
        """A new instance of the online strategy with this mixture's parameters (``None``: fixed rates)."""
        chosen = strategy(self.strategy)
        if chosen.online is None:
            return None
        return chosen.online(**{name: getattr(self, name) for name in chosen.params})

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
        if self.online:
            return self.initial is not None and self.initial.uses_sizes
        return strategy(self.strategy).uses_sizes or self.max_epochs is not None

    @property
    def uses_budget(self) -> bool:
        """Do the rates depend on the stage's budget (UniMax, an epoch cap)?"""
        if self.online:
            return self.initial is not None and self.initial.uses_budget
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

        ``budget`` (what the stage draws, in ``size_unit``) is needed by ``unimax`` and by an epoch cap. An online
        strategy's are its first rates: its ``initial`` mixture's (uniform without one).
        """
        names = list(sizes)
        if self.online:
            if self.initial is None:
                return np.full(len(names), 1.0 / len(names))
            return self.initial.rates(sizes, budget)
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


def mixture_record(record: dict[str, Any]) -> dict[str, Any]:
    """A mixture as a run records it (``dataclasses.asdict`` of a :class:`Mixture`): the online strategy's fields are
    left out where unset, so that the records (and cache keys) of recipes written before online strategies existed
    stay as they were."""
    out = {k: v for k, v in record.items() if not (k in ONLINE_FIELDS and v is None)}
    if isinstance(out.get("initial"), dict):
        out["initial"] = mixture_record(out["initial"])
    return out


MixtureSpec = Mixture  # the name of releases up to 0.1 (recipes' `mixture:` sections, MixtureTrainer docs)
