"""The pass-through training arguments of a recipe: their defaults, the names allowed, and their values checked
when the recipe is read (the Trainer itself would take ``learning_rate=fast`` and fail in the optimizer an hour
later, or ``eval_steps=-3`` and silently never checkpoint)."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Mapping

from .errors import RecipeError

__all__ = ["TRAINING_DEFAULTS", "check_training_values", "training_fields"]

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
    from ..train import MixtureTrainingArguments  # lazily: the recipe package is torch-free until here

    hints = typing.get_type_hints(MixtureTrainingArguments)
    for key, value in values.items():
        kinds = set(typing.get_args(hints.get(key))) or {hints.get(key)}
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = None
        if kinds <= {int, type(None)} and not (isinstance(value, int) and not isinstance(value, bool)):
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
    from ..train import MixtureTrainingArguments  # lazily: the recipe package is torch-free until here

    return {f.name for f in dataclasses.fields(MixtureTrainingArguments) if f.init}
