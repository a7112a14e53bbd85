"""Applicability check: will pre-training joint fine-tuning (PTJF) help this mixture and budget?

``python -m hf_ptjf.inspect RECIPE.yaml`` (or ``hf-ptjf-inspect``) prints, per stage and task: size,
tokens, sampling rate, expected examples and epochs under the plan (:func:`hf_ptjf.mixing.plan`),
flags tasks repeated more than ``--max-epochs-warn`` times, and ends with a one-line verdict.

Definitions (the paper's argument in numbers):

* budget: examples drawn = ``max_steps x per_device_train_batch_size x gradient_accumulation_steps x
  num_processes``, per stage; the recipe budget is the sum over stages.
* high-resource (HR): a task with at least ``hr_min_size`` training examples. By default
  ``hr_min_size = ceil(budget / max_epochs_warn)``: a task that could take the *whole* budget alone
  and still be repeated at most ``max_epochs_warn`` times. Other tasks are low-resource (LR):
  sampling them at a useful rate over a long run repeats them many times, i.e. overfitting risk.
* verdict: PTJF is expected to help when there is at least one HR task (to pre-train on) and at
  least one LR task (that would overfit if trained jointly from the start). With only HR tasks the
  paper shows no gain (its HR+HR control); with no HR task there is nothing to pre-train on.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .mixing import mixing_rates, plan

__all__ = [
    "Report",
    "ReportRow",
    "RecipeReport",
    "applicability_report",
    "recipe_report",
    "format_report",
    "main",
]


@dataclass(frozen=True)
class ReportRow:
    """One task under one plan."""

    name: str
    size: int
    tokens: int
    rate: float
    expected_examples: float
    expected_epochs: float
    high_resource: bool
    overfit_risk: bool


@dataclass
class Report:
    """One mixture under one budget, with its verdict."""

    rows: list[ReportRow]
    budget: float
    max_epochs_warn: float
    hr_min_size: int
    verdict: str
    ptjf_expected_to_help: bool
    stage: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def high_resource(self) -> list[str]:
        return [r.name for r in self.rows if r.high_resource]

    @property
    def low_resource(self) -> list[str]:
        return [r.name for r in self.rows if not r.high_resource]

    @property
    def overfit_risk(self) -> list[str]:
        return [r.name for r in self.rows if r.overfit_risk]


@dataclass
class RecipeReport:
    """Every stage of a recipe, plus the verdict for the whole recipe."""

    stages: list[Report]
    budget: float
    hr_min_size: int
    high_resource: list[str]
    low_resource: list[str]
    verdict: str
    ptjf_expected_to_help: bool
    notes: list[str] = field(default_factory=list)


def _hr_threshold(budget: float, max_epochs_warn: float, hr_min_size: int | None) -> int:
    if not max_epochs_warn > 0:
        raise ValueError(f"`max_epochs_warn` must be > 0, got {max_epochs_warn!r}.")
    if hr_min_size is not None:
        if hr_min_size <= 0:
            raise ValueError(f"`hr_min_size` must be a positive number of examples, got {hr_min_size!r}.")
        return int(hr_min_size)
    return int(math.ceil(budget / max_epochs_warn))


def _verdict(hr: list[str], lr: list[str], max_epochs_warn: float, hr_min_size: int) -> tuple[bool, str]:
    if hr and lr:
        return True, (
            f"PTJF is expected to help: pre-train on the high-resource task(s) {', '.join(hr)}, then fine-tune "
            f"jointly with the low-resource task(s) {', '.join(lr)}."
        )
    if hr:
        return False, (
            "PTJF is not expected to help: all tasks are high-resource for this budget (>= "
            f"{hr_min_size:,} examples each); the paper shows no gain there. Train jointly from the start."
        )
    return False, (
        f"PTJF is not expected to help: no high-resource task to pre-train on (none has >= {hr_min_size:,} examples, "
        f"every task would be repeated > {max_epochs_warn:g} epochs if it got the whole budget)."
    )


def applicability_report(
    names: Sequence[str],
    sizes: Sequence[int],
    tokens: Sequence[int],
    rates: Sequence[float],
    budget: float,
    *,
    max_epochs_warn: float = 10.0,
    hr_min_size: int | None = None,
    stage: str | None = None,
) -> Report:
    """Plan ``budget`` examples over tasks sampled at ``rates`` and judge whether PTJF applies.

    A task is flagged (``overfit_risk``) when its expected epochs exceed ``max_epochs_warn``; it is
    high-resource when ``size >= hr_min_size`` (default ``ceil(budget / max_epochs_warn)``).
    """
    n = len(names)
    for what, seq in (("sizes", sizes), ("tokens", tokens), ("rates", rates)):
        if len(seq) != n:
            raise ValueError(f"`{what}` has {len(seq)} entries but there are {n} task names; give one per task.")
    threshold = _hr_threshold(budget, max_epochs_warn, hr_min_size)
    plans = plan(sizes, rates, budget, names)
    rows = [
        ReportRow(
            name=p.name,
            size=p.size,
            tokens=int(t),
            rate=p.rate,
            expected_examples=p.expected_examples,
            expected_epochs=p.expected_epochs,
            high_resource=p.size >= threshold,
            overfit_risk=p.expected_epochs > max_epochs_warn,
        )
        for p, t in zip(plans, tokens)
    ]
    hr = [r.name for r in rows if r.high_resource]
    lr = [r.name for r in rows if not r.high_resource]
    helps, verdict = _verdict(hr, lr, max_epochs_warn, threshold)
    notes = [
        f"{r.name} is planned for {r.expected_epochs:.1f} epochs (> {max_epochs_warn:g}): overfitting risk."
        for r in rows
        if r.overfit_risk
    ]
    return Report(rows, float(budget), float(max_epochs_warn), threshold, verdict, helps, stage, notes)


# ------------------------------------------------------------------------------------ recipes

_MIXTURE_KEYS = ("tasks", "strategy", "tau", "weights", "max_epochs")
_STRATEGY_PARAMS = {"temperature": ("tau",), "static": ("weights",)}


def _stage_budget(stage: Mapping[str, Any], recipe: Mapping[str, Any], num_processes: int) -> int:
    name = stage.get("name", "?")

    overrides = stage.get("training") or {}  # the runner's per-stage TrainingArguments overrides

    def get(key: str, default: Any = None) -> Any:
        return overrides.get(key, stage.get(key, recipe.get(key, default)))

    steps = get("max_steps")
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(
            f"stage {name!r}: `max_steps` must be a positive integer (the budget is counted in steps), got {steps!r}."
        )
    bs = get("per_device_train_batch_size", 8)
    ga = get("gradient_accumulation_steps", 1)
    for key, v in (("per_device_train_batch_size", bs), ("gradient_accumulation_steps", ga)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"stage {name!r}: `{key}` must be a positive integer, got {v!r}.")
    if not isinstance(num_processes, int) or num_processes <= 0:
        raise ValueError(f"`num_processes` must be a positive integer, got {num_processes!r}.")
    return steps * bs * ga * num_processes


def _stage_rates(stage: Mapping[str, Any], tasks: list[str], sizes: list[int], budget: int) -> np.ndarray:
    name = stage.get("name", "?")
    mixture = stage.get("mixture") or {}
    unknown = [k for k in mixture if k not in _MIXTURE_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), _MIXTURE_KEYS, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise ValueError(
            f"stage {name!r}: unknown mixture key `{unknown[0]}`.{hint} Allowed: {', '.join(_MIXTURE_KEYS)}."
        )
    strategy = mixture.get("strategy", "static" if "weights" in mixture else "proportional")
    max_epochs = mixture.get("max_epochs")
    params = {k: mixture[k] for k in ("tau", "weights") if k in mixture and k in _STRATEGY_PARAMS.get(strategy, ())}
    if strategy == "temperature":
        params.setdefault("tau", 1.0)  # the recipe runner's default (= proportional)
    if isinstance(params.get("weights"), Mapping):  # by task name, as the recipe runner accepts; missing -> 0
        params["weights"] = [float(params["weights"].get(t, 0.0)) for t in tasks]
    try:
        if strategy == "unimax":
            return mixing_rates("unimax", sizes, budget=budget, max_epochs=max_epochs)
        return mixing_rates(
            strategy, sizes, max_epochs=max_epochs, budget=budget if max_epochs is not None else None, **params
        )
    except ValueError as e:
        raise ValueError(f"stage {name!r}: {e}") from None


def recipe_report(
    recipe: Mapping[str, Any],
    sizes: Mapping[str, int],
    tokens: Mapping[str, int],
    *,
    num_processes: int = 1,
    max_epochs_warn: float = 10.0,
    hr_min_size: int | None = None,
) -> RecipeReport:
    """Report every stage of ``recipe`` (a dict with ``stages``) given each task's train size and tokens.

    High-resource is judged against the whole recipe's budget, the same way in every stage.
    """
    stages = recipe.get("stages")
    if not stages and recipe.get("method"):
        from .recipe import expand_method  # the runner's shorthand (ptjf, scalarization, ...)

        stages = expand_method(recipe["method"], recipe.get("method_args") or {}, list(sizes))
    if not stages or not isinstance(stages, list):
        raise ValueError("the recipe needs `stages`: a list of {name, mixture: {tasks: [...]}, max_steps}.")
    budgets = [_stage_budget(st, recipe, num_processes) for st in stages]
    total = sum(budgets)
    threshold = _hr_threshold(total, max_epochs_warn, hr_min_size)
    reports: list[Report] = []
    used: list[str] = []
    for st, budget in zip(stages, budgets):
        name = st.get("name", f"stage{len(reports)}")
        tasks = list((st.get("mixture") or {}).get("tasks") or sizes)  # no list: every task of the recipe
        missing = [t for t in tasks if t not in sizes]
        if missing:
            close = difflib.get_close_matches(str(missing[0]), list(sizes), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"stage {name!r}: task {missing[0]!r} is not defined under `tasks`.{hint}")
        sz = [int(sizes[t]) for t in tasks]
        rates = _stage_rates(st, tasks, sz, budget)
        rep = applicability_report(
            tasks,
            sz,
            [int(tokens.get(t, 0)) for t in tasks],
            rates,
            budget,
            max_epochs_warn=max_epochs_warn,
            hr_min_size=threshold,
            stage=name,
        )
        reports.append(rep)
        used.extend(t for t in tasks if t not in used)
    hr = [t for t in used if sizes[t] >= threshold]
    lr = [t for t in used if sizes[t] < threshold]
    helps, verdict = _verdict(hr, lr, max_epochs_warn, threshold)
    notes = [f"[{r.stage}] {n}" for r in reports for n in r.notes]
    if helps:
        first = reports[0]
        if len(reports) == 1:
            notes.append(
                "single-stage recipe: that is joint training from scratch; add a pre-training stage on the HR tasks."
            )
        elif first.low_resource:
            notes.append(
                f"first stage {first.stage!r} already samples low-resource task(s) {first.low_resource}: "
                "PTJF pre-trains on HR tasks only."
            )
    return RecipeReport(reports, float(total), threshold, hr, lr, verdict, helps, notes)


def format_report(report: Report | RecipeReport) -> str:
    """Human-readable table(s), notes and the verdict line."""
    if isinstance(report, RecipeReport):
        summary = [
            f"recipe budget {report.budget:,.0f} examples; high-resource = >= {report.hr_min_size:,} training examples",
            f"HR: {', '.join(report.high_resource) or '-'}   LR: {', '.join(report.low_resource) or '-'}",
            *(f"note: {n}" for n in report.notes),
            f"Verdict: {report.verdict}",
        ]
        return "\n\n".join([*(_format_table(r) for r in report.stages), "\n".join(summary)])
    lines = [_format_table(report)]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(f"Verdict: {report.verdict}")
    return "\n".join(lines)


def _format_table(r: Report) -> str:
    head = f"stage {r.stage}: " if r.stage else ""
    header = f"{head}budget {r.budget:,.0f} examples (warn above {r.max_epochs_warn:g} epochs)"
    cols = ("task", "size", "tokens", "rate", "examples", "epochs", "class", "flag")
    rows = [
        (
            x.name,
            f"{x.size:,}",
            f"{x.tokens:,}",
            f"{x.rate:.3f}",
            f"{x.expected_examples:,.0f}",
            f"{x.expected_epochs:.2f}",
            "HR" if x.high_resource else "LR",
            "OVERFIT?" if x.overfit_risk else "",
        )
        for x in r.rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]

    def fmt(row: tuple[str, ...]) -> str:  # names and labels left-aligned, numbers right-aligned
        cells = (v.ljust(w) if i in (0, 6, 7) else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
        return "  ".join(cells).rstrip()

    return "\n".join([header, fmt(cols), *(fmt(row) for row in rows)])


# ------------------------------------------------------------------------------------------ CLI


def _count_tokens(dsd: Any, tokenizer: Any | None) -> int:
    from .data.columns import column_arrow, column_list

    train = dsd["train"]
    cols = [c for c in ("source", "target", "text") if c in train.column_names]
    total = 0
    for c in cols:
        if tokenizer is None:
            import pyarrow.compute as pc

            words = pc.list_value_length(pc.utf8_split_whitespace(column_arrow(train, c)))
            total += int(pc.sum(words).as_py() or 0)
        else:
            total += sum(len(x) for x in tokenizer(column_list(train, c), add_special_tokens=False)["input_ids"])
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``hf-ptjf-inspect RECIPE.yaml [--num-processes N] ...``."""
    p = argparse.ArgumentParser(
        prog="hf-ptjf-inspect", description="Will PTJF help this recipe? Per-stage plan and verdict."
    )
    p.add_argument("config", help="recipe YAML with `tasks`, `stages` and batch settings")
    p.add_argument("--num-processes", type=int, default=1, help="data-parallel processes (default 1)")
    p.add_argument(
        "--max-epochs-warn", type=float, default=10.0, help="flag tasks planned for more epochs (default 10)"
    )
    p.add_argument(
        "--hr-min-size", type=int, default=None, help="training examples a task needs to count as high-resource"
    )
    p.add_argument(
        "--tokenizer", default=None, help="count subword tokens with this tokenizer (default: whitespace words)"
    )
    p.add_argument(
        "--cache-dir", default=None, help="data cache (default $HF_PTJF_CACHE/bible or ~/.cache/hf_ptjf/bible)"
    )
    p.add_argument("--num-dev", type=int, default=500)
    p.add_argument("--num-test", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import yaml

    from .data import TaskSpec, load_tasks

    try:
        with open(args.config, encoding="utf-8") as f:
            recipe = yaml.safe_load(f) or {}
        if not isinstance(recipe, dict) or not isinstance(recipe.get("tasks"), list):
            raise ValueError(f"{args.config}: the recipe needs a `tasks` list of task specs.")
        specs = [TaskSpec.from_dict(t) for t in recipe["tasks"]]
        corpora = load_tasks(
            specs, cache_dir=args.cache_dir, num_dev=args.num_dev, num_test=args.num_test, seed=args.seed
        )
        tokenizer = None
        if args.tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        sizes = {n: len(d["train"]) for n, d in corpora.items()}
        tokens = {n: _count_tokens(d, tokenizer) for n, d in corpora.items()}
        report = recipe_report(
            recipe,
            sizes,
            tokens,
            num_processes=args.num_processes,
            max_epochs_warn=args.max_epochs_warn,
            hr_min_size=args.hr_min_size,
        )
    except (ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
