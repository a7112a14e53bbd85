"""`MixtureTrainer`: a `Seq2SeqTrainer` that trains on a mixture of named tasks.

It only overrides hooks (sampler, signature columns, loss, logging, checkpointing), never the loop:

* the training set is the concatenation of the tasks (with a ``task_id`` column) and the order comes
  from a :class:`~hf_ptjf.sampler.TemperatureMixtureSampler` whose rates come from
  :class:`MixtureTrainingArguments` (strategy by name, see :mod:`hf_ptjf.mixing`);
* per-task examples and target tokens actually consumed are counted on device, summed across ranks
  at each log, and logged cumulatively as ``examples_seen_<task>`` / ``target_tokens_seen_<task>``;
* each checkpoint holds ``mixture_state.json`` (sampler position + counters); resuming restores it so
  the resumed run consumes exactly the batches of the uninterrupted one, in O(1) (no batch replay);
* evaluation per task comes from passing ``eval_dataset`` as a dict (logged as ``eval_<task>_loss``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from .mixing import RATE_STRATEGIES, mixing_rates
from .sampler import TemperatureMixtureSampler

__all__ = ["MIXTURE_STATE_NAME", "MixtureTrainer", "MixtureTrainingArguments", "concatenate_tasks"]

MIXTURE_STATE_NAME = "mixture_state.json"
TASK_ID = "task_id"


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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mixture_strategy not in RATE_STRATEGIES:
            raise ValueError(
                f"`mixture_strategy` must be one of {sorted(RATE_STRATEGIES)}, got {self.mixture_strategy!r}."
            )

    @property
    def total_train_batch_size(self) -> int:
        """Examples consumed per optimizer step over all ranks."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * max(1, self.world_size)


def concatenate_tasks(datasets: Mapping[str, Any]) -> Any:
    """Concatenate named `datasets.Dataset`s in order, adding the integer column ``task_id``."""
    import datasets as hf_datasets

    if not datasets:
        raise ValueError("`train_datasets` is empty: give at least one task, e.g. {'en-fr': dataset}.")
    parts = []
    for k, (name, ds) in enumerate(datasets.items()):
        if len(ds) == 0:
            raise ValueError(f"task `{name}` has an empty training set; remove it from the mixture or give it data.")
        if TASK_ID in ds.column_names:
            ds = ds.remove_columns(TASK_ID)
        parts.append(ds.add_column(TASK_ID, np.full(len(ds), k, dtype=np.int64)))
    return hf_datasets.concatenate_datasets(parts)


class MixtureTrainer(Seq2SeqTrainer):
    """Train one model on several named tasks mixed by rate.

    Args:
        train_datasets: ``{task_name: datasets.Dataset}``, already tokenized; the order is the task order.
        rates: explicit sampling probability per task name; when omitted they come from ``args``
            (``mixture_strategy`` and its parameters) and the task sizes.
        Everything else is passed to :class:`transformers.Seq2SeqTrainer` (``eval_dataset`` may be a
        dict of per-task datasets, evaluated and logged per task).
    """

    def __init__(
        self,
        model: Any = None,
        args: MixtureTrainingArguments | None = None,
        train_datasets: Mapping[str, Any] | None = None,
        rates: Mapping[str, float] | Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            raise ValueError("MixtureTrainer needs `args` (a MixtureTrainingArguments).")
        if "train_dataset" in kwargs:
            raise ValueError("pass the tasks as `train_datasets={name: dataset}`, not `train_dataset`.")
        self.task_names: list[str] = list(train_datasets or {})
        train_dataset = concatenate_tasks(train_datasets) if train_datasets else None
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        # transformers 5.x: T5 advertises loss kwargs, so the Trainer would pass `num_items_in_batch`
        # and skip its own GA scaling, mis-scaling the loss across processes / accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.task_sizes = [len(train_datasets[n]) for n in self.task_names]
        self.rates = self._resolve_rates(rates) if self.task_names else None
        k = len(self.task_names)
        self._examples = torch.zeros(k, dtype=torch.long)  # this rank, since (re)start
        self._tokens = torch.zeros(k, dtype=torch.long)
        self._examples_base = np.zeros(k, dtype=np.int64)  # all ranks, restored from a checkpoint
        self._tokens_base = np.zeros(k, dtype=np.int64)
        self._pending_sampler_state: dict[str, Any] | None = None
        self.mixture_sampler: TemperatureMixtureSampler | None = None

    # ------------------------------------------------------------------ mixture
    def _resolve_rates(self, rates: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
        if rates is not None:
            if isinstance(rates, Mapping):
                unknown = set(rates) - set(self.task_names)
                if unknown:
                    raise ValueError(f"`rates` names unknown task(s) {sorted(unknown)}; tasks are {self.task_names}.")
                rates = [rates.get(n, 0.0) for n in self.task_names]
            return mixing_rates("static", self.task_sizes, weights=list(rates))
        a = self.args
        params: dict[str, Any] = {}
        if a.mixture_strategy == "temperature":
            params["tau"] = a.mixture_tau
        elif a.mixture_strategy == "static":
            if a.mixture_weights is None:
                raise ValueError("`mixture_strategy='static'` needs `mixture_weights` (one per task).")
            params["weights"] = a.mixture_weights
        return mixing_rates(a.mixture_strategy, self.task_sizes, max_epochs=a.mixture_max_epochs, budget=self._budget(), **params)

    def _budget(self) -> int:
        """Examples the whole run draws (for epoch caps and UniMax)."""
        if self.args.max_steps > 0:
            return self._samples_per_epoch()
        return self._samples_per_epoch() * math.ceil(self.args.num_train_epochs)

    def _samples_per_epoch(self) -> int:
        if self.args.max_steps > 0:
            return self.args.max_steps * self.args.total_train_batch_size
        return sum(self.task_sizes)

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        if not self.task_names:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.mixture_seed if self.args.mixture_seed is not None else self.args.seed
        sampler = TemperatureMixtureSampler(self.task_sizes, self._samples_per_epoch(), weights=self.rates, seed=seed)
        if self._pending_sampler_state is not None:
            sampler.load_state_dict(self._pending_sampler_state)
            self._pending_sampler_state = None
        self.mixture_sampler = sampler
        return sampler

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if TASK_ID not in self._signature_columns:
            self._signature_columns.append(TASK_ID)  # keep it through `remove_unused_columns`

    # ------------------------------------------------------------------ counting
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        task_id = inputs.pop(TASK_ID, None)
        if task_id is not None and model.training and self.task_names:
            k = len(self.task_names)
            task_id = task_id.detach().to("cpu", torch.long)
            self._examples += torch.bincount(task_id, minlength=k)
            labels = inputs.get("labels")
            if labels is not None:
                per_example = (labels != -100).sum(dim=-1).detach().to("cpu", torch.long)
                self._tokens += torch.bincount(task_id, weights=per_example, minlength=k).long()
        if self.label_smoother is not None and "labels" in inputs and "decoder_input_ids" not in inputs:
            # label smoothing pops `labels` before forward, so the decoder needs its inputs explicitly
            prepare = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
            if prepare is not None:
                inputs["decoder_input_ids"] = prepare(labels=inputs["labels"])
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):  # noqa: D102
        inputs.pop(TASK_ID, None)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)

    def seen_counts(self) -> dict[str, dict[str, int]]:
        """Cumulative per-task examples and target tokens consumed by all ranks (a collective call)."""
        local = torch.stack([self._examples, self._tokens])
        if dist.is_available() and dist.is_initialized() and self.args.world_size > 1:
            # gloo and nccl both reduce; nccl needs the tensor on the device
            device = self.args.device if dist.get_backend() == "nccl" else torch.device("cpu")
            local = local.to(device)
            dist.all_reduce(local, op=dist.ReduceOp.SUM)
        total = local.cpu().numpy()
        examples, tokens = self._examples_base + total[0], self._tokens_base + total[1]
        return {
            name: {"examples": int(examples[i]), "target_tokens": int(tokens[i])} for i, name in enumerate(self.task_names)
        }

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D102
        # `log` runs on every rank, so the collective inside `seen_counts` is safe here.
        if self.task_names and "loss" in logs:
            for name, seen in self.seen_counts().items():
                logs[f"examples_seen_{name}"] = seen["examples"]
                logs[f"target_tokens_seen_{name}"] = seen["target_tokens"]
        super().log(logs, start_time)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        if self.task_names:
            counts = self.seen_counts()  # collective: all ranks are here
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            if self.args.should_save:
                os.makedirs(folder, exist_ok=True)
                state = {
                    "tasks": self.task_names,
                    "sampler": self._sampler_state_at_step(self.state.global_step),
                    "seen": counts,
                }
                _atomic_write_json(os.path.join(folder, MIXTURE_STATE_NAME), state)
        super()._save_checkpoint(model, trial)

    def _sampler_state_at_step(self, step: int) -> dict[str, Any]:
        """The sampler state after ``step`` optimizer steps (the DataLoader may have prefetched further)."""
        consumed = step * self.args.total_train_batch_size
        sampler = self.mixture_sampler
        if sampler is None:
            raise RuntimeError("no mixture sampler yet: save a checkpoint only during training.")
        state = sampler.state_dict()
        state.update(position=consumed, epoch=consumed // sampler.num_samples)
        return state

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):  # noqa: D102
        if isinstance(resume_from_checkpoint, bool) and resume_from_checkpoint:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint to resume from in output_dir={self.args.output_dir!r}.")
        state_file = os.path.join(resume_from_checkpoint, MIXTURE_STATE_NAME) if resume_from_checkpoint else None
        if not (state_file and os.path.isfile(state_file) and self.task_names):
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        with open(state_file) as f:
            state = json.load(f)
        if state["tasks"] != self.task_names:
            raise ValueError(
                f"cannot resume from {resume_from_checkpoint}: it was trained on tasks {state['tasks']} but this "
                f"run has {self.task_names}. Use the same tasks, or a new output_dir."
            )
        self._pending_sampler_state = state["sampler"]
        self._examples_base = np.array([state["seen"][n]["examples"] for n in self.task_names], dtype=np.int64)
        self._tokens_base = np.array([state["seen"][n]["target_tokens"] for n in self.task_names], dtype=np.int64)
        self._examples.zero_()
        self._tokens.zero_()
        # The sampler itself continues at the saved position (O(1)); the Trainer must not also
        # fast-forward the DataLoader by replaying batches.
        skip = self.args.ignore_data_skip
        self.args.ignore_data_skip = True
        try:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            self.args.ignore_data_skip = skip


def _atomic_write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
