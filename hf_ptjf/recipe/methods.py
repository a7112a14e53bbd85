"""Method shorthands: every method of the paper is one list of stages (same machinery, four configurations).

* ``scalarization``: one stage on the mixture for N steps;
* ``ptjf``: N1 steps on the high-resource task(s), then N - N1 steps on the full mixture;
* ``restart``: N1 steps on the mixture, then N - N1 more on the same mixture;
* ``transfer``: N1 steps on the high-resource task(s), then N - N1 steps on the other tasks alone.

At every stage boundary the weights carry over and the optimizer state and LR schedule start anew, unless
``method_args.reset`` says otherwise for the second stage (``{optimizer: keep, lr_schedule: continue}`` is the method
without the reset, an ablation in one override; see :class:`hf_ptjf.recipe.config.StageReset`).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..checks import did_you_mean, is_integer
from .errors import RecipeError

__all__ = ["METHODS", "expand_method"]

METHODS = ("ptjf", "scalarization", "restart", "transfer")


def expand_method(method: str, args: Mapping[str, Any], task_names: list[str]) -> list[dict[str, Any]]:
    """Stages (as dicts) for a method shorthand at equal total steps N = N1 + N2.

    ``args``: ``total_steps`` (N), ``first_stage_steps`` (N1; ptjf/restart/transfer), ``high_resource``
    (tasks of the pre-training stage; ptjf/transfer), ``mixture`` (the joint mixture), and optional
    ``pretrain_mixture``, ``stage`` (keys added to every stage, e.g. optimizer, training overrides),
    ``first_stage`` / ``second_stage`` (keys added to the first / second stage only, over ``stage``; mappings
    such as ``training`` are merged), e.g. the paper's LM schedules: constant-then-rsqrt for the first stage,
    warmup-then-rsqrt after the reset; ``reset``: the second stage's ``reset`` (ptjf / restart / transfer; checked
    with the stage).
    """
    if method not in METHODS:
        raise RecipeError(f"unknown `method: {method}`.{did_you_mean(method, list(METHODS))} Choose one of {METHODS}.")
    allowed = {"total_steps", "first_stage_steps", "high_resource", "mixture", "pretrain_mixture", "stage",
               "first_stage", "second_stage", "reset"}
    for key in args:
        if key not in allowed:
            raise RecipeError(f"unknown key `method_args.{key}`.{did_you_mean(key, sorted(allowed))}")
    if "total_steps" not in args:
        raise RecipeError("`method_args.total_steps` is required (the total steps N every method gets).")
    total = args["total_steps"]
    joint = dict(args.get("mixture") or {})
    stage_keys = dict(args.get("stage") or {})
    first_keys = _merge_stage_keys(stage_keys, args.get("first_stage"))
    if method == "scalarization" and "reset" in args:
        raise RecipeError("`method_args.reset`: method `scalarization` has one stage, so nothing to reset; use "
                          "ptjf, restart or transfer, or remove `method_args.reset`.")
    if "reset" in args and not isinstance(args["reset"], Mapping):
        raise RecipeError(f"`method_args.reset` must be a mapping such as {{optimizer: keep, lr_schedule: continue}}, "
                          f"got {args['reset']!r}.")
    if method == "scalarization":
        return [{**first_keys, "name": "scalarization", "max_steps": total, "mixture": joint, "init": "scratch"}]
    if "first_stage_steps" not in args:
        raise RecipeError(f"`method_args.first_stage_steps` (N1) is required for method `{method}`.")
    n1 = args["first_stage_steps"]
    if not (is_integer(n1) and is_integer(total) and 0 < n1 < total):  # (a bool is an int: refused)
        raise RecipeError(
            f"need 0 < method_args.first_stage_steps < method_args.total_steps, got {n1} and {total}."
        )
    second = dict(_merge_stage_keys(stage_keys, args.get("second_stage")), max_steps=total - n1, init="previous")
    if "reset" in args:
        second["reset"] = dict(args["reset"])
    if method == "restart":
        return [
            {**first_keys, "name": "scalarization", "max_steps": n1, "mixture": joint, "init": "scratch"},
            {**second, "name": "restart", "mixture": joint},
        ]
    hr = args.get("high_resource")
    if isinstance(hr, str):  # `high_resource=en-fr`: one task
        hr = [hr]
    if hr is not None and not (isinstance(hr, list) and all(isinstance(t, str) for t in hr)):
        raise RecipeError(f"`method_args.high_resource` must be a list of task names, e.g. [en-fr]; got {hr!r}.")
    if not hr:
        raise RecipeError(f"`method_args.high_resource` (the pre-training task list) is required for `{method}`.")
    pretrain = dict(args.get("pretrain_mixture") or {"strategy": "proportional"}, tasks=list(hr))
    first = {**first_keys, "name": "pretrain", "max_steps": n1, "mixture": pretrain, "init": "scratch"}
    if method == "ptjf":
        return [first, {**second, "name": "joint", "mixture": joint}]
    low = [t for t in (joint.get("tasks") or task_names) if t not in hr]
    if not low:
        raise RecipeError("method `transfer` needs at least one task outside `method_args.high_resource`.")
    transfer = dict(joint, tasks=low)
    if isinstance(transfer.get("weights"), Mapping):
        transfer["weights"] = {t: w for t, w in transfer["weights"].items() if t in low}
    return [first, {**second, "name": "transfer", "mixture": transfer}]


def _merge_stage_keys(base: Mapping[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` updated with ``extra``; mapping values (``training``, ``optimizer_args``) are merged one level."""
    out = dict(base)
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            value = {**out[key], **value}
        out[key] = value
    return out
