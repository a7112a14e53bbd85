"""A sweep's YAML: :class:`SweepConfig` (the grid over a base recipe) and :func:`load_sweep`.

Sweep YAML::

    recipe: recipes/configs/repro_base_cpu.yaml  # tasks, model, data, eval, training args (method set here)
    output_dir: runs/sweep-fr-ro
    hr_task: en-fr
    lr_task: en-ro
    methods: [scalarization, ptjf, restart, transfer]   # or variants, e.g. (see MethodVariant):
      # - {name: ptjf-odm, method: ptjf, mixture: {strategy: odm}}           # its own joint mixture: no rate axis
      # - {name: ptjf-keep, method: ptjf, method_args: {reset: {optimizer: keep, lr_schedule: continue}}}
      # - {name: scalarization, rates: [0.1]}                                 # this method at these rates only
    rates: [0.1, 0.2, 0.3, 0.5]     # low-resource sampling rate; the high-resource task gets 1 - rate
    lrs: null                       # null: the recipe's learning_rate; else a grid
    seeds: [0, 1]
    total_steps: 1000               # N, equal for every trial ...
    first_stage_steps: 750          # N1 (ptjf / restart / transfer); a list sweeps pre-training length
    finetune_steps: null            # ... unless set: then N = N1 + finetune_steps (fixed fine-tuning)
    share_pretrain: true            # ptjf/transfer trials with the same seed/lr/N1 share one pre-training run
    shared_tokenizer: true          # train one tokenizer for the whole sweep
    parallel: 2                     # trials at a time
    threads: 1                      # torch/OMP threads per trial
    overrides: [eval.bleu=false]    # key=value applied to every trial's recipe
    keep_other_tasks: false         # drop the recipe's tasks other than hr_task / lr_task
    report_dir: null                # tables + report elsewhere (sweeps sharing one output_dir)
    launcher: null                  # e.g. [accelerate, launch, --config_file, X]; default: this python
    devices: null                   # CUDA_VISIBLE_DEVICES per running trial, e.g. ["0", "1"]
    launch_until: null              # "HH:MM" UTC: start no trial after this (a time budget)
    size_unit: examples             # the trials' mixture size_unit, and what the summary counts
    front_metric: loss              # fronts also drawn on: chrf | off_target | bleu (loss: the loss fronts only)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..analysis.pareto import FRONT_METRICS
from ..checks import did_you_mean, is_integer, is_number
from ..mixture import SIZE_UNITS, STRATEGIES
from ..recipe import METHODS, RecipeError, apply_overrides, read_yaml

__all__ = ["MethodVariant", "SweepConfig", "load_sweep"]

_VARIANT_KEYS = ("name", "method", "rates", "mixture", "method_args")


@dataclass(frozen=True)
class MethodVariant:
    """One entry of a sweep's ``methods``: a method of the paper under a name of its own.

    ``method`` is the method it expands with (default: ``name``); ``rates`` the low-resource rates it runs at
    (default: the sweep's ``rates``); ``mixture`` the joint mixture instead of the sweep's static rate mixture
    (e.g. ``{strategy: odm}``; such a variant has no rate axis); ``method_args`` keys added to the method's
    ``method_args`` (e.g. ``reset``). A plain method name is the variant of that name with no options: its trials
    keep the ids and recipes they always had. An online strategy's name is a method too: ``odm`` is one stage mixed
    online (from uniform rates), ``ptjf-odm`` PTJF whose joint phase mixes online.
    """

    name: str
    method: str
    rates: tuple[float, ...] | None = None
    mixture: dict | None = None
    method_args: dict | None = None

    @property
    def has_rates(self) -> bool:
        """Whether its trials run over low-resource rates (transfer and own-mixture variants do not)."""
        return self.method != "transfer" and self.mixture is None

    @property
    def shares_pretrain(self) -> bool:
        """Whether it may fine-tune from the sweep's shared pre-training run: not when its reset carries state
        (optimizer, schedule) out of the first stage, which a run from a saved model does not have."""
        return self.method in ("ptjf", "transfer") and not (self.method_args or {}).get("reset")


def method_variant(entry: object, index: int) -> MethodVariant:
    """A sweep ``methods`` entry (a method name, or a mapping) as a checked :class:`MethodVariant`."""
    where = f"sweep `methods[{index}]`"
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise RecipeError(f"{where} must be a method name or a mapping with a `name`, e.g. "
                          f"{{name: ptjf-odm, method: ptjf, mixture: {{strategy: odm}}}}; got {entry!r}.")
    for key in entry:
        if key not in _VARIANT_KEYS:
            raise RecipeError(f"unknown key `{key}` in {where}.{did_you_mean(key, list(_VARIANT_KEYS))}")
    entry = {**_online_shorthand(entry["name"]), **entry}
    method = entry.get("method", entry["name"])
    if method not in METHODS:
        raise RecipeError(f"{where}: `method: {method}` is not a method.{did_you_mean(str(method), list(METHODS))} "
                          f"Choose one of {METHODS} (a variant names its base method with `method:`).")
    rates = entry.get("rates")
    if rates is not None and not (isinstance(rates, list) and rates and all(
            is_number(r, 0.0, 1.0, open_low=True) for r in rates)):
        raise RecipeError(f"{where}: `rates` are low-resource sampling rates in (0, 1), got {rates!r}.")
    for key in ("mixture", "method_args"):
        if entry.get(key) is not None and not isinstance(entry[key], dict):
            raise RecipeError(f"{where}: `{key}` must be a mapping, got {entry[key]!r}.")
    return MethodVariant(entry["name"], method, None if rates is None else tuple(float(r) for r in rates),
                         entry.get("mixture"), entry.get("method_args"))


def _online_shorthand(name: str) -> dict:
    """A name that is an online strategy (``odm``: one stage mixed online, the scalarization baseline's shape) or a
    method and one (``ptjf-odm``: PTJF whose joint phase mixes online), as the variant it stands for; else nothing."""
    method, _, online = name.rpartition("-") if "-" in name else ("scalarization", "", name)
    if method in METHODS and online in STRATEGIES and STRATEGIES[online].online is not None:
        return {"method": method, "mixture": {"strategy": online}}
    return {}


@dataclass
class SweepConfig:
    """A grid of trials over a base recipe (see the module docstring for the YAML)."""

    recipe: str
    output_dir: str
    hr_task: str
    lr_task: str
    methods: list[str | dict] = field(default_factory=lambda: ["scalarization", "ptjf"])  # names or variants
    rates: list[float] = field(default_factory=lambda: [round(i / 10, 1) for i in range(1, 10)])
    lrs: list[float] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    total_steps: int | None = None
    first_stage_steps: int | list[int] | None = None
    finetune_steps: int | None = None
    share_pretrain: bool = True
    shared_tokenizer: bool = True
    parallel: int = 1
    threads: int = 1
    launcher: list[str] | None = None  # e.g. [accelerate, launch, --config_file, X]; default: this python
    devices: list[str] | None = None  # CUDA_VISIBLE_DEVICES per running trial, e.g. ["0", "1"] or ["0,1", "2,3"]
    launch_until: str | None = None  # "HH:MM" (UTC): start no trial after this time (a time budget)
    overrides: list[str] = field(default_factory=list)
    keep_other_tasks: bool = False  # False: drop recipe tasks other than hr_task / lr_task
    report_dir: str | None = None  # tables + report (default: output_dir); lets sweeps share trials
    size_unit: str = "examples"  # the trials' mixture size_unit, and what the efficiency figure and summary count
    front_metric: str = "loss"  # what summary.md's fronts are drawn on besides the loss (hf_ptjf.analysis.pareto)

    def __post_init__(self) -> None:
        self._check_grid()
        self._check_counts()
        self._check_steps()
        self.rates = [float(r) for r in self.rates]

    def _check_grid(self) -> None:
        if not isinstance(self.methods, list) or not self.methods:
            raise RecipeError(f"sweep `methods` must be a non-empty list of {METHODS} (or variants), got {self.methods}.")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise RecipeError(f"sweep `methods` names a method twice: {names}; give each variant a `name` of its own.")
        if not isinstance(self.rates, list) or not self.rates or not all(
                is_number(r, 0.0, 1.0, open_low=True) for r in self.rates):
            raise RecipeError(f"sweep `rates` are low-resource sampling rates in (0, 1), got {self.rates}.")
        if self.hr_task == self.lr_task:
            raise RecipeError("`hr_task` and `lr_task` must differ.")
        if not isinstance(self.seeds, list) or not self.seeds or not all(is_integer(x) for x in self.seeds):
            raise RecipeError(f"sweep `seeds` must be a non-empty list of integers, e.g. seeds=[0,1]; got {self.seeds!r}.")
        if self.size_unit not in SIZE_UNITS:
            raise RecipeError(f"sweep `size_unit` must be one of {SIZE_UNITS}, got {self.size_unit!r}.")
        if self.front_metric not in FRONT_METRICS:
            raise RecipeError(f"sweep `front_metric` must be one of {sorted(FRONT_METRICS)}, got {self.front_metric!r}."
                              f"{did_you_mean(str(self.front_metric), list(FRONT_METRICS))}")

    def _check_counts(self) -> None:  # counts are integers >= 1, never booleans (hf_ptjf.checks.is_integer)
        for name in ("parallel", "threads"):
            if not is_integer(getattr(self, name), 1):
                raise RecipeError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}.")
        if self.devices is not None:
            self.devices = [str(d) for d in self.devices]
            if len(self.devices) < self.parallel:
                raise RecipeError(f"`devices` lists {len(self.devices)} device sets for `parallel: {self.parallel}`.")

    def _check_steps(self) -> None:
        n1 = self.first_stage_steps
        if n1 is not None and not all(is_integer(n, 1) for n in (n1 if isinstance(n1, list) else [n1])):
            raise RecipeError(f"`first_stage_steps` (N1) must be a positive integer or a list of them, got {n1!r}.")
        n1s = self.n1_values
        staged = [v.name for v in self.variants if v.method != "scalarization"]
        if staged and not n1s:
            raise RecipeError(f"methods {staged} need `first_stage_steps` (N1).")
        if self.finetune_steps is None:
            if self.total_steps is None:
                raise RecipeError("`total_steps` (N, a positive integer) is required unless `finetune_steps` is set.")
            if not is_integer(self.total_steps, 1):
                raise RecipeError(f"`total_steps` (N) must be a positive integer, got {self.total_steps!r}.")
            if any(not (0 < n < self.total_steps) for n in n1s):
                raise RecipeError(f"need 0 < first_stage_steps < total_steps, got {n1s} and {self.total_steps}.")
        else:
            if not is_integer(self.finetune_steps, 1):
                raise RecipeError(f"`finetune_steps` must be a positive integer, got {self.finetune_steps!r}.")
            if "scalarization" in self.base_methods and len(n1s) > 1 and self.total_steps is None:
                raise RecipeError("with several `first_stage_steps` and `finetune_steps`, give `total_steps` for scalarization.")

    @property
    def variants(self) -> list[MethodVariant]:
        """The ``methods`` entries as :class:`MethodVariant` s, in order."""
        return [method_variant(entry, i) for i, entry in enumerate(self.methods)]

    @property
    def base_methods(self) -> set[str]:
        """The paper's methods the variants expand with."""
        return {v.method for v in self.variants}

    @property
    def n1_values(self) -> list[int]:
        """The pre-training lengths N1 swept (empty without ``first_stage_steps``)."""
        n1 = self.first_stage_steps
        if n1 is None:
            return []
        return [int(x) for x in (n1 if isinstance(n1, (list, tuple)) else [n1])]

    def total_for(self, n1: int | None) -> int:
        """N of a trial: fixed, or N1 + finetune_steps (fixed fine-tuning length)."""
        if self.finetune_steps is not None and n1 is not None:
            return n1 + self.finetune_steps
        if self.total_steps is not None:
            return self.total_steps
        return max(self.n1_values) + self.finetune_steps  # scalarization with fixed fine-tuning and one N1

    @property
    def out(self) -> Path:
        """Where the trials (and the shared tokenizer) go."""
        return Path(self.output_dir)

    @property
    def report_out(self) -> Path:
        """Where the tables and reports go (``report_dir``, else ``output_dir``)."""
        return Path(self.report_dir) if self.report_dir else self.out


def load_sweep(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SweepConfig:
    """Read a sweep YAML and apply ``key=value`` overrides (e.g. ``parallel=2``, ``rates=[0.1,0.5]``)."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path, "sweep config"), list(overrides))
    names = [f.name for f in dataclasses.fields(SweepConfig)]
    for key in raw:
        if key not in names:
            raise RecipeError(f"unknown sweep key `{key}`.{did_you_mean(key, names)}")
    if "recipe" in raw and not Path(raw["recipe"]).is_file() and (path.parent / raw["recipe"]).is_file():
        raw["recipe"] = str(path.parent / raw["recipe"])  # relative to the sweep file
    try:
        return SweepConfig(**raw)
    except TypeError as e:
        raise RecipeError(f"sweep config: {e}") from e
