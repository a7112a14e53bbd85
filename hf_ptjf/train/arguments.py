"""`MixtureTrainingArguments`: `Seq2SeqTrainingArguments` plus how to mix the tasks, and hf_ptjf's optimizer and LR
schedules (fields with ``metadata={"help": ...}``, in the style of trl's configs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from transformers import Seq2SeqTrainingArguments

from ..mixture import RATE_STRATEGIES
from ..optim import ADAFACTOR_OPTIONS, LR_SCHEDULES

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
    # hf_ptjf's LR schedules and Adafactor (hf_ptjf.optim); `optim="adafactor"` selects hf_ptjf's Adafactor
    lr_schedule: str | None = field(
        default=None,
        metadata={"help": f"hf_ptjf LR schedule replacing `lr_scheduler_type`, one of {sorted(LR_SCHEDULES)} "
                          "(also accepted as `lr_scheduler_type`)."},
    )
    lr_schedule_steps: float | None = field(
        default=None,
        metadata={"help": "Pivot of `lr_schedule` in optimizer steps (constant phase of constant_then_rsqrt, warmup "
                          "of warmup_then_rsqrt); < 1 is a fraction of max_steps; default: `warmup_steps`."},
    )
    adafactor_beta1: float | None = field(default=None, metadata={"help": "Adafactor momentum (None: no momentum)."})
    adafactor_decay_rate: float = field(default=0.8, metadata={"help": "Adafactor second-moment decay 1 - t^-rate."})
    adafactor_clipping_threshold: float | None = field(
        default=1.0, metadata={"help": "Adafactor update clipping threshold on RMS(update) (None: off)."}
    )
    adafactor_factored: bool = field(
        default=True, metadata={"help": "Factor Adafactor's second moment of matrices (False: full, the paper's LM)."}
    )
    adafactor_multiply_by_parameter_scale: bool = field(
        default=False, metadata={"help": "Scale Adafactor updates by the parameter RMS (T5X's default)."}
    )

    def __post_init__(self) -> None:
        if str(self.lr_scheduler_type) in LR_SCHEDULES:  # transformers refuses names it does not know
            if self.lr_schedule not in (None, str(self.lr_scheduler_type)):
                raise ValueError(
                    f"`lr_scheduler_type={self.lr_scheduler_type!r}` conflicts with `lr_schedule={self.lr_schedule!r}`."
                )
            self.lr_schedule, self.lr_scheduler_type = str(self.lr_scheduler_type), "constant"
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"`lr_schedule` must be one of {sorted(LR_SCHEDULES)} or None, got {self.lr_schedule!r}.")
        super().__post_init__()
        if self.mixture_strategy not in RATE_STRATEGIES:
            raise ValueError(
                f"`mixture_strategy` must be one of {sorted(RATE_STRATEGIES)}, got {self.mixture_strategy!r}."
            )

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
    if args.lr_schedule is not None and "scheduler" in ds:
        raise ValueError(
            f"lr_schedule={args.lr_schedule!r} but the DeepSpeed config declares a `scheduler`, which would "
            "replace it: remove the scheduler section from the DeepSpeed JSON."
        )
