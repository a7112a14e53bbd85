"""A sweep's grid as trials: one resolved recipe per (method, rate, lr, seed, N1), shared pre-training runs first.

Trial ids: ``scalarization-r<rate>-s<seed>``, ``<method>-n<N1>-r<rate>-s<seed>`` (ptjf, restart),
``transfer-n<N1>-s<seed>`` (one per seed: the low-resource task alone, no rate), with ``-lr<lr>`` when
``lrs`` is a grid; a named variant (:class:`~hf_ptjf.sweep.config.MethodVariant`) puts its name in place of the
method's, without ``-r<rate>`` when it has its own mixture.

With ``share_pretrain`` the pre-training stage (``N1`` steps on the high-resource task(s)) is its own run,
``pretrain-n<N1>-lr<lr>-s<seed>``; every PTJF rate (and the transfer trial) fine-tunes from its saved
model (a stage ``init: {path: ...}``, fresh optimizer and LR schedule), so each extra PTJF point costs only
``N - N1`` steps.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..recipe import RecipeError, expand_method, parse_recipe, read_recipe
from .config import MethodVariant, SweepConfig

__all__ = ["PRETRAIN", "Trial", "expand_trials", "read_results"]

PRETRAIN = "pretrain"  # the method of a shared pre-training run, and the name expand_method gives its stage
# method_args of the base recipe that reach every trial (the sweep sets steps, tasks and the mixture itself)
_KEPT_METHOD_ARGS = ("stage", "first_stage", "second_stage", "pretrain_mixture")
_SHARED_METHODS = ("ptjf", "transfer")  # the methods whose first stage is the same pre-training run


@dataclass
class Trial:
    """One run of the grid: a resolved recipe (dict), where it goes, and what it depends on."""

    trial: str
    method: str  # "pretrain" for a shared pre-training run
    rate: float | None
    lr: float | None
    seed: int
    first_stage_steps: int | None
    total_steps: int
    output_dir: str
    recipe: dict[str, Any]
    depends_on: str | None = None  # trial id of the shared pre-training run
    label: str = ""  # method name in plots/tables (e.g. "ptjf@N1=500" when N1 is swept)

    @property
    def out(self) -> Path:
        """The trial's output_dir."""
        return Path(self.output_dir)

    def is_complete(self) -> bool:
        """Whether its ``results.json`` says the run finished."""
        return read_results(self.out).get("complete") is True


def read_results(out: Path) -> dict[str, Any]:
    """A run's ``results.json`` (``{}`` while there is none, or none readable yet)."""
    try:
        return json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def _fmt(x: float | None) -> str:
    return "default" if x is None else f"{x:g}"


class _TrialMaker:
    """The base recipe (read once) and how each trial's recipe is made from it."""

    def __init__(self, cfg: SweepConfig) -> None:
        base = read_recipe(cfg.recipe, list(cfg.overrides))
        self.base_args = dict(base.pop("method_args", None) or {})
        for key in ("method", "stages", "output_dir", "run_name", "seed"):
            base.pop(key, None)
        names = [t.get("name") for t in base.get("tasks") or []]
        for task in (cfg.hr_task, cfg.lr_task):
            if task not in names:
                raise RecipeError(f"sweep task `{task}` is not a task of the recipe {cfg.recipe} (tasks: {names}).")
        if not cfg.keep_other_tasks:
            base["tasks"] = [t for t in base["tasks"] if t.get("name") in (cfg.hr_task, cfg.lr_task)]
            names = [t["name"] for t in base["tasks"]]
        if cfg.shared_tokenizer:
            base["tokenizer"] = {**(base.get("tokenizer") or {}), "path": str(cfg.out / "tokenizer")}
        self.cfg, self.base, self.names = cfg, base, names

    def method_args(self, method: str, rate: float | None, n1: int | None, total: int,
                    variant: MethodVariant | None = None) -> dict[str, Any]:
        """The trial's ``method_args``: the base recipe's per-stage keys, plus N, N1, the HR task and the mixture
        (the static rate mixture, or the variant's own), and the variant's ``method_args``."""
        cfg = self.cfg
        rate = 0.5 if rate is None else rate  # transfer: the static mixture is filtered to the LR task (rate 1)
        args = {key: value for key, value in self.base_args.items() if key in _KEPT_METHOD_ARGS}
        mixture = {"strategy": "static", "weights": {cfg.hr_task: round(1.0 - rate, 6), cfg.lr_task: rate}}
        if variant is not None and variant.mixture is not None:
            mixture = copy.deepcopy(variant.mixture)
        args.update(total_steps=total, mixture=mixture)
        if cfg.size_unit != "examples":  # (absent by default: earlier sweeps' trials keep their recipes)
            args["mixture"].setdefault("size_unit", cfg.size_unit)
        if method != "scalarization":
            args["first_stage_steps"] = n1
        if method in _SHARED_METHODS:
            args["high_resource"] = [cfg.hr_task]
        args.update(copy.deepcopy((variant.method_args if variant else None) or {}))
        return args

    def stages(self, method: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The method's stages, as the recipe's own method expansion writes them."""
        return expand_method(method, args, self.names)

    def make(self, trial_id: str, method: str, rate: float | None, lr: float | None, seed: int, n1: int | None,
             total: int, plan: dict[str, Any], depends: str | None = None, label: str = "") -> Trial:
        """A validated trial; ``plan`` is ``{"method", "method_args"}`` (a whole method) or ``{"stages"}`` (part of a
        split method)."""
        raw = copy.deepcopy(self.base)
        out = self.cfg.out / "trials" / trial_id
        raw.update(output_dir=str(out), run_name=trial_id, seed=seed, **plan)
        if lr is not None:
            raw["learning_rate"] = lr
        parse_recipe(copy.deepcopy(raw))  # validate now: a bad grid fails before anything runs
        return Trial(trial_id, method, rate, lr, seed, n1, total, str(out), raw, depends, label or method)


def _pretraining(maker: _TrialMaker, seed: int, lr: float | None, n1: int | None, lr_tag: str) -> Trial | None:
    """The shared pre-training run of this seed / lr / N1 (the first stage of ptjf, the same as transfer's), if any."""
    cfg = maker.cfg
    if not (cfg.share_pretrain and n1 is not None and any(v.shares_pretrain for v in cfg.variants)):
        return None
    first = maker.stages("ptjf", maker.method_args("ptjf", None, n1, cfg.total_for(n1)))[0]
    return maker.make(f"{PRETRAIN}-n{n1}{lr_tag}-s{seed}", PRETRAIN, None, lr, seed, n1, n1, {"stages": [first]},
                      label=PRETRAIN)


def _method_trials(maker: _TrialMaker, seed: int, lr: float | None, n1: int | None, lr_tag: str,
                   pre: Trial | None) -> list[Trial]:
    """Every method's trials at this seed / lr / N1; ptjf and transfer start from ``pre`` when it is shared."""
    cfg = maker.cfg
    first_n1 = (cfg.n1_values or [None])[0]
    pre_model = str(cfg.out / "trials" / (pre.trial if pre else "None") / "stages" / f"0-{PRETRAIN}" / "final")
    trials = []
    for variant in cfg.variants:
        method = variant.method
        if method == "scalarization" and n1 != first_n1:
            continue  # one scalarization grid, whatever N1
        staged_n1 = None if method == "scalarization" else n1
        label = f"{variant.name}@N1={n1}" if len(cfg.n1_values) > 1 and staged_n1 is not None else variant.name
        total = cfg.total_for(staged_n1)
        for rate in (list(variant.rates or cfg.rates) if variant.has_rates else [None]):
            tid = (f"{variant.name}{'' if staged_n1 is None else f'-n{n1}'}{'' if rate is None else f'-r{rate:g}'}"
                   f"{lr_tag}-s{seed}")
            args = maker.method_args(method, rate, n1, total, variant)
            plan: dict[str, Any] = {"method": method, "method_args": args}
            split = pre is not None and variant.shares_pretrain
            if split:  # the stage after the reset, initialised from the shared pre-training run
                plan = {"stages": [{**maker.stages(method, args)[1], "init": {"path": pre_model}}]}
            trials.append(maker.make(tid, method, rate, lr, seed, staged_n1, total, plan,
                                     pre.trial if split else None, label))
    return trials


def expand_trials(cfg: SweepConfig) -> list[Trial]:
    """Every trial of the grid as a resolved recipe dict, shared pre-training runs first.

    The base recipe is read like any recipe (:func:`hf_ptjf.recipe.read_recipe`) and every trial's stages come from
    the recipe's own method expansion (:func:`hf_ptjf.recipe.expand_method`) with the base's ``method_args``
    (per-stage optimizer, schedule and training keys) kept; the sweep sets only N, N1, the high-resource task
    and the mixture. With ``share_pretrain`` the expansion is split where the method resets: its first stage
    runs once per seed, and each trial is its second stage initialised from that run's output (a ``path``).
    Trials are validated with :func:`hf_ptjf.recipe.parse_recipe`, so a bad grid fails before anything runs.
    """
    maker = _TrialMaker(cfg)
    pretrains: list[Trial] = []
    trials: list[Trial] = []
    for seed in cfg.seeds:
        for lr in list(cfg.lrs) if cfg.lrs else [None]:
            lr_tag = f"-lr{_fmt(lr)}" if cfg.lrs else ""
            for n1 in cfg.n1_values or [None]:
                pre = _pretraining(maker, seed, lr, n1, lr_tag)
                pretrains += [pre] if pre is not None else []
                trials += _method_trials(maker, seed, lr, n1, lr_tag, pre)
    return pretrains + trials
