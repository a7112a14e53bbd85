"""The training arguments of a recipe: the pass-through ones (their defaults, the names allowed, their values checked
when the recipe is read: the Trainer itself would take ``learning_rate=fast`` and fail in the optimizer an hour
later, or ``eval_steps=-3`` and silently never checkpoint), and the one mapping from a stage's optimizer and schedule
keys to the Trainer's.

A stage names its optimizer and LR schedule as recipes always have, and :func:`stage_optimization_arguments` is the
only place those names become training arguments:

=====================================  ========================================================================
recipe (a stage)                       training argument (:class:`hf_ptjf.train.MixtureTrainingArguments`)
=====================================  ========================================================================
``optimizer: adamw`` / ``adafactor``   ``optim: adamw_torch`` / ``adafactor`` (hf_ptjf's :class:`~hf_ptjf.optim.Adafactor`)
``optimizer_args: {beta1: 0.9}``       ``optimizer_args``: the same mapping, the same unprefixed names (for AdamW the
                                       arguments copy them into transformers' ``adam_*`` fields, in one place)
``lr_scheduler: <name>``               ``lr_scheduler_type``: the same name (transformers' ``cosine``, ``linear``,
                                       ``inverse_sqrt``; hf_ptjf's ``constant_then_rsqrt``, ``warmup_then_rsqrt``),
                                       except ``constant``, which is ``constant_with_warmup`` (warmup restarts with
                                       every stage)
=====================================  ========================================================================
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Mapping

from ..checks import did_you_mean, is_integer, is_number
from .errors import RecipeError

__all__ = ["LR_SCHEDULERS", "OPTIMIZERS", "TRAINING_DEFAULTS", "check_optimizer_args",
           "check_training_values", "optimizer_options", "stage_optimization_arguments", "training_fields"]

OPTIMIZERS = {"adamw": "adamw_torch", "adafactor": "adafactor"}  # a stage's `optimizer` -> `optim`
LR_SCHEDULERS = {  # a stage's `lr_scheduler` -> `lr_scheduler_type` (transformers' names, or hf_ptjf.optim's)
    "cosine": "cosine",  # linear warmup, then cosine decay to 0 (the paper's NMT schedule)
    "inverse_sqrt": "inverse_sqrt",  # warmup, then 1/sqrt(step)
    "linear": "linear",
    "constant": "constant_with_warmup",
    # the paper's LM schedules; their pivot is `training.lr_schedule_steps` (default: warmup_steps)
    "constant_then_rsqrt": "constant_then_rsqrt",  # constant LR, then 1/sqrt(step) (pre-training, baselines)
    "warmup_then_rsqrt": "warmup_then_rsqrt",  # linear warmup, then 1/sqrt(step) (fine-tuning after a reset)
}

# Defaults of the pass-through training arguments; the recipe's own keys win, then a stage's `training`.
TRAINING_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "learning_rate": 2e-3,
    "warmup_steps": 0.1,  # a fraction of the stage: warmup restarts with every stage
    "weight_decay": 0.0,
    "label_smoothing_factor": 0.1,
    "logging_steps": 25,
    "save_total_limit": 2,
    "report_to": ["tensorboard"],
    "disable_tqdm": False,
    "dataloader_num_workers": 0,
}

_EXAMPLES = {"learning_rate": "2e-3", "eval_steps": 100, "save_steps": 100, "seed": 0}
_POSITIVE = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
             "logging_steps", "eval_steps", "save_steps")
_NON_NEGATIVE = ("learning_rate", "weight_decay", "warmup_steps", "label_smoothing_factor", "max_grad_norm")


def check_training_values(values: Mapping[str, Any], where: str) -> None:
    """Types and ranges of pass-through training arguments, checked when the recipe is read (the Trainer would
    take ``learning_rate=fast`` and fail in the optimizer, or ``eval_steps=-3`` and silently never checkpoint)."""
    from ..train.arguments import MixtureTrainingArguments  # lazily: the recipe package is torch-free until here

    hints = typing.get_type_hints(MixtureTrainingArguments)
    for key, value in values.items():
        kinds = set(typing.get_args(hints.get(key))) or {hints.get(key)}
        number = is_number(value) or (isinstance(value, float) and math.isnan(value))  # (NaN: "not finite")
        expected = None
        if kinds <= {int, type(None)} and not is_integer(value):
            expected = "an integer"
        elif kinds <= {float, type(None)} and not number:
            expected = "a number"
        elif kinds <= {bool, type(None)} and not isinstance(value, bool):
            expected = "true or false"
        if value is None and type(None) in kinds:
            expected = None
        if expected is None and number and key in _POSITIVE and not value > 0:
            expected = "a number > 0"
        if expected is None and number and key in _NON_NEGATIVE and not (value >= 0 and math.isfinite(value)):
            expected = "a finite number >= 0"
        if expected is not None:
            example = _EXAMPLES.get(key, TRAINING_DEFAULTS.get(key, "true" if expected == "true or false" else 1))
            raise RecipeError(f"`{where}{key}` must be {expected}, got {value!r}; e.g. {key}={example}.")
    report_to = values.get("report_to")
    if report_to not in (None, "none", "all", []):
        from transformers.integrations import get_available_reporting_integrations

        available = get_available_reporting_integrations()
        for name in [report_to] if isinstance(report_to, str) else list(report_to):
            if name not in available and name not in ("none", "all"):
                raise RecipeError(f"`{where}report_to` names `{name}`, which is not installed here (available: "
                                  f"{', '.join(available) or 'none'}); `pip install {name}` or remove it, e.g. "
                                  "report_to=[tensorboard].")


def training_fields() -> set[str]:
    from ..train.arguments import MixtureTrainingArguments  # lazily: the recipe package is torch-free until here

    return {f.name for f in dataclasses.fields(MixtureTrainingArguments) if f.init}


def stage_optimization_arguments(optimizer: str, optimizer_args: Mapping[str, Any], lr_scheduler: str) -> dict[str, Any]:
    """The training arguments of a stage's ``optimizer``, ``optimizer_args`` and ``lr_scheduler`` (the table in the
    module docstring): ``("adafactor", {"beta1": 0.9}, "constant")`` -> ``{"optim": "adafactor",
    "lr_scheduler_type": "constant_with_warmup", "optimizer_args": {"beta1": 0.9}}``."""
    arguments = {"optim": OPTIMIZERS[optimizer], "lr_scheduler_type": LR_SCHEDULERS[lr_scheduler]}
    if optimizer_args:
        arguments["optimizer_args"] = dict(optimizer_args)
    return arguments


def optimizer_options(optimizer: str) -> list[str]:
    """The ``optimizer_args`` keys ``optimizer`` takes (named once, with the optimizers in :mod:`hf_ptjf.optim`)."""
    from ..optim import ADAFACTOR_OPTIONS, ADAMW_OPTIONS  # lazily: the recipe package is torch-free until here

    return sorted(ADAFACTOR_OPTIONS if optimizer == "adafactor" else ADAMW_OPTIONS)


def check_optimizer_args(optimizer: str, optimizer_args: Mapping[str, Any], where: str) -> None:
    """Refuse an ``optimizer_args`` key that ``optimizer`` does not take, with a did-you-mean (``where``: the
    recipe's path to the mapping, e.g. ``stages.0.optimizer_args``)."""
    options = optimizer_options(optimizer)
    for key in optimizer_args:
        if key not in options:
            raise RecipeError(f"unknown key `{where}.{key}` for optimizer `{optimizer}`.{did_you_mean(key, options)} "
                              f"Allowed: {', '.join(options)}.")
