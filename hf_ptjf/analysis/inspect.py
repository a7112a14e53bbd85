"""Applicability check: is pre-training joint fine-tuning (PTJF) expected to help this mixture and budget?

``hf-ptjf inspect RECIPE.yaml [key=value ...]`` (or ``hf-ptjf-inspect``, ``python -m hf_ptjf.analysis.inspect``; the
command line is :mod:`hf_ptjf.cli.inspect`) reads the recipe
like the runner does (:func:`hf_ptjf.recipe.load_recipe`: same defaults, same method expansion), loads its
tasks with its ``data`` section, and prints per stage and task the size, tokens, rate (computed by
:meth:`hf_ptjf.recipe.RecipeConfig.stage_rates`, as in the run), expected examples and passes, then the
numbers that decide the verdict and the verdict.

The numbers (the paper's argument, calibrated on the project's own sweeps; docs/inspect-calibration.md):

* ``B``: examples the whole recipe draws (every stage's max_steps x batch x gradient accumulation x processes);
* ``T`` (``--overfit-passes``, default 20): passes over a task's training set beyond which static sampling
  overfits it. The project's sweeps found that the static rate that escapes overfitting gives ~21 passes;
* high-resource (HR): a task that could take all of ``B`` and stay under ``T`` passes (``D >= B / T``);
* for each low-resource (LR) task, ``r* = T x D / B``: the largest static rate at which it stays under ``T``
  passes over the run. At those rates the HR tasks keep ``1 - sum(r*)`` of the budget.

Verdicts: ``no high-resource task`` (nothing to pre-train on), ``all high-resource`` (the paper's HR+HR
control: no gain), ``PTJF expected to help`` when some LR task has ``r* < r_min`` (``--min-static-rate``,
default 0.029: any static rate that keeps it from overfitting gives it under 2.9% of each batch; the
paper's WMT En-Ro and En-Hi runs, where PTJF won, have r* = 0.026 and 0.018), else ``a static rate of about
r* should do as well`` (the project's CPU sweeps with r* = 0.031 ... 0.23 all found a static rate that matched
or beat PTJF; docs/inspect-calibration.md).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Mapping, Sequence

import pyarrow.compute as pc
from transformers import AutoTokenizer

from ..checks import is_integer, is_number
from ..data.columns import column_arrow, column_list
from ..data.prepare import load_recipe_corpora, prepare_recipe_data, recipe_tokenizer_cache
from ..errors import UserError
from ..mixture import plan
from ..recipe import RecipeConfig

__all__ = [
    "DEFAULT_MIN_STATIC_RATE",
    "DEFAULT_OVERFIT_PASSES",
    "LowResourceNumbers",
    "RecipeReport",
    "Report",
    "ReportRow",
    "applicability_report",
    "format_report",
    "main",
    "measure_recipe",
    "recipe_report",
    "recipe_unit",
    "verdict_for",
]

DEFAULT_OVERFIT_PASSES = 20.0  # docs/reproduction.md: static rates giving ~21 passes escaped overfitting
DEFAULT_MIN_STATIC_RATE = 0.029  # between the paper's PTJF wins (r* 0.018, 0.026) and our static wins (>= 0.031)

HELPS, STATIC, NO_HR, ALL_HR = "ptjf_helps", "static_should_do", "no_high_resource", "all_high_resource"


@dataclass(frozen=True)
class ReportRow:
    """One task under one plan."""

    name: str
    size: int
    tokens: int
    rate: float
    expected_examples: float
    expected_epochs: float  # planned passes over the task's training set
    high_resource: bool
    overfit_risk: bool  # planned passes > T


@dataclass(frozen=True)
class LowResourceNumbers:
    """What decides the verdict for one low-resource task."""

    name: str
    size: int
    planned_passes: float  # over the whole recipe, under its stages' rates
    safe_static_rate: float  # r* = T x D / B: the largest static rate that stays under T passes
    hr_share_at_safe_rate: float  # what the HR tasks keep when every LR task gets its r*
    hr_passes_at_safe_rate: float  # passes over the HR tasks' data at that share


@dataclass
class Report:
    """One mixture under one budget, with its verdict."""

    rows: list[ReportRow]
    budget: float
    overfit_passes: float
    hr_min_size: int
    verdict: str
    kind: str  # HELPS | STATIC | NO_HR | ALL_HR
    low_resource_numbers: list[LowResourceNumbers] = field(default_factory=list)
    stage: str | None = None
    notes: list[str] = field(default_factory=list)
    unit: str = "examples"  # what sizes, the budget and passes are counted in (the mixture's size_unit)

    @property
    def ptjf_expected_to_help(self) -> bool:
        return self.kind == HELPS

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
    """Every stage of a recipe, plus the verdict for the whole recipe (judged on the whole budget)."""

    stages: list[Report]
    budget: float
    hr_min_size: int
    high_resource: list[str]
    low_resource: list[str]
    verdict: str
    kind: str
    low_resource_numbers: list[LowResourceNumbers]
    notes: list[str] = field(default_factory=list)
    unit: str = "examples"

    @property
    def ptjf_expected_to_help(self) -> bool:
        return self.kind == HELPS


def _check_thresholds(budget: float, overfit_passes: float, min_static_rate: float) -> None:
    if not is_number(overfit_passes, 0, math.inf, open_low=True):
        raise UserError(f"`overfit_passes` must be a number of passes > 0, got {overfit_passes!r}.")
    if not is_number(min_static_rate, 0, 1):
        raise UserError(f"`min_static_rate` must be a rate in [0, 1), got {min_static_rate!r}.")
    if not is_number(budget, 0, math.inf, open_low=True):
        raise UserError(f"`budget` must be a number of examples > 0, got {budget!r}.")


def _hr_threshold(budget: float, overfit_passes: float, hr_min_size: int | None) -> int:
    if hr_min_size is not None:
        if not is_number(hr_min_size, 0, open_low=True):
            raise UserError(f"`hr_min_size` must be a positive number of examples, got {hr_min_size!r}.")
        return int(hr_min_size)
    return int(math.ceil(budget / overfit_passes))


def verdict_for(
    sizes: Mapping[str, int],
    budget: float,
    planned_passes: Mapping[str, float] | None = None,
    *,
    overfit_passes: float = DEFAULT_OVERFIT_PASSES,
    min_static_rate: float = DEFAULT_MIN_STATIC_RATE,
    hr_min_size: int | None = None,
) -> tuple[str, str, list[LowResourceNumbers], int]:
    """``(kind, verdict line, per-LR-task numbers, HR threshold)`` for tasks of ``sizes`` and a budget ``B``.

    ``planned_passes``: each task's passes under the recipe's own rates (shown in the verdict; optional).
    """
    _check_thresholds(budget, overfit_passes, min_static_rate)
    threshold = _hr_threshold(budget, overfit_passes, hr_min_size)
    hr = [t for t, d in sizes.items() if d >= threshold]
    lr = [t for t, d in sizes.items() if d < threshold]
    planned = dict(planned_passes or {})
    safe = {t: min(1.0, overfit_passes * sizes[t] / budget) for t in lr}
    hr_share = max(0.0, 1.0 - sum(safe.values()))
    hr_size = sum(sizes[t] for t in hr)
    numbers = [
        LowResourceNumbers(t, int(sizes[t]), float(planned.get(t, math.nan)), safe[t], hr_share,
                           hr_share * budget / hr_size if hr_size else 0.0)
        for t in lr
    ]
    t_ = f"{overfit_passes:g}"
    if not hr:
        return NO_HR, (
            f"PTJF is not expected to help: no high-resource task to pre-train on (none has >= {threshold:,} "
            f"examples, i.e. every task would pass {t_} times if it got the whole budget of {budget:,.0f} examples)."
        ), numbers, threshold
    if not lr:
        return ALL_HR, (
            f"PTJF is not expected to help: all tasks are high-resource for this budget (>= {threshold:,} examples "
            f"each: none reaches {t_} passes even alone); the paper shows no gain there. Train jointly from the start."
        ), numbers, threshold
    hr_text = f"{', '.join(hr)} keep {hr_share:.0%} of the budget ({numbers[0].hr_passes_at_safe_rate:.2f} passes)"
    starved = [n for n in numbers if n.safe_static_rate < min_static_rate]
    if starved:
        detail = "; ".join(f"{n.name} reaches {t_} passes at a static rate of {n.safe_static_rate:.3f}" for n in starved)
        return HELPS, (
            f"PTJF is expected to help: {detail} (< {min_static_rate:g}): static sampling must starve or overfit it. "
            f"Pre-train on {', '.join(hr)}, then fine-tune jointly with {', '.join(lr)}."
        ), numbers, threshold
    rates = ", ".join(f"{n.name} {n.safe_static_rate:.3f}" for n in numbers)
    overfit = [n for n in numbers if n.planned_passes > overfit_passes]
    if not overfit:
        most = max((n.planned_passes for n in numbers if not math.isnan(n.planned_passes)), default=math.nan)
        planned = f"nothing overfits at the planned rates (at most {most:.1f} passes), and " if not math.isnan(most) else ""
        return STATIC, (
            f"static sampling should do as well as PTJF: {planned}a static rate of up to about r = {rates} keeps "
            f"each low-resource task under {t_} passes (none needs less than {min_static_rate:g})."
        ), numbers, threshold
    planned = ", ".join(f"{n.name} ({n.planned_passes:.1f} passes)" for n in overfit)
    return STATIC, (
        f"a static rate of about r should do as well as PTJF: the planned rates overfit {planned}, but r = {rates} "
        f"keeps each low-resource task at {t_} passes (none needs less than {min_static_rate:g}) while {hr_text}."
    ), numbers, threshold


def applicability_report(
    names: Sequence[str],
    sizes: Sequence[int],
    tokens: Sequence[int],
    rates: Sequence[float],
    budget: float,
    *,
    overfit_passes: float = DEFAULT_OVERFIT_PASSES,
    min_static_rate: float = DEFAULT_MIN_STATIC_RATE,
    hr_min_size: int | None = None,
    stage: str | None = None,
) -> Report:
    """Plan ``budget`` examples over tasks sampled at ``rates`` and judge whether PTJF applies."""
    n = len(names)
    for what, seq in (("sizes", sizes), ("tokens", tokens), ("rates", rates)):
        if len(seq) != n:
            raise UserError(f"`{what}` has {len(seq)} entries but there are {n} task names; give one per task.")
    plans = plan(sizes, rates, budget, names)
    kind, verdict, numbers, threshold = verdict_for(
        dict(zip(names, sizes)), budget, {p.name: p.expected_epochs for p in plans},
        overfit_passes=overfit_passes, min_static_rate=min_static_rate, hr_min_size=hr_min_size,
    )
    rows = [
        ReportRow(p.name, p.size, int(t), p.rate, p.expected_examples, p.expected_epochs, p.size >= threshold,
                  p.expected_epochs > overfit_passes)
        for p, t in zip(plans, tokens)
    ]
    notes = [f"{r.name} is planned for {r.expected_epochs:.1f} passes (> {overfit_passes:g}): overfitting risk."
             for r in rows if r.overfit_risk]
    return Report(rows, float(budget), float(overfit_passes), threshold, verdict, kind, numbers, stage, notes)


def recipe_unit(cfg: RecipeConfig) -> str:
    """The unit a recipe's sizes are judged in: its stages' ``mixture.size_unit`` where rates use sizes."""
    units = {st.mixture.size_unit for st in cfg.stages if st.mixture.uses_sizes and len(cfg.stage_tasks(st)) > 1}
    if len(units) > 1:
        raise UserError(f"the stages measure sizes in different units {sorted(units)}; give every stage's mixture the "
                         "same `size_unit` (inspect judges a recipe in one unit).")
    return units.pop() if units else "examples"


def recipe_report(
    cfg: RecipeConfig,
    sizes: Mapping[str, int] | Any,
    tokens: Mapping[str, int],
    *,
    num_processes: int = 1,
    overfit_passes: float = DEFAULT_OVERFIT_PASSES,
    min_static_rate: float = DEFAULT_MIN_STATIC_RATE,
    hr_min_size: int | None = None,
) -> RecipeReport:
    """Report every stage of a recipe given each task's train size and tokens; the verdict uses the whole budget.

    ``sizes``: ``{task: examples}``, or a :class:`~hf_ptjf.data.sizes.TaskSizes`: then sizes, the budget and the planned
    passes are in the recipe's ``size_unit`` (the budget in examples times the tasks' mean size per example).
    """
    if not is_integer(num_processes, 1):
        raise UserError(f"`num_processes` must be a positive integer, got {num_processes!r}.")
    unit = recipe_unit(cfg) if hasattr(sizes, "of") else "examples"
    rate_sizes = sizes
    if hasattr(sizes, "of"):
        every = sorted({t for st in cfg.stages for t in cfg.stage_tasks(st)})
        per_example = sizes.per_example(unit, every)
        sizes = sizes.of(unit, every)
    else:
        per_example = 1.0
    budgets = [cfg.stage_budget(st, num_processes) * per_example for st in cfg.stages]
    total = sum(budgets)
    threshold = _hr_threshold(total, overfit_passes, hr_min_size)
    reports: list[Report] = []
    passes: dict[str, float] = {}
    for st, budget in zip(cfg.stages, budgets):
        rates = cfg.stage_rates(st, rate_sizes, num_processes)
        tasks = list(rates)
        rep = applicability_report(
            tasks, [int(sizes[t]) for t in tasks], [int(tokens.get(t, 0)) for t in tasks], list(rates.values()),
            budget, overfit_passes=overfit_passes, min_static_rate=min_static_rate, hr_min_size=threshold, stage=st.name,
        )
        rep.unit = unit
        if st.mixture.online:
            rep.notes.append(f"strategy `{st.mixture.strategy}` decides its rates while training, from the per-task "
                             "training loss: this plan is under its initial rates (its `initial` mixture's), and the "
                             "run's rate_<task> logs and rates.png show the rates it chose.")
        reports.append(rep)
        for row in rep.rows:
            passes[row.name] = passes.get(row.name, 0.0) + row.expected_epochs
    used = {t: int(sizes[t]) for t in passes}
    kind, verdict, numbers, _ = verdict_for(used, total, passes, overfit_passes=overfit_passes,
                                            min_static_rate=min_static_rate, hr_min_size=threshold)
    hr = [t for t in used if used[t] >= threshold]
    lr = [t for t in used if used[t] < threshold]
    notes = [f"[{r.stage}] {n}" for r in reports for n in r.notes]
    if kind == HELPS:
        first = reports[0]
        if len(reports) == 1:
            notes.append("single-stage recipe: that is joint training from scratch; add a pre-training stage on the "
                         "HR tasks (`method: ptjf`).")
        elif first.low_resource:
            notes.append(f"first stage {first.stage!r} already samples low-resource task(s) {first.low_resource}: "
                         "PTJF pre-trains on HR tasks only.")
    return RecipeReport(reports, float(total), threshold, hr, lr, verdict, kind, numbers, notes, unit)


def format_report(report: Report | RecipeReport) -> str:
    """Human-readable table(s), the deciding numbers, notes and the verdict line."""
    if isinstance(report, RecipeReport):
        summary = [
            f"recipe budget {report.budget:,.0f} {report.unit}; high-resource = >= {report.hr_min_size:,} training "
            f"{report.unit}",
            f"HR: {', '.join(report.high_resource) or '-'}   LR: {', '.join(report.low_resource) or '-'}",
            *_numbers_lines(report.low_resource_numbers, report.unit),
            *(f"note: {n}" for n in report.notes),
            f"Verdict: {report.verdict}",
        ]
        return "\n\n".join([*(_format_table(r) for r in report.stages), "\n".join(summary)])
    lines = [_format_table(report), *_numbers_lines(report.low_resource_numbers, report.unit)]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(f"Verdict: {report.verdict}")
    return "\n".join(lines)


def _numbers_lines(numbers: Sequence[LowResourceNumbers], unit: str = "examples") -> list[str]:
    return [
        f"{n.name}: {n.size:,} {unit}, {n.planned_passes:.1f} planned passes; static rate at the overfitting "
        f"threshold r* = {n.safe_static_rate:.3f} (the HR tasks would keep {n.hr_share_at_safe_rate:.0%}, "
        f"{n.hr_passes_at_safe_rate:.2f} passes)"
        for n in numbers
    ]


def _format_table(r: Report) -> str:
    head = f"stage {r.stage}: " if r.stage else ""
    header = f"{head}budget {r.budget:,.0f} {r.unit} (overfitting threshold {r.overfit_passes:g} passes)"
    cols = ("task", "size", "tokens", "rate", r.unit, "passes", "class", "flag")
    rows = [
        (x.name, f"{x.size:,}", f"{x.tokens:,}", f"{x.rate:.3f}", f"{x.expected_examples:,.0f}",
         f"{x.expected_epochs:.2f}", "HR" if x.high_resource else "LR", "OVERFIT?" if x.overfit_risk else "")
        for x in r.rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]

    def fmt(row: tuple[str, ...]) -> str:  # names and labels left-aligned, numbers right-aligned
        cells = (v.ljust(w) if i in (0, 6, 7) else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
        return "  ".join(cells).rstrip()

    return "\n".join([header, fmt(cols), *(fmt(row) for row in rows)])


# ------------------------------------------------------------------------------------------ sizes


def _count_tokens(dsd: Any, tokenizer: Any | None) -> int:
    train = dsd["train"]
    cols = [c for c in ("source", "target", "text") if c in train.column_names]
    total = 0
    for c in cols:
        if tokenizer is None:
            words = pc.list_value_length(pc.utf8_split_whitespace(column_arrow(train, c)))
            total += int(pc.sum(words).as_py() or 0)
        else:
            total += sum(len(x) for x in tokenizer(column_list(train, c), add_special_tokens=False)["input_ids"])
    return total


def _known(sizes: Any, unit: str, task: str) -> int:
    try:
        return int(sizes.of(unit, [task])[task])
    except ValueError:  # a streamed task with no size in that unit: shown as 0
        return 0


def measure_recipe(cfg: RecipeConfig, tokenizer: str | None = None) -> tuple[Any, dict[str, int], str]:
    """``(sizes, tokens, note)`` of a recipe's tasks for :func:`recipe_report`, loaded with its ``data`` section.

    A recipe with lm or streamed tasks, or sizes in another unit than examples, is sized as the run sizes it (its
    tokenizer, its rows; a streamed task's declared or counted size: sizes are then a
    :class:`~hf_ptjf.data.sizes.TaskSizes`); otherwise sizes are training examples and tokens are whitespace words,
    or subword tokens of ``tokenizer`` (a name or path for ``AutoTokenizer``). ``note`` says how it was sized.
    """
    streamed = any(t.streaming for t in cfg.tasks)
    if any(t.type == "lm" for t in cfg.tasks) or streamed or recipe_unit(cfg) != "examples":
        data = prepare_recipe_data(cfg, recipe_tokenizer_cache(cfg))
        tokens = {n: _known(data.sizes, "tokens", n) for n in cfg.task_names}
        return data.sizes, tokens, ("sizes are counted as the run counts them (lm tasks in packed rows; tokens are the "
                                    "recipe tokenizer's, encoder + decoder; streamed tasks as declared or counted)\n")
    corpora = load_recipe_corpora(cfg)
    counter = None
    if tokenizer:
        try:
            counter = AutoTokenizer.from_pretrained(tokenizer)
        except OSError as e:  # not a local folder, not in the cache, not on the Hub
            raise UserError(f"--tokenizer {tokenizer!r} cannot be loaded ({e}); give a tokenizer folder or Hub id, "
                            "or leave it out to count whitespace words.") from e
    sizes = {n: len(d["train"]) for n, d in corpora.items()}
    return sizes, {n: _count_tokens(d, counter) for n, d in corpora.items()}, ""


def __getattr__(name: str) -> Any:
    # `main` is the command line, which sits above this module (hf_ptjf.cli.inspect): looked up when asked for,
    # so that `from hf_ptjf.analysis.inspect import main` keeps working without this module importing the CLI
    if name == "main":
        return import_module("hf_ptjf.cli.inspect").main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # `python -m hf_ptjf.analysis.inspect`, the spelling of `hf-ptjf inspect` before it
    sys.exit(import_module("hf_ptjf.cli.inspect").main(prog="python -m hf_ptjf.analysis.inspect"))
