"""`MixtureTrainer`: a `Seq2SeqTrainer` that trains an encoder-decoder or a decoder-only model on a mixture of
named tasks.

It only overrides hooks (sampler, signature columns, loss, logging, checkpointing), never the loop:

* the training set is the concatenation of the tasks (with a ``task_id`` column) and the order comes
  from a :class:`~hf_ptjf.sampler.TemperatureMixtureSampler` whose rates come from
  :class:`MixtureTrainingArguments` (strategy by name, see :mod:`hf_ptjf.mixing`);
* per-task examples, target tokens and characters of text actually consumed are counted, summed across ranks at
  each log, and logged cumulatively as ``examples_seen_<task>`` / ``target_tokens_seen_<task>`` /
  ``characters_seen_<task>`` (:mod:`hf_ptjf.seen`; characters when the rows carry a ``characters`` column);
* each checkpoint holds ``mixture_state.json`` (sampler position + counters); resuming restores it so
  the resumed run consumes exactly the batches of the uninterrupted one, in O(1) (no batch replay);
* evaluation per task comes from passing ``eval_dataset`` as a dict (logged as ``eval_<task>_loss``);
* streamed tasks (a ``datasets.IterableDataset`` or a :class:`~hf_ptjf.data.stream.TaskStream` per task, mixed
  with map-style ones if wanted) go through a :class:`~hf_ptjf.mixture_stream.MixtureStream`: the same task
  sequence, each task read from its own stream; checkpoints hold every reader's state and a resume continues them
  exactly (one window re-read per reader, no replay);
* ``optim="adafactor"`` is :class:`hf_ptjf.optim.Adafactor` (``adafactor_*`` fields) and ``lr_schedule`` (or
  ``lr_scheduler_type``) ``constant_then_rsqrt`` / ``warmup_then_rsqrt`` the paper's LM schedules, also as a
  DeepSpeed ZeRO client optimizer / scheduler (a DeepSpeed JSON declaring its own is refused).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, MutableMapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from .files import atomic_write_text
from .mixing import RATE_STRATEGIES, MixtureSpec, mixing_rates
from .optim import ADAFACTOR_OPTIONS, LR_SCHEDULES, Adafactor, get_lr_schedule, register_zero3_segments
from .data.stream import TaskStream, as_task_stream
from .mixture_stream import STREAM_STATE, MixtureStream
from .sampler import TemperatureMixtureSampler
from .seen import CHARACTERS, SEEN_UNITS, seen_key

__all__ = ["MIXTURE_STATE_NAME", "MixtureTrainer", "MixtureTrainingArguments", "changed_shards", "concatenate_tasks",
           "shard_identity"]

MIXTURE_STATE_NAME = "mixture_state.json"
TASK_ID = "task_id"
# the per-task counters: SEEN_UNITS, then how many examples carried a character count (all of them, or the
# task's characters are unknown: rows from data without a `characters` column)
_CARRIED = "examples_with_characters"
_SEEN_ROWS = (*SEEN_UNITS, _CARRIED)
EVAL_NOISE_SEED = 0  # the noise of a random collator (span corruption) during evaluation, the same in every run


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


def _shift_right(labels: torch.Tensor, pad_id: int, start_id: int) -> torch.Tensor:
    """Decoder inputs from labels (teacher forcing): the start token, then the labels but the last; -100 -> pad."""
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_id
    return shifted.masked_fill(shifted == -100, pad_id)


class MixtureTrainer(Seq2SeqTrainer):
    """Train one model on several named tasks mixed by rate.

    Args:
        train_datasets: ``{task_name: data}``, already tokenized (a ``datasets.Dataset``), or streamed (a
            ``datasets.IterableDataset`` of model-ready rows, or a :class:`~hf_ptjf.data.stream.TaskStream`); the order
            is the task order. One streamed task makes the whole mixture a stream (``max_steps`` needed).
        rates: sampling probability per task (by name, or in task order), e.g. from
            :meth:`hf_ptjf.recipe.RecipeConfig.stage_rates`; when omitted they come from ``args``
            (``mixture_strategy`` and its parameters, as a :class:`hf_ptjf.mixing.MixtureSpec`) and the task sizes.
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
        self.streams: list[TaskStream] | None = None
        if train_datasets and any(_is_streamed(d) for d in train_datasets.values()):
            if args.max_steps <= 0:
                raise ValueError("a streamed mixture has no length: set `max_steps` (> 0) in the training arguments.")
            seed = args.mixture_seed if args.mixture_seed is not None else args.seed
            self.streams = [as_task_stream(n, d, seed=seed) for n, d in train_datasets.items()]
            train_dataset = None  # the stream is built by get_train_dataloader
        else:
            train_dataset = concatenate_tasks(train_datasets) if train_datasets else None
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        # transformers 5.x: T5 advertises loss kwargs, so the Trainer would pass `num_items_in_batch`
        # and skip its own GA scaling, mis-scaling the loss across processes / accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.task_sizes: list[int | None] = (
            [_examples(s) for s in self.streams] if self.streams is not None
            else [len(train_datasets[n]) for n in self.task_names])
        self.rates = self._resolve_rates(rates) if self.task_names else None
        k = len(self.task_names)
        self._seen = torch.zeros(len(_SEEN_ROWS), k, dtype=torch.long)  # this rank, since (re)start
        self._loss_sums = torch.zeros(k, dtype=torch.float32)  # this rank, this logging window (on the model's device)
        self._loss_tokens = torch.zeros(k, dtype=torch.float32)
        self._seen_base = np.zeros((len(_SEEN_ROWS), k), dtype=np.int64)  # all ranks, restored from a checkpoint
        self._pending_sampler_state: dict[str, Any] | None = None
        self.mixture_sampler: TemperatureMixtureSampler | None = None
        self.mixture_stream: MixtureStream | None = None
        self._pending_stream_state: dict[str, Any] | None = None
        self._reader_states: dict[int, dict[str, Any]] = {}  # this rank's readers after their last consumed batch
        if self.streams is not None:
            self.train_dataset = self._mixture_stream()
        self._check_deepspeed_leaves_optimization_to_us()

    # ------------------------------------------------------------------ optimizer and LR schedule
    @staticmethod
    def get_optimizer_cls_and_kwargs(args: Any, model: Any = None) -> tuple[Any, dict[str, Any]]:
        """``optim="adafactor"`` is hf_ptjf's :class:`~hf_ptjf.optim.Adafactor` (``adafactor_*`` fields, LR from
        ``learning_rate`` and the scheduler); every other ``optim`` is the Trainer's. ``create_optimizer`` calls this,
        also under DeepSpeed when its JSON declares no optimizer (a ZeRO client optimizer)."""
        if args.optim == "adafactor" and isinstance(args, MixtureTrainingArguments):
            return Adafactor, {"lr": args.learning_rate, **args.adafactor_kwargs()}
        return Seq2SeqTrainer.get_optimizer_cls_and_kwargs(args, model)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):  # noqa: D102
        # `lr_schedule` (hf_ptjf.optim) replaces `lr_scheduler_type`; DeepSpeed calls this too when its JSON has
        # no scheduler (with its own optimizer as `optimizer` when the JSON declares one).
        if self.is_deepspeed_enabled:  # called after accelerator.prepare: the ZeRO-3 partitions exist now
            register_zero3_segments(getattr(self.optimizer, "optimizer", None))
        if self.args.lr_schedule is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        pivot = self.args.lr_schedule_pivot(num_training_steps)
        self.lr_scheduler = get_lr_schedule(self.args.lr_schedule, optimizer or self.optimizer, pivot)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def _check_deepspeed_leaves_optimization_to_us(self) -> None:
        """Refuse a DeepSpeed JSON whose optimizer / scheduler would silently replace the requested ones."""
        if not self.is_deepspeed_enabled:
            return
        ds = self.accelerator.state.deepspeed_plugin.hf_ds_config.config
        if self.args.optim == "adafactor" and "optimizer" in ds:
            raise ValueError(
                "optim='adafactor' (hf_ptjf's Adafactor) but the DeepSpeed config declares an `optimizer`, which "
                "would replace it: use a DeepSpeed JSON without an optimizer section (with ZeRO-Offload also "
                '"zero_force_ds_cpu_optimizer": false, e.g. accelerate_configs/ds_zero3_offload_clientopt_bf16.json).'
            )
        if self.args.lr_schedule is not None and "scheduler" in ds:
            raise ValueError(
                f"lr_schedule={self.args.lr_schedule!r} but the DeepSpeed config declares a `scheduler`, which would "
                "replace it: remove the scheduler section from the DeepSpeed JSON."
            )

    # ------------------------------------------------------------------ mixture
    def _resolve_rates(self, rates: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
        if rates is not None:  # computed by the caller (the recipe runner: hf_ptjf.recipe.RecipeConfig.stage_rates)
            if isinstance(rates, Mapping):
                unknown = set(rates) - set(self.task_names)
                if unknown:
                    raise ValueError(f"`rates` names unknown task(s) {sorted(unknown)}; tasks are {self.task_names}.")
                rates = [rates.get(n, 0.0) for n in self.task_names]
            return mixing_rates("static", [1] * len(self.task_names), weights=list(rates))
        a = self.args
        unsized = [n for n, size in zip(self.task_names, self.task_sizes) if size is None]
        if unsized and a.mixture_strategy != "static":
            raise ValueError(f"streamed task(s) {unsized} have no size in examples, which `mixture_strategy="
                             f"{a.mixture_strategy!r}` needs: give each stream its size (TaskStream(size={{'examples': "
                             "N}})), use `mixture_strategy='static'`, or pass `rates=`.")
        if a.mixture_strategy == "static" and a.mixture_weights is None:
            raise ValueError("`mixture_strategy='static'` needs `mixture_weights` (one per task).")
        spec = MixtureSpec(strategy=a.mixture_strategy, tau=a.mixture_tau, max_epochs=a.mixture_max_epochs,
                           weights=a.mixture_weights if a.mixture_strategy == "static" else None)
        return spec.rates(dict(zip(self.task_names, self.task_sizes)), budget=self._budget())

    def _budget(self) -> int:
        """Examples the whole run draws (for epoch caps and UniMax)."""
        if self.args.max_steps > 0:
            return self._samples_per_epoch()
        return self._samples_per_epoch() * math.ceil(self.args.num_train_epochs)

    def _samples_per_epoch(self) -> int:
        if self.args.max_steps > 0:
            return self.args.max_steps * self.args.total_train_batch_size
        return sum(int(n or 0) for n in self.task_sizes)

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        if not self.task_names:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.mixture_seed if self.args.mixture_seed is not None else self.args.seed
        sampler = TemperatureMixtureSampler(self.task_sizes, self._samples_per_epoch(), self.rates, seed=seed)
        if self._pending_sampler_state is not None:
            sampler.load_state_dict(self._pending_sampler_state)
            self._pending_sampler_state = None
        self.mixture_sampler = sampler
        return sampler

    # ------------------------------------------------------------------ streamed mixtures
    def _mixture_stream(self) -> MixtureStream:
        """This rank's :class:`MixtureStream`, continuing a checkpoint's readers when resuming."""
        a = self.args
        pending = self._pending_stream_state or {}
        seed = a.mixture_seed if a.mixture_seed is not None else a.seed
        return MixtureStream(
            self.streams, self.rates, batch_size=a.per_device_train_batch_size, collator=self.data_collator,
            seed=seed, rank=a.process_index, world_size=max(1, a.world_size), num_workers=a.dataloader_num_workers,
            start_batch=pending.get("batches", 0),
            reader_states={int(k.split(".")[1]): v for k, v in pending.get("readers", {}).items()
                           if int(k.split(".")[0]) == a.process_index})

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:  # noqa: D102
        loader = super().get_train_dataloader() if self.streams is None else self._stream_dataloader()
        # A new DataLoader iterator draws its workers' base seed from `loader.generator`, the global torch RNG when
        # None. A resumed run creates its iterator after the Trainer restored the checkpoint's RNG state, so that draw
        # would shift every later dropout mask away from the uninterrupted run's: the loader gets a generator of its own.
        # (accelerate's DataLoaderShard iterates the DataLoader it wraps, `base_dataloader`.)
        getattr(loader, "base_dataloader", loader).generator = torch.Generator().manual_seed(self._seed)
        return loader

    @property
    def _seed(self) -> int:
        return self.args.mixture_seed if self.args.mixture_seed is not None else self.args.seed

    def _stream_dataloader(self) -> torch.utils.data.DataLoader:
        from accelerate.data_loader import prepare_data_loader
        from torch.utils.data import DataLoader

        a = self.args
        self.mixture_stream = self.train_dataset = self._mixture_stream()
        self._pending_stream_state = None
        workers = a.dataloader_num_workers
        loader = DataLoader(self.mixture_stream, batch_size=None, num_workers=workers,
                            pin_memory=a.dataloader_pin_memory, persistent_workers=a.dataloader_persistent_workers
                            and workers > 0, prefetch_factor=a.dataloader_prefetch_factor if workers else None,
                            multiprocessing_context=a.dataloader_multiprocessing_context if workers else None)
        # Each rank reads its own readers: accelerate must not shard (IterableDatasetShard would make every rank
        # read everything) nor dispatch (rank 0 would read for all); it only places batches on the device.
        loader = prepare_data_loader(loader, device=a.device, num_processes=1, process_index=0,
                                     put_on_device=True, dispatch_batches=False)
        self.accelerator._dataloaders.append(loader)
        return loader

    def get_batch_samples(self, epoch_iterator, num_batches, device):  # noqa: D102
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        for batch in batches:  # the batches of one optimizer step: after it, these are the readers' states
            state = batch.pop(STREAM_STATE, None) if isinstance(batch, MutableMapping) else None
            if state is not None:
                self._reader_states[int(state["reader"])] = state
        return batches, num_items

    def _stream_state_at_step(self, step: int) -> dict[str, Any]:
        """Every rank's readers after ``step`` optimizer steps (a collective call), for ``mixture_state.json``."""
        a = self.args
        mine = {f"{a.process_index}.{q}": s["tasks"] for q, s in self._reader_states.items()}
        if dist.is_available() and dist.is_initialized() and a.world_size > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, mine)
            mine = {k: v for part in gathered for k, v in part.items()}
        return {"batches": step * a.gradient_accumulation_steps, "world_size": max(1, a.world_size),
                "num_workers": a.dataloader_num_workers, "batch_size": a.per_device_train_batch_size,
                "seed": self.mixture_stream.seed if self.mixture_stream else None,
                "probabilities": [float(r) for r in self.rates], "shards": shard_identity(self.streams),
                "readers": mine}

    def stream_passes(self) -> dict[str, int]:
        """The pass each streamed task's readers of this rank are in (1 = the first), at the last step."""
        passes: dict[str, int] = {}
        for state in self._reader_states.values():
            for task, reader in state["tasks"].items():
                passes[task] = max(passes.get(task, 0), int(reader["pass"]) + 1)
        return passes

    def _check_stream_resume(self, saved: dict[str, Any], checkpoint: str) -> None:
        a = self.args
        now = {"world_size": max(1, a.world_size), "num_workers": a.dataloader_num_workers,
               "batch_size": a.per_device_train_batch_size}
        changed = [f"{k} {saved.get(k)} -> {v}" for k, v in now.items() if saved.get(k) != v]
        if changed:
            raise ValueError(f"cannot resume the streamed mixture from {checkpoint}: {', '.join(changed)}. Each reader "
                             "of the stream continues its own position, so resume with the same processes, "
                             "dataloader_num_workers and per-device batch size, or start a new output directory.")
        problem = changed_shards(saved, self.streams, checkpoint)
        if problem:
            raise ValueError(problem)
        if not np.allclose(saved.get("probabilities", []), self.rates, rtol=0, atol=1e-12):
            raise ValueError(f"cannot resume from {checkpoint}: the checkpoint's mixing rates {saved['probabilities']} "
                             f"differ from this run's {self.rates.tolist()}. Resume with the same rates, or start a "
                             "new output directory.")

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        for column in (TASK_ID, CHARACTERS):  # keep them through `remove_unused_columns`: counted, then popped
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    # ------------------------------------------------------------------ counting
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        task_id = inputs.pop(TASK_ID, None)
        characters = inputs.pop(CHARACTERS, None)
        counting = task_id is not None and model.training and bool(self.task_names)
        labels = inputs.get("labels")  # the label smoother pops them from `inputs`
        if counting:
            task_id = task_id.detach().to("cpu", torch.long)
            self._count(task_id, "examples", None)
            if labels is not None:  # loss tokens: what the model is scored on
                self._count(task_id, "target_tokens", (self._scored(labels) != -100).sum(dim=-1))
            if characters is not None:  # -1: a row without a count (its task's characters stay unknown)
                self._count(task_id, CHARACTERS, characters.clamp(min=0))
                self._count(task_id, _CARRIED, characters >= 0)
        if self.label_smoother is not None and "labels" in inputs and "decoder_input_ids" not in inputs:
            # label smoothing pops `labels` before forward, so the decoder needs its inputs explicitly
            prepare = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
            config = getattr(self.model, "config", None)
            if prepare is not None:
                inputs["decoder_input_ids"] = prepare(labels=inputs["labels"])
            elif getattr(config, "is_encoder_decoder", False):  # e.g. M2M100 / NLLB, which have no such method
                inputs["decoder_input_ids"] = _shift_right(inputs["labels"], config.pad_token_id,
                                                           config.decoder_start_token_id)
        if not (counting and labels is not None and self.args.log_task_train_loss):
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[1]
        self._add_task_losses(logits, labels, task_id)
        return (loss, outputs) if return_outputs else loss

    def _count(self, task_id: torch.Tensor, unit: str, per_example: torch.Tensor | None) -> None:
        """Add a batch's per-example values (``None``: one each) to this rank's per-task counts of ``unit``."""
        weights = None if per_example is None else per_example.detach().to("cpu", torch.float64)
        self._seen[_SEEN_ROWS.index(unit)] += torch.bincount(task_id, weights=weights, minlength=len(self.task_names)).long()

    def _add_task_losses(self, logits: torch.Tensor, labels: torch.Tensor, task_id: torch.Tensor) -> None:
        """Per-task sums of the per-token training loss (label smoothing as the loss applies it) and token counts.

        Computed without gradients from the logits the loss was computed from, in row chunks so that the extra
        log-softmax stays small for large vocabularies.
        """
        with torch.no_grad():
            if self._causal:  # position t predicts label t + 1: shift the labels, not the (large) logits
                labels = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
            eps = self.args.label_smoothing_factor
            rows = logits.reshape(-1, logits.shape[-1])
            flat = labels.reshape(-1).to(rows.device)
            per_token = torch.zeros(flat.shape[0], dtype=torch.float32, device=rows.device)
            for start in range(0, rows.shape[0], 4096):
                logp = torch.log_softmax(rows[start : start + 4096].float(), dim=-1)
                target = flat[start : start + 4096]
                nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                per_token[start : start + 4096] = (1 - eps) * nll - eps * logp.mean(-1) if eps else nll
            active = (flat != -100).reshape(labels.shape)
            per_example = (per_token.reshape(labels.shape) * active).sum(-1)
            if self._loss_sums.device != per_example.device:  # kept where the logits are: no sync per step
                self._loss_sums = self._loss_sums.to(per_example.device)
                self._loss_tokens = self._loss_tokens.to(per_example.device)
            ids = task_id.to(per_example.device)
            self._loss_sums.index_add_(0, ids, per_example)
            self._loss_tokens.index_add_(0, ids, active.sum(-1).float())

    @property
    def _causal(self) -> bool:
        return not getattr(getattr(self.model, "config", None), "is_encoder_decoder", False)

    def _scored(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels the loss scores: a causal LM predicts token t + 1 at position t, so its first label never is."""
        return labels[:, 1:] if self._causal else labels

    def _task_train_losses(self) -> dict[str, float]:
        """``train_<task>_loss`` over the logging window (summed over ranks), then a new window (a collective)."""
        sums, tokens = self._sum_over_ranks(torch.stack([self._loss_sums, self._loss_tokens])).double()
        self._loss_sums.zero_()
        self._loss_tokens.zero_()
        return {f"train_{name}_loss": round(float(sums[i] / tokens[i]), 4)
                for i, name in enumerate(self.task_names) if tokens[i] > 0}

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:  # noqa: D102
        smoother = self.label_smoother
        if not getattr(self.args, "label_smoothing_in_eval", True):
            self.label_smoother = None  # the model's own loss: plain token-mean cross-entropy
        try:
            return self._evaluate_with_fixed_noise(*args, **kwargs)
        finally:
            self.label_smoother = smoother

    def _evaluate_with_fixed_noise(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        # A collator that draws noise (span corruption) corrupts the held-out data the same way at every
        # evaluation, in every run: eval losses compare across steps, stages and methods, and evaluating does not
        # shift the training noise stream. (Called once per task when eval_dataset is a dict.)
        rng = getattr(self.data_collator, "rng", None)
        if not isinstance(rng, np.random.Generator):
            return super().evaluate(*args, **kwargs)
        self.data_collator.rng = np.random.default_rng(EVAL_NOISE_SEED)
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.data_collator.rng = rng

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):  # noqa: D102
        inputs.pop(TASK_ID, None)
        inputs.pop(CHARACTERS, None)
        # transformers 5's Seq2SeqTrainer fills the model's generation config with defaults (max_length=20) after
        # each generate, so every later batch warns that max_new_tokens and max_length are both set: undo it.
        config = getattr(self.model, "generation_config", None)
        max_length = getattr(config, "max_length", None)
        generating = self.args.predict_with_generate and not prediction_loss_only
        prompt_length = inputs["input_ids"].shape[1] if generating and self._causal else 0
        try:
            loss, tokens, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys,
                                                           **gen_kwargs)
        finally:
            if config is not None:
                config.max_length = max_length
        if prompt_length and tokens is not None:  # a causal LM generates after its (left-padded) prompt
            tokens = tokens[:, prompt_length:]
        return loss, tokens, labels

    def _sum_over_ranks(self, local: torch.Tensor) -> torch.Tensor:
        """``local`` summed over all ranks (a collective call when distributed), on the CPU."""
        if dist.is_available() and dist.is_initialized() and self.args.world_size > 1:
            # gloo and nccl both reduce; nccl needs the tensor on the device
            device = self.args.device if dist.get_backend() == "nccl" else torch.device("cpu")
            local = local.to(device)
            dist.all_reduce(local, op=dist.ReduceOp.SUM)
        return local.cpu()

    def seen_counts(self) -> dict[str, dict[str, int]]:
        """Cumulative per-task counts consumed by all ranks, ``{task: {unit: n}}`` over ``SEEN_UNITS`` (a collective
        call). ``characters`` only for a task every one of whose examples carried a character count."""
        total = self._seen_base + self._sum_over_ranks(self._seen.clone()).numpy()
        out = {}
        for i, name in enumerate(self.task_names):
            counts = {unit: int(total[u, i]) for u, unit in enumerate(SEEN_UNITS)}
            if total[_SEEN_ROWS.index(_CARRIED), i] != counts["examples"]:  # some rows had no character count
                del counts[CHARACTERS]
            out[name] = counts
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D102
        # `log` runs on every rank, so the collective inside `seen_counts` is safe here. Train and
        # eval logs both get the counts (curves of loss vs examples seen need them at eval points).
        mixing = self.mixture_sampler is not None or self.mixture_stream is not None
        if self.task_names and mixing and any(k.endswith("loss") for k in logs):
            if "loss" in logs and self.args.log_task_train_loss:  # a training log: close the loss window
                logs.update(self._task_train_losses())
            for name, seen in self.seen_counts().items():
                logs.update({f"{seen_key(unit)}_{name}": n for unit, n in seen.items()})
            for name, current in self.stream_passes().items():
                logs[f"stream_pass_{name}"] = current
        super().log(logs, start_time)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        if self.task_names:
            counts = self.seen_counts()  # collective: all ranks are here
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            position = ({"stream": self._stream_state_at_step(self.state.global_step)} if self.streams is not None
                        else {"sampler": self._sampler_state_at_step(self.state.global_step)})  # (a collective too)
            if self.args.should_save:
                os.makedirs(folder, exist_ok=True)
                state = {"tasks": self.task_names, **position, "seen": counts}
                atomic_write_text(os.path.join(folder, MIXTURE_STATE_NAME), json.dumps(state, indent=2))
        super()._save_checkpoint(model, trial)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # A tied model (T5's embeddings and head) saves the shared tensor once, so its tied copies are "missing" from
        # every checkpoint; the Trainer would report them as if the checkpoint were broken. Re-tie them and report
        # only keys that are really missing.
        tied = tied_copies(self.model, load_result.missing_keys)
        if tied:
            self.model.tie_weights()
            load_result.missing_keys[:] = [k for k in load_result.missing_keys if k not in tied]
        super()._issue_warnings_after_load(load_result)

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
        if self.streams is not None:
            if "stream" not in state:
                raise ValueError(f"cannot resume from {resume_from_checkpoint}: it was trained on map-style data and "
                                 "this run streams its tasks; use the same data, or a new output_dir.")
            self._check_stream_resume(state["stream"], resume_from_checkpoint)
            self._pending_stream_state = state["stream"]
        elif "sampler" not in state:
            raise ValueError(f"cannot resume from {resume_from_checkpoint}: it streamed its tasks and this run reads "
                             "them map-style; use the same data, or a new output_dir.")
        else:
            self._pending_sampler_state = state["sampler"]
        self._seen_base = _seen_base(state["seen"], self.task_names)
        self._seen.zero_()
        # The sampler itself continues at the saved position (O(1)); the Trainer must not also
        # fast-forward the DataLoader by replaying batches.
        skip = self.args.ignore_data_skip
        self.args.ignore_data_skip = True
        try:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            self.args.ignore_data_skip = skip


def tied_copies(model: Any, missing: Sequence[str]) -> set[str]:
    """The ``missing`` state-dict keys whose parameter is the very tensor of a key that was loaded (tied weights)."""
    owners: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        owners.setdefault(id(tensor), []).append(name)
    gone = set(missing)
    return {name for names in owners.values() if any(n not in gone for n in names) for name in names if name in gone}


def _seen_base(saved: Mapping[str, Mapping[str, int]], tasks: Sequence[str]) -> np.ndarray:
    """A checkpoint's ``seen`` counts as the trainer's base rows (a task saved without characters stays unknown)."""
    base = np.zeros((len(_SEEN_ROWS), len(tasks)), dtype=np.int64)
    for i, name in enumerate(tasks):
        counts = {**saved[name], _CARRIED: saved[name]["examples"] if CHARACTERS in saved[name] else 0}
        base[:, i] = [counts.get(row, 0) for row in _SEEN_ROWS]
    return base


def shard_identity(streams: Sequence[TaskStream] | None) -> dict[str, Any]:
    """Each stream's shards (their names, else their number), as a checkpoint records them: a resume needs the same."""
    return {s.name: [str(n) for n in s.shard_names] if s.shard_names is not None else len(s.shards)
            for s in streams or []}


def changed_shards(saved: Mapping[str, Any], streams: Sequence[TaskStream], checkpoint: str) -> str | None:
    """Why a checkpoint's stream state (``mixture_state.json``'s ``stream``) cannot continue ``streams``, or None."""
    now = shard_identity(streams)
    for task, shards in saved.get("shards", {}).items():
        if task in now and now[task] != shards:
            gone = sorted(set(shards) - set(now[task])) if isinstance(shards, list) else shards
            return (f"cannot resume task `{task}`'s stream from {checkpoint}: its shards changed since the checkpoint "
                    f"(missing or different: {gone}); restore them to resume (the checkpoint is kept), or start a new "
                    "output directory.")
    return None


def _is_streamed(data: Any) -> bool:
    import datasets

    return isinstance(data, (TaskStream, datasets.IterableDataset))


def _examples(stream: TaskStream) -> int | None:
    n = stream.size.get("examples")
    return int(n) if n else None
