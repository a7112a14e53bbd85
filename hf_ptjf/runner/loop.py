"""The stage loop: the method, one stage at a time.

For each stage: build its training arguments, load its initial weights (pinned revision), give it a NEW
optimizer and LR schedule (the paper's reset; a stage's ``reset:`` may keep or continue them instead,
:mod:`~hf_ptjf.runner.resets`), train, evaluate, save, push, record. Every method of the
paper (ptjf, scalarization, restart, transfer) is a list of such stages (:mod:`hf_ptjf.recipe.methods`).

Around the loop: the run directory and its records (:mod:`~hf_ptjf.runner.records`: a finished stage is
skipped on rerun, an interrupted one resumes from its newest complete checkpoint with the exact sampler
state), the handoff between stages (:mod:`~hf_ptjf.runner.handoff`), evaluation
(:mod:`~hf_ptjf.runner.evaluation`) and results (:mod:`~hf_ptjf.runner.results`).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from accelerate.state import AcceleratorState, GradientState
from transformers.integrations.deepspeed import unset_hf_deepspeed_config
from transformers.trainer import TRAINING_ARGS_NAME

from ..data.prepare import RecipeData, prepare_recipe_data, recipe_tokenizer_cache
from ..modeling import parameter_numel
from ..recipe import RecipeConfig, RecipeError, StageSpec
from ..seen import SEEN_UNITS, seen_key
from ..shards import release_gathered, stage_has_adapter, save_sharded
from ..train import MIXTURE_STATE_NAME, MixtureTrainer, MixtureTrainingArguments, changed_shards
from .evaluation import eval_sets, evaluate_stage
from .handoff import StageHandoff, offline_hub
from .host_memory import return_freed_memory, trim_heap
from .phases import phase
from .preflight import check_before_work
from .ranks import main_process_first
from .records import RunDirectory, StageResult, latest_checkpoint
from .resets import StageResets
from .results import render_report, summarize
from .tensorboard import use_run_tensorboard

logger = logging.getLogger(__name__)

__all__ = ["RecipeRunner", "run_recipe"]

SAMPLES_IN_REPORT = 3  # decoded hypotheses per task kept in results.json / report.md (all are in samples_<task>.jsonl)


class RecipeRunner:
    """Run a :class:`~hf_ptjf.recipe.RecipeConfig` in this process (under ``accelerate launch``)."""

    def __init__(self, config: RecipeConfig, *, start_over: bool = False) -> None:
        self.cfg = config
        self.run_dir = RunDirectory(config.output_dir)
        self.resets = StageResets(config, self.run_dir)  # what each stage takes over from the one before it
        # The process state must be set up the way TrainingArguments does it (CPU / DeepSpeed / gloo
        # flags); a bare PartialState() created first would win as the singleton and misread the launch.
        self.state = self.training_arguments(0, config.stages[0]).distributed_state
        if not _cuda_available():
            return_freed_memory()  # (host memory is the model's memory here: freed tensors go back to the OS)
        # Who writes the run's records and outputs: the main process; with `save_on_each_node` (machines without a
        # shared filesystem) the main process of every machine, so each disk holds the records a rerun needs.
        self.writes = self.state.is_local_main_process if config.training.get("save_on_each_node") \
            else self.state.is_main_process
        self.run_dir.is_main = self.writes
        self.start_over = start_over
        self.handoff = StageHandoff(config, self.state)
        self.stages: list[StageResult] = []
        self.data: RecipeData | None = None
        self.rates: dict[str, dict[str, float]] = {}  # stage name -> task -> sampling rate

    def run(self) -> dict[str, Any]:
        """Run every stage (skipping recorded ones); write results.json after each and report.md at the end."""
        # Everything checkable comes before the first write to (or deletion in) output_dir: the config and the
        # files it names, the run directory's record, then the data and every stage's rates (they need the sizes).
        # A rank that fails here stops every rank, reported once (ranks.main_process_first).
        main_process_first(self.state, self._check_and_prepare)
        with offline_hub(self.cfg, self.run_dir.path / "hub", self.state):
            for index, stage in enumerate(self.cfg.stages):
                result = self.run_dir.finished_stage(index, stage) or self.run_stage(index, stage)
                self.handoff.remember(result)
                self.stages.append(result)
                self.run_dir.write_results(summarize(self.cfg, self.stages))
        results = summarize(self.cfg, self.stages)
        self.run_dir.write_results(results, render_report(results, self.run_dir.write_plots(results)))
        return results

    def _check_and_prepare(self) -> None:
        check_before_work(self.cfg)
        lora = [i for i, s in enumerate(self.cfg.stages) if s.peft is not None]
        if lora and self.state.distributed_type == "DEEPSPEED":  # (a str enum)
            raise RecipeError(f"`stages.{lora[0]}.peft`: LoRA stages do not run under DeepSpeed in hf_ptjf yet (the "
                              "adapter save and merge are not gathered from ZeRO-3 partitions); launch them with DDP "
                              "(e.g. accelerate_configs/cpu_ddp2.yaml, or a multi-GPU config without DeepSpeed).")
        self.run_dir.check_claim(self.cfg.to_dict(), start_over=self.start_over)
        tokenizer_dir = recipe_tokenizer_cache(self.cfg)
        self.data = prepare_recipe_data(self.cfg, tokenizer_dir)
        self.rates = self.resets.rates = self._every_stages_rates()
        self.resets.check_final_states()
        self._check_stream_checkpoints()
        self.run_dir.claim(self.cfg.to_dict(), start_over=self.start_over)  # main process only: the first write
        if not self.cfg.tokenizer.path:
            self.run_dir.keep_tokenizer(tokenizer_dir)

    def _check_stream_checkpoints(self) -> None:
        """A crashed stage continues its streams where its newest checkpoint left them: their shards must be the
        same (checked before anything is written: a missing shard is one line and the run directory is untouched)."""
        if not self.data.streams or self.start_over:
            return
        for index, stage in enumerate(self.cfg.stages):
            checkpoint = latest_checkpoint(self.run_dir.stage_dir(index, stage), stage.name)
            state = Path(checkpoint) / MIXTURE_STATE_NAME if checkpoint else None
            if state is None or not state.is_file() or self.run_dir.finished_stage(index, stage):
                continue
            saved = json.loads(state.read_text()).get("stream")
            streams = [self.data.streams[t] for t in self.cfg.stage_tasks(stage) if t in self.data.streams]
            problem = changed_shards(saved or {}, streams, checkpoint)
            if problem:
                raise RecipeError(f"stage `{stage.name}`: {problem}")

    def run_stage(self, index: int, stage: StageSpec) -> StageResult:
        """One stage: arguments, init weights, a NEW optimizer and LR schedule, train, evaluate, save, push, record."""
        start = time.time()
        stage_dir = self.run_dir.stage_dir(index, stage)
        # 1. Training arguments first: under ZeRO-3 the weights are then partitioned as they load.
        args = self.training_arguments(index, stage)
        # 2. The initial weights: scratch (seeded), an earlier stage at its pinned Hub revision, a Hub id or a path.
        with phase("load", stage.name):
            model = self._init_model(index, stage)
        parameters, trainable = _parameter_counts(model)
        # 3. The stage's mixture, at the rates computed for it before the first stage trained (an online strategy's
        #    first rates, which it then changes while training).
        tasks = self.cfg.stage_tasks(stage)
        steps_before = sum(s.steps for s in self.stages)
        trainer = MixtureTrainer(
            model=model, args=args, rates=self.rates[stage.name], online=stage.mixture.online_strategy(),
            train_datasets={t: self.data.train_data(t) for t in tasks},
            eval_dataset=eval_sets(self.data, self.cfg.eval.split, self.cfg.eval.loss_examples),
            data_collator=self.data.collator, processing_class=self.data.tokenizer,
        )
        start_step = self.resets.start_step(index)  # (> 0: the stage continues the previous one's training)
        use_run_tensorboard(trainer, self.run_dir.path / "tensorboard", step_offset=steps_before - start_step)
        # 4. The paper's reset: a NEW optimizer (empty state) and LR schedule (warmup restarts at step 0). Only
        #    the weights carry over from `init`: new tasks learn slowly under a decayed LR and stale moments.
        #    A crash resume restores this stage's own optimizer state from its checkpoint, never an earlier stage's.
        #    (A stage's `reset:` may keep the optimizer and continue or anneal the schedule instead: resets.py.)
        trainer.create_optimizer()
        resume = self.resets.prepare(trainer, index, stage)
        # 5. Train (from this stage's newest complete checkpoint, if a crash interrupted it), evaluate, save.
        with phase("train", stage.name):
            trainer.train(resume_from_checkpoint=resume)
        with phase("evaluate", stage.name):
            metrics, samples = evaluate_stage(trainer, self.data, self.cfg.eval)
        self.run_dir.write_samples(index, stage, samples)
        with phase("save", stage.name):
            final = self._save(trainer, stage_dir / "final", merge=stage.peft is not None and stage.peft.merge)
        steps, history, seen = self.resets.own_part(
            index, trainer.state.global_step, trainer.state.log_history, trainer.seen_counts(), self.stages)
        result = StageResult(
            index=index, name=stage.name, steps=steps, wall_time_s=0.0, tasks=tasks,
            rates={t: float(r) for t, r in zip(tasks, trainer.rates)}, output_dir=str(final),
            files_sha256={}, init=stage.init, metrics=metrics,
            **{seen_key(unit): {t: c[unit] for t, c in seen.items() if unit in c} for unit in SEEN_UNITS},
            history=[h for h in history if any(k.endswith("_loss") or k == "loss" for k in h)],
            samples={t: report_samples(rows) for t, rows in samples.items()},
            parameters=parameters, trainable_parameters=trainable,
            adapter=stage.peft is not None and not stage.peft.merge,
            online=({"strategy": stage.mixture.strategy, **trainer.online_mixer.summary(trainer.state.global_step)}
                    if trainer.online_mixer else None),
        )
        # 6. Push (the next stage loads exactly this commit), then record the stage as finished.
        if stage.push_to_hub if stage.push_to_hub is not None else self.cfg.hub.mode != "none":
            with phase("push", stage.name):
                self.handoff.push(stage, final, result, self._languages(), run_steps=steps_before + result.steps)
        result.wall_time_s = round(time.time() - start, 2)
        self.run_dir.record_stage(stage, result)
        _release(trainer)
        return result

    def _every_stages_rates(self) -> dict[str, dict[str, float]]:
        """Every stage's rates, computed once, before the first stage trains: a stage that cannot mix its tasks
        (an empty task, a UniMax budget) fails now, not after an hour of pre-training."""
        rates = {}
        for index, stage in enumerate(self.cfg.stages):
            try:
                rates[stage.name] = self.cfg.stage_rates(stage, self.data.sizes, self.state.num_processes)
            except ValueError as e:
                raise RecipeError(f"`stages.{index}.mixture` (stage `{stage.name}`): {e}") from e
        return rates

    def training_arguments(self, index: int, stage: StageSpec) -> Any:
        """Training arguments of one stage (create them before the model: ZeRO-3 needs that order)."""
        kw: dict[str, Any] = self.cfg.training_for(stage)
        if "ddp_backend" not in kw and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _cuda_available():
            # Without it, accelerate treats a DeepSpeed launch on CPU as one process per rank
            # ("no backend == no distributed training") while DeepSpeed itself runs distributed.
            kw["ddp_backend"] = "gloo"
        if not _cuda_available():
            kw.setdefault("dataloader_pin_memory", False)  # pinning needs an accelerator; on CPU it only warns
        eval_steps = kw.pop("eval_steps", None) or max(1, stage.max_steps // 5)
        kw.update(
            output_dir=str(self.run_dir.stage_dir(index, stage)),
            max_steps=stage.max_steps,
            **stage.optimization_arguments(),  # optim, lr_scheduler_type and the optimizer's options, mapped once
            seed=self.cfg.seed,
            run_name=f"{self.cfg.run_name}/{stage.name}",
            eval_strategy=kw.get("eval_strategy", "steps"),
            eval_steps=eval_steps,
            save_steps=kw.get("save_steps", eval_steps),
            predict_with_generate=True,  # used by predict() only (evaluate() stays loss-only)
            push_to_hub=False,  # the runner pushes the consolidated stage output itself
        )
        self.resets.adjust_arguments(index, kw)  # (what the stage's reset and the next stage's need)
        try:
            return MixtureTrainingArguments(**kw)
        except (TypeError, ValueError) as e:
            raise RecipeError(f"stage `{stage.name}` training arguments: {e}") from e

    def _init_model(self, index: int, stage: StageSpec) -> Any:
        return self.handoff.load_model(index, stage, self.data.tokenizer, self.data.added_tokens)

    def _save(self, trainer: Any, final: Path, merge: bool = False) -> Path:
        """The stage output + tokenizer: safetensors shards of at most ``max_shard_size``; under ZeRO-3 gathered one
        parameter at a time and written one shard at a time (:func:`hf_ptjf.shards.save_sharded`), never the whole
        model on one rank. A LoRA stage saves its adapter (``adapter_config.json`` names the base), or with
        ``merge`` merged weights. (On every machine with save_on_each_node, as the Trainer does.)"""
        model = trainer.accelerator.unwrap_model(trainer.model)
        if merge:
            if self.writes:
                model.merge_and_unload().save_pretrained(str(final), max_shard_size=self.cfg.max_shard_size)
        elif self.state.distributed_type == "DEEPSPEED":  # (a str enum)
            release_gathered(trainer.model_wrapped)  # generate() may leave prefetched parameters in flight
            save_sharded(model, final, max_shard_size=self.cfg.max_shard_size, is_writer=self.writes)
        elif stage_has_adapter(model):
            trainer.save_model(str(final))
        elif self.writes:
            model.save_pretrained(str(final), max_shard_size=self.cfg.max_shard_size)
        if self.writes:
            self.data.tokenizer.save_pretrained(str(final))
            torch.save(trainer.args, final / TRAINING_ARGS_NAME)  # (as Trainer.save_model; never pushed)
        self.state.wait_for_everyone()
        return final

    def _languages(self) -> list[str]:
        langs = ["en"]
        for spec in self.data.specs:
            if spec.lang and spec.lang not in langs:
                langs.append(spec.lang)
        return langs


def report_samples(rows: list[dict[str, Any]], n: int = SAMPLES_IN_REPORT) -> list[dict[str, Any]]:
    """The first ``n`` hypotheses of a task for results.json / report.md, one of them off-target when any is: a model
    answering some prompts in the wrong language should show it in the report, not only in samples_<task>.jsonl."""
    kept = list(rows[:n])
    wrong = next((row for row in rows if row.get("off_target")), None)
    if kept and wrong is not None and not any(row.get("off_target") for row in kept):
        kept[-1] = wrong
    return kept


def _parameter_counts(model: Any) -> tuple[int, int]:
    """(all parameters, trainable ones), counted once each; ZeRO-3 partitions by their full size."""
    params = list(model.parameters())
    return sum(map(parameter_numel, params)), sum(parameter_numel(p) for p in params if p.requires_grad)


def _release(trainer: Any) -> None:
    """Free the stage and reset process-global accelerate / DeepSpeed state for the next one."""
    deepspeed = trainer.is_deepspeed_enabled
    trainer.accelerator.free_memory()
    del trainer
    if deepspeed:
        _forget_zero3_modules()
    gc.collect()
    AcceleratorState._reset_state(reset_partial_state=False)  # keep the process group
    GradientState._reset_state()
    unset_hf_deepspeed_config()
    trim_heap()  # (the stage's small blocks, freed above, back to the OS)


def _forget_zero3_modules() -> None:
    """Drop what DeepSpeed (0.19) keeps of a finished stage in process globals, which keeps its model alive and,
    through it, its ZeRO-3 optimizer (fp32 partitions, gradients and moments: 5 x 4P/n bytes per process): the
    stack of modules in a forward pass (``parameter_offload.FWD_MODULE_STACK``, the model stays on it) and the
    ``lru_cache`` of ``PartitionedParameterCoordinator.__params_to_release`` (keyed by the coordinator and the
    modules). Without this every finished stage stayed in memory until the process ended (measured: stage 2 of the
    CI-sized rehearsal started 800 MiB up per rank; docs/scale.md)."""
    from deepspeed.runtime.zero import parameter_offload  # optional: only DeepSpeed runs get here
    from deepspeed.runtime.zero.partitioned_param_coordinator import PartitionedParameterCoordinator as Coordinator

    parameter_offload.FWD_MODULE_STACK.clear()
    method = getattr(Coordinator, "_PartitionedParameterCoordinator__params_to_release", None)
    for candidate in [method, *(c.cell_contents for c in getattr(method, "__closure__", None) or ())]:
        if callable(getattr(candidate, "cache_clear", None)):  # (under DeepSpeed's nvtx wrapper)
            candidate.cache_clear()


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def run_recipe(config: RecipeConfig, *, start_over: bool = False) -> dict[str, Any]:
    """Run a recipe; returns the results dict (also written to ``output_dir/results.json``)."""
    return RecipeRunner(config, start_over=start_over).run()
