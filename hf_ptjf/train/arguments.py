"""`MixtureTrainingArguments`: `Seq2SeqTrainingArguments` plus how to mix the tasks, and hf_ptjf's optimizer and LR
schedules (fields with ``metadata={"help": ...}``, in the style of trl's configs)."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from transformers import Seq2SeqTrainingArguments

from ..checks import did_you_mean
from ..mixture import RATE_STRATEGIES
from ..optim import ADAFACTOR_OPTIONS, ADAMW_OPTIONS, LR_SCHEDULES

__all__ = ["MixtureTrainingArguments", "check_deepspeed_config"]


@dataclass
class MixtureTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` plus how to mix the tasks."""

    mixture_strategy: str = field(
        default="temperature",
        metadata={"help": f"Rate strategy, one of {sorted(RATE_STRATEGIES)}."},
    )
    mixture_tau: float = field(default=1.0, metadata={"help": "Temperature for `temperature` (1 = proportional)."})
    mixture_weights: list[float] | None = field(
        default=None, metadata={"help": "Per-task weights for `static` (scalarization), in task order."}
    )
    mixture_max_epochs: float | None = field(
        default=None,
        metadata={"help": "Cap on planned passes over any task within the run's budget (required by `unimax`)."},
    )
    mixture_seed: int | None = field(default=None, metadata={"help": "Sampler seed (defaults to `seed`)."})
    log_task_train_loss: bool = field(
        default=True,
        metadata={"help": "Log `train_<task>_loss` (the training loss per task over each logging window, summed over "
                          "ranks), from the logits the loss used: one extra log-softmax over them per step."},
    )
    label_smoothing_in_eval: bool = field(
        default=True,
        metadata={"help": "Apply `label_smoothing_factor` to evaluation losses too (the Trainer's behaviour); "
                          "False reports plain cross-entropy (nats/token) in eval."},
    )
    # hf_ptjf's LR schedules: `lr_scheduler_type` takes their names too (kept as a plain string; transformers' own
    # names stay a SchedulerType), the pivot is `lr_schedule_steps`.
    lr_schedule_steps: float | None = field(
        default=None,
        metadata={"help": "Pivot of hf_ptjf's LR schedules in optimizer steps (constant phase of constant_then_rsqrt, "
                          "warmup of warmup_then_rsqrt); < 1 is a fraction of max_steps; default: `warmup_steps`."},
    )
    optimizer_args: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Options of `optim` by their unprefixed names, as a recipe's `optimizer_args` names them "
                          f"(adamw: {', '.join(ADAMW_OPTIONS)}; adafactor, hf_ptjf's Adafactor: "
                          f"{', '.join(ADAFACTOR_OPTIONS)}); a dict or a JSON string."},
    )
    # Deprecated spellings (accepted with a DeprecationWarning, folded into `lr_scheduler_type` / `optimizer_args`).
    lr_schedule: str | None = field(default=None, metadata={"help": "Deprecated: use `lr_scheduler_type`."})
    adafactor_beta1: float | None = field(default=None, metadata={"help": "Deprecated: `optimizer_args={'beta1': ..}`."})
    adafactor_decay_rate: float | None = field(default=None, metadata={"help": "Deprecated: `optimizer_args`."})
    adafactor_clipping_threshold: float | None = field(default=None, metadata={"help": "Deprecated: `optimizer_args`."})
    adafactor_factored: bool | None = field(default=None, metadata={"help": "Deprecated: `optimizer_args`."})
    adafactor_multiply_by_parameter_scale: bool | None = field(
        default=None, metadata={"help": "Deprecated: `optimizer_args`."})

    def __post_init__(self) -> None:
        self._fold_deprecated_spellings()
        schedule = str(self.lr_scheduler_type)
        if schedule in LR_SCHEDULES:  # transformers refuses names it does not know: give it one, then restore ours
            self.lr_scheduler_type = "constant"
        super().__post_init__()
        if schedule in LR_SCHEDULES:
            self.lr_scheduler_type = schedule
        self._check_optimizer_args()
        if self.mixture_strategy not in RATE_STRATEGIES:
            raise ValueError(
                f"`mixture_strategy` must be one of {sorted(RATE_STRATEGIES)}, got {self.mixture_strategy!r}."
            )

    def _fold_deprecated_spellings(self) -> None:
        if self.lr_schedule is not None:
            warnings.warn("`lr_schedule` is deprecated: pass the schedule's name as `lr_scheduler_type`.",
                          DeprecationWarning, stacklevel=4)
            if str(self.lr_scheduler_type) not in (self.lr_schedule, "linear", "constant"):  # (linear: the default)
                raise ValueError(f"`lr_scheduler_type={self.lr_scheduler_type!r}` conflicts with "
                                 f"`lr_schedule={self.lr_schedule!r}`: give only `lr_scheduler_type`.")
            if self.lr_schedule not in LR_SCHEDULES:
                raise ValueError(f"`lr_schedule` must be one of {sorted(LR_SCHEDULES)}, got {self.lr_schedule!r}.")
            self.lr_scheduler_type, self.lr_schedule = self.lr_schedule, None
        if isinstance(self.optimizer_args, str):  # (from the command line / HfArgumentParser)
            self.optimizer_args = json.loads(self.optimizer_args) if self.optimizer_args.strip() else {}
        options = dict(self.optimizer_args or {})
        for name in ADAFACTOR_OPTIONS:
            value = getattr(self, f"adafactor_{name}")
            if value is None:
                continue
            warnings.warn(f"`adafactor_{name}` is deprecated: pass `optimizer_args={{{name!r}: {value!r}}}`.",
                          DeprecationWarning, stacklevel=4)
            if options.get(name, value) != value:
                raise ValueError(f"`adafactor_{name}={value!r}` conflicts with `optimizer_args.{name}={options[name]!r}`.")
            options[name] = value
            setattr(self, f"adafactor_{name}", None)
        self.optimizer_args = options

    def _check_optimizer_args(self) -> None:
        """``optimizer_args`` keys the ``optim`` takes; AdamW's become transformers' ``adam_*`` fields here, the one
        place (the Trainer and DeepSpeed's "auto" values read those)."""
        adafactor = self.optim == "adafactor"
        options = ADAFACTOR_OPTIONS if adafactor else ADAMW_OPTIONS
        for key, value in self.optimizer_args.items():
            if key not in options:
                raise ValueError(f"unknown `optimizer_args.{key}` for optim={str(self.optim)!r}."
                                 f"{did_you_mean(key, list(options))} Allowed: {', '.join(options)}.")
            if not adafactor:
                setattr(self, f"adam_{key}", value)

    @property
    def hf_ptjf_lr_schedule(self) -> str | None:
        """The name of hf_ptjf's LR schedule in ``lr_scheduler_type`` (``None``: one of transformers')."""
        schedule = str(self.lr_scheduler_type)
        return schedule if schedule in LR_SCHEDULES else None

    def optimizer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`hf_ptjf.optim.Adafactor` (its defaults, then ``optimizer_args``)."""
        return dict(self.optimizer_args)

    def adafactor_kwargs(self) -> dict[str, Any]:
        """Deprecated: :meth:`optimizer_kwargs`."""
        warnings.warn("`adafactor_kwargs()` is deprecated: use `optimizer_kwargs()`.", DeprecationWarning, stacklevel=2)
        return self.optimizer_kwargs()

    @property
    def total_train_batch_size(self) -> int:
        """Examples consumed per optimizer step over all ranks."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * max(1, self.world_size)

    def adafactor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`hf_ptjf.optim.Adafactor` from the ``adafactor_*`` fields."""
        return {name: getattr(self, f"adafactor_{name}") for name in ADAFACTOR_OPTIONS}

    def lr_schedule_pivot(self, num_training_steps: int) -> int:
        """``lr_schedule_steps`` (or ``warmup_steps``) resolved to optimizer steps (fractions of the run)."""
        steps = self.lr_schedule_steps
        if steps is None:
            return max(1, self.get_warmup_steps(num_training_steps))
        return max(1, int(steps) if steps >= 1 else math.ceil(num_training_steps * steps))

    @property
    def mixing_seed(self) -> int:
        """The seed of the task sequence (``mixture_seed``, else ``seed``): resolved here, once."""
        return self.mixture_seed if self.mixture_seed is not None else self.seed


def check_deepspeed_config(args: "MixtureTrainingArguments", ds: dict[str, Any]) -> None:
    """Refuse a DeepSpeed JSON (``ds``) whose optimizer / scheduler would silently replace the requested ones."""
    if args.optim == "adafactor" and "optimizer" in ds:
        raise ValueError(
            "optim='adafactor' (hf_ptjf's Adafactor) but the DeepSpeed config declares an `optimizer`, which "
            "would replace it: use a DeepSpeed JSON without an optimizer section (with ZeRO-Offload also "
            '"zero_force_ds_cpu_optimizer": false, e.g. accelerate_configs/ds_zero3_offload_clientopt_bf16.json).'
        )
    schedule = str(args.lr_scheduler_type)
    if schedule in LR_SCHEDULES and "scheduler" in ds:
        raise ValueError(
            f"lr_scheduler_type={schedule!r} (hf_ptjf's) but the DeepSpeed config declares a `scheduler`, which would "
            "replace it: remove the scheduler section from the DeepSpeed JSON."
        )
