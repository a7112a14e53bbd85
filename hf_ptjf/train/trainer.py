"""`MixtureTrainer`: a `Seq2SeqTrainer` that trains an encoder-decoder or a decoder-only model on a mixture of
named tasks.

It overrides hooks only (sampler and DataLoader, signature columns, loss, logging, checkpointing), never the loop,
and delegates: the rates are a :class:`~hf_ptjf.mixture.Mixture`'s (from ``rates=`` or the ``mixture_*`` arguments),
the data is a :class:`~hf_ptjf.train.data.MixtureData` (map-style or streamed, one interface), and what each task
consumed and its training loss are a :class:`~hf_ptjf.train.meter.TaskMeter`'s:

* per-task examples, target tokens and characters consumed are summed across ranks at each log and logged
  cumulatively as ``examples_seen_<task>`` / ``target_tokens_seen_<task>`` / ``characters_seen_<task>``
  (:mod:`hf_ptjf.seen`), the training loss per task as ``train_<task>_loss``;
* each checkpoint holds ``mixture_state.json`` (the data's position + the counts); resuming restores it so the
  resumed run consumes exactly the batches of the uninterrupted one, in O(1) (no batch replay), and draws the same
  dropout masks (the DataLoader has a generator of its own);
* evaluation per task comes from passing ``eval_dataset`` as a dict (logged as ``eval_<task>_loss``);
* ``optim="adafactor"`` is :class:`hf_ptjf.optim.Adafactor` (options in ``optimizer_args``) and ``lr_scheduler_type``
  takes hf_ptjf's LR schedules too, also as a
  DeepSpeed ZeRO client optimizer / scheduler (a DeepSpeed JSON declaring its own is refused).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from transformers import Seq2SeqTrainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..files import atomic_write_text
from ..mixture import Mixture, OnlineStrategy
from ..optim import (Adafactor, ScheduleHandoff, anneal_schedule, fast_forward, get_lr_schedule,
                     register_zero3_segments)
from ..seen import CHARACTERS, seen_key
from .arguments import MixtureTrainingArguments, check_deepspeed_config
from .data import TASK_ID, MixtureData, mixture_data
from .meter import TaskMeter
from .online import OnlineMixer

__all__ = ["MIXTURE_STATE_NAME", "MixtureTrainer", "tied_copies"]

MIXTURE_STATE_NAME = "mixture_state.json"
EVAL_NOISE_SEED = 0  # the noise of a random collator (span corruption) during evaluation, the same in every run


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
            (``mixture_strategy`` and its parameters, as a :class:`hf_ptjf.mixture.Mixture`) and the task sizes.
        online: an online strategy (e.g. :class:`hf_ptjf.mixture.ODM`, or a recipe mixture's ``online_strategy()``)
            that changes the rates while training, starting from ``rates`` (:mod:`hf_ptjf.train.online`);
            ``mixture_strategy="odm"`` gives one with its defaults.
        Everything else is passed to :class:`transformers.Seq2SeqTrainer` (``eval_dataset`` may be a
        dict of per-task datasets, evaluated and logged per task).
    """

    def __init__(self, model: Any = None, args: MixtureTrainingArguments | None = None,
                 train_datasets: Mapping[str, Any] | None = None,
                 rates: Mapping[str, float] | Sequence[float] | None = None, online: OnlineStrategy | None = None,
                 **kwargs: Any) -> None:
        if args is None:
            raise ValueError("MixtureTrainer needs `args` (a MixtureTrainingArguments).")
        if "train_dataset" in kwargs:
            raise ValueError("pass the tasks as `train_datasets={name: dataset}`, not `train_dataset`.")
        self.mixture_data: MixtureData | None = mixture_data(train_datasets, args.mixing_seed) if train_datasets else None
        self.task_names: list[str] = self.mixture_data.task_names if self.mixture_data else []
        if self.mixture_data:
            self.mixture_data.check(args)
            mixture = Mixture.fixed(rates, self.task_names) if rates is not None else Mixture.from_training_args(args)
            self.rates = self._resolve_rates(mixture, args)
            online = online or mixture.online_strategy()
        super().__init__(model=model, args=args, **kwargs)
        # transformers 5.x: T5 advertises loss kwargs, so the Trainer would pass `num_items_in_batch`
        # and skip its own GA scaling, mis-scaling the loss across processes / accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.meter = TaskMeter(self.task_names, args.world_size, args.device)
        self.online_mixer = (OnlineMixer(online, self.rates, self.mixture_data, self.meter, args)
                             if online and self.mixture_data else None)
        if self.online_mixer:
            self.add_callback(self.online_mixer)
        if self.mixture_data:
            self.train_dataset = self.mixture_data.train_dataset(args, self.rates, self.data_collator)
        if self.is_deepspeed_enabled:
            check_deepspeed_config(args, self.accelerator.state.deepspeed_plugin.hf_ds_config.config)

    # ------------------------------------------------------------------ the mixture
    def _resolve_rates(self, mixture: Mixture, args: Any) -> np.ndarray:
        sizes = self.mixture_data.task_sizes
        unsized = [n for n, size in zip(self.task_names, sizes) if size is None]
        if unsized and mixture.uses_sizes:
            raise ValueError(f"streamed task(s) {unsized} have no size in examples, which `mixture_strategy="
                             f"{mixture.strategy!r}` needs: give each stream its size (TaskStream(size={{'examples': "
                             "N}})), use `mixture_strategy='static'`, or pass `rates=`.")
        examples = {n: float(s or 1) for n, s in zip(self.task_names, sizes)}
        return mixture.rates(examples, budget=self._budget(args))

    def _budget(self, args: Any) -> int:
        """Examples the whole run draws (for epoch caps and UniMax)."""
        epochs = 1 if args.max_steps > 0 else math.ceil(args.num_train_epochs)
        return self._samples_per_epoch(args) * epochs

    def _samples_per_epoch(self, args: Any) -> int:
        if args.max_steps > 0:
            return args.max_steps * args.total_train_batch_size
        return sum(int(n or 0) for n in self.mixture_data.task_sizes)

    @property
    def task_sizes(self) -> list[int | None]:
        """Each task's size in examples (``None``: a stream of unknown size)."""
        return self.mixture_data.task_sizes if self.mixture_data else []

    @property
    def mixture_sampler(self) -> Any:
        """The map-style data's sampler of the current training (``None`` for a stream)."""
        return self.mixture_data.current if self.mixture_data and self.mixture_data.kind == "sampler" else None

    @property
    def mixture_stream(self) -> Any:
        """The streamed data's :class:`~hf_ptjf.mixture.stream.MixtureStream` (``None`` for map-style data)."""
        return self.mixture_data.current if self.mixture_data and self.mixture_data.kind == "stream" else None

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        if not self.mixture_data:
            return super()._get_train_sampler(train_dataset)
        return self.mixture_data.sampler(self.rates, self._samples_per_epoch(self.args))

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:  # noqa: D102
        loader = self.mixture_data.dataloader(self.args, self.rates, self.data_collator) if self.mixture_data else None
        if loader is None:
            loader = super().get_train_dataloader()
        else:
            self.train_dataset = loader.dataset
            self.accelerator._dataloaders.append(loader)  # freed with the others (accelerator.free_memory)
        # A new DataLoader iterator draws its workers' base seed from `loader.generator`, the global torch RNG when
        # None. A resumed run creates its iterator after the Trainer restored the checkpoint's RNG state, so that draw
        # would shift every later dropout mask away from the uninterrupted run's: the loader gets a generator of its own.
        # (accelerate's DataLoaderShard iterates the DataLoader it wraps, `base_dataloader`.)
        getattr(loader, "base_dataloader", loader).generator = torch.Generator().manual_seed(self.args.mixing_seed)
        return loader

    def get_batch_samples(self, epoch_iterator, num_batches, device):  # noqa: D102
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.mixture_data:
            self.mixture_data.consumed(batches)
        return batches, num_items

    def seen_counts(self) -> dict[str, dict[str, int]]:
        """Cumulative per-task counts consumed by all ranks, ``{task: {unit: n}}`` (a collective call)."""
        return self.meter.seen()

    def stream_passes(self) -> dict[str, int]:
        """The pass each streamed task's readers of this rank are in (1 = the first), at the last step."""
        return self.mixture_data.passes() if self.mixture_data else {}

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        for column in (TASK_ID, CHARACTERS):  # keep them through `remove_unused_columns`: counted, then popped
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    # ------------------------------------------------------------------ counting and the loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        task_id = inputs.pop(TASK_ID, None)
        characters = inputs.pop(CHARACTERS, None)
        counting = task_id is not None and model.training and bool(self.task_names)
        labels = inputs.get("labels")  # the label smoother pops them from `inputs`
        if counting:
            task_id = task_id.detach().to("cpu", torch.long)
            self.meter.count_batch(task_id, None if labels is None else self._scored(labels), characters)
        self._add_decoder_inputs(inputs)
        if not (counting and labels is not None and (self.args.log_task_train_loss or self.online_mixer)):
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[1]
        self.meter.add_losses(logits, labels, task_id, causal=self._causal,
                              label_smoothing=self.args.label_smoothing_factor)
        return (loss, outputs) if return_outputs else loss

    def _add_decoder_inputs(self, inputs: dict[str, Any]) -> None:
        """Label smoothing pops `labels` before forward, so an encoder-decoder needs its decoder inputs explicitly."""
        if self.label_smoother is None or "labels" not in inputs or "decoder_input_ids" in inputs:
            return
        prepare = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
        config = getattr(self.model, "config", None)
        if prepare is not None:
            inputs["decoder_input_ids"] = prepare(labels=inputs["labels"])
        elif getattr(config, "is_encoder_decoder", False):  # e.g. M2M100 / NLLB, which have no such method
            inputs["decoder_input_ids"] = _shift_right(inputs["labels"], config.pad_token_id,
                                                       config.decoder_start_token_id)

    @property
    def _causal(self) -> bool:
        return not getattr(getattr(self.model, "config", None), "is_encoder_decoder", False)

    def _scored(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels the loss scores: a causal LM predicts token t + 1 at position t, so its first label never is."""
        return labels[:, 1:] if self._causal else labels

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

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D102
        # `log` runs on every rank, so the collectives of the meter are safe here. Train and eval logs both get the
        # counts (curves of loss vs examples seen need them at eval points).
        if self.mixture_data and self.mixture_data.current is not None and any(k.endswith("loss") for k in logs):
            if "loss" in logs and self.args.log_task_train_loss:  # a training log: close the loss window
                logs.update(self.meter.window_losses())
            if "loss" in logs and self.online_mixer:
                logs.update(self.online_mixer.rate_logs(self.state.global_step))
            for name, seen in self.seen_counts().items():
                logs.update({f"{seen_key(unit)}_{name}": n for unit, n in seen.items()})
            for name, current in self.stream_passes().items():
                logs[f"stream_pass_{name}"] = current
        super().log(logs, start_time)

    # ------------------------------------------------------------------ optimizer and LR schedule
    @staticmethod
    def get_optimizer_cls_and_kwargs(args: Any, model: Any = None) -> tuple[Any, dict[str, Any]]:
        """``optim="adafactor"`` is hf_ptjf's :class:`~hf_ptjf.optim.Adafactor` (``optimizer_args``, LR from
        ``learning_rate`` and the scheduler); every other ``optim`` is the Trainer's. ``create_optimizer`` calls this,
        also under DeepSpeed when its JSON declares no optimizer (a ZeRO client optimizer)."""
        if args.optim == "adafactor" and isinstance(args, MixtureTrainingArguments):
            return Adafactor, {"lr": args.learning_rate, **args.optimizer_kwargs()}
        return Seq2SeqTrainer.get_optimizer_cls_and_kwargs(args, model)

    # Where the schedule starts when a stage's `reset.lr_schedule` is not fresh (hf_ptjf.runner.resets sets it before
    # training; None: the stage's own schedule from update 0).
    schedule_handoff: ScheduleHandoff | None = None

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):  # noqa: D102
        # hf_ptjf's schedules (hf_ptjf.optim) by their `lr_scheduler_type`; DeepSpeed calls this too when its JSON has
        # no scheduler (with its own optimizer as `optimizer` when the JSON declares one).
        if self.is_deepspeed_enabled:  # called after accelerator.prepare: the ZeRO-3 partitions exist now
            register_zero3_segments(getattr(self.optimizer, "optimizer", None))
        if self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        handoff = self.schedule_handoff or ScheduleHandoff()
        if handoff.anneal_from is not None:
            self.lr_scheduler = anneal_schedule(optimizer or self.optimizer, handoff.anneal_from, num_training_steps)
        elif self.args.hf_ptjf_lr_schedule is None:
            super().create_scheduler(handoff.horizon or num_training_steps, optimizer)
        else:
            pivot = self.args.lr_schedule_pivot(handoff.horizon or num_training_steps)
            self.lr_scheduler = get_lr_schedule(self.args.hf_ptjf_lr_schedule, optimizer or self.optimizer, pivot)
        if handoff.start:
            fast_forward(self.lr_scheduler, handoff.start)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        if self.mixture_data:
            counts = self.seen_counts()  # collective: all ranks are here
            step = self.state.global_step
            position = self.mixture_data.state_at_step(step, self.args, self.rates)  # (a collective for a stream)
            if self.args.should_save:
                folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{step}")
                os.makedirs(folder, exist_ok=True)
                state = {"tasks": self.task_names, self.mixture_data.kind: position, "seen": counts,
                         **({"online": self.online_mixer.state_dict()} if self.online_mixer else {})}
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

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):  # noqa: D102
        if isinstance(resume_from_checkpoint, bool) and resume_from_checkpoint:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint to resume from in output_dir={self.args.output_dir!r}.")
        state_file = os.path.join(resume_from_checkpoint, MIXTURE_STATE_NAME) if resume_from_checkpoint else None
        if not (state_file and os.path.isfile(state_file) and self.mixture_data):
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        with open(state_file) as f:
            state = json.load(f)
        if state["tasks"] != self.task_names:
            raise ValueError(
                f"cannot resume from {resume_from_checkpoint}: it was trained on tasks {state['tasks']} but this "
                f"run has {self.task_names}. Use the same tasks, or a new output_dir."
            )
        self.mixture_data.resume(state, resume_from_checkpoint, self.args, self.rates)
        self.meter.restore(state["seen"])
        if self.online_mixer:
            if "online" not in state:
                raise ValueError(f"cannot resume from {resume_from_checkpoint}: it was trained at fixed rates and this "
                                 "run mixes online; use the same mixture, or a new output_dir.")
            self.online_mixer.load_state_dict(state["online"])
        # The data itself continues at the saved position (O(1)); the Trainer must not also fast-forward the
        # DataLoader by replaying batches.
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
