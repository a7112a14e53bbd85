"""The recipe runner: data -> tokenizer -> stages -> results.json / report.md.

Each stage is a fresh :class:`~hf_ptjf.trainer.MixtureTrainer`: new optimizer state and LR schedule
(warmup restarts, step counts start at 0), weights from ``init`` (scratch, the previous stage, another
stage, a Hub id at a revision, or a path). A stage's output is saved consolidated (ZeRO-3 gathers the
16-bit weights), optionally pushed to the Hub (the commit sha is recorded and verified), and the next
stage loads it with ``from_pretrained(repo, revision=sha)``. Training arguments are created before the
model so that under ZeRO-3 the weights are partitioned as they load.

Crash safety: a finished stage is recorded atomically (``stage.json`` with its output's sha256 sums) and
skipped on rerun; an interrupted stage resumes from its latest complete checkpoint with the exact sampler
state. A rerun whose config differs from the one recorded in the output directory is refused.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .files import atomic_write_text, folder_sha256
from .recipe import LR_SCHEDULERS, OPTIMIZERS, RecipeConfig, RecipeError, StageSpec

logger = logging.getLogger(__name__)

__all__ = ["RecipeRunner", "StageResult", "run_recipe"]

RESULTS_NAME = "results.json"
REPORT_NAME = "report.md"
STAGE_RECORD = "stage.json"
CONFIG_RECORD = "recipe.resolved.json"

# Defaults for the pass-through training arguments; the recipe's own keys win.
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


@dataclass
class StageResult:
    """What one finished stage did (a row of results.json `stages`)."""

    index: int
    name: str
    steps: int
    wall_time_s: float
    tasks: list[str]
    rates: dict[str, float]
    output_dir: str
    files_sha256: dict[str, str]
    hub_repo: str | None = None
    hub_sha: str | None = None
    init: Any = None
    metrics: dict[str, float] = field(default_factory=dict)
    examples_seen: dict[str, int] = field(default_factory=dict)
    target_tokens_seen: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def _checkpoint_problem(folder: Path) -> tuple[str, str] | None:
    """None if ``folder`` is a complete, readable checkpoint, else ``("incomplete" | "damaged", why)``.

    The Trainer writes ``trainer_state.json`` last (after ``mixture_state.json``, the weights, optimizer,
    scheduler and RNG states), so a folder without a readable one is a save that a crash cut short. A folder
    with one but with a missing or truncated file was damaged afterwards. Cheap structural checks only:
    safetensors headers against the file size, the zip directory of torch files, no full read.
    """
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "incomplete", "it has no readable trainer_state.json: its save was interrupted"
    try:
        json.loads((folder / "mixture_state.json").read_text())
    except (OSError, ValueError):
        return "damaged", "mixture_state.json is missing or unreadable"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError):
            return "damaged", f"{index.name} is unreadable"
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    elif any(folder.glob("global_step*")):  # DeepSpeed without 16-bit weights: its own shards
        shards = []
    else:
        return "damaged", "it holds no model weights (model.safetensors)"
    for name in shards:
        why = _safetensors_problem(folder / name)
        if why:
            return "damaged", why
    for path in sorted([*folder.glob("*.pt"), *folder.glob("*.pth")]):
        try:
            zipfile.ZipFile(path).close()
        except (OSError, zipfile.BadZipFile):
            return "damaged", f"{path.name} is truncated or not a torch file"
    return None


def _safetensors_problem(path: Path) -> str | None:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                return f"{path.name} is truncated"
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return f"{path.name} is missing or has an unreadable header"
    if size != 8 + n + end:
        return f"{path.name} is truncated or damaged ({size} bytes, its header says {8 + n + end})"
    return None


def latest_checkpoint(stage_dir: Path, stage_name: str) -> str | None:
    """The newest complete checkpoint of a stage, to resume from (None: start the stage from its ``init``).

    transformers' ``get_last_checkpoint`` takes the highest step even when a crash cut that save short. An
    interrupted save is skipped with a warning (the resumed run rewrites it when it gets there); a complete
    checkpoint with a damaged file is refused with the fix, and nothing is deleted either way.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if not stage_dir.is_dir():
        return None
    pattern = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")
    found = sorted(
        ((int(m.group(1)), p) for p in stage_dir.iterdir() if p.is_dir() and (m := pattern.fullmatch(p.name))),
        reverse=True,
    )
    for i, (_, folder) in enumerate(found):
        problem = _checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        kind, why = problem
        if kind == "incomplete":
            logger.warning("stage %s: not resuming from %s: %s", stage_name, folder, why)
            continue
        older = next((f for _, f in found[i + 1:] if _checkpoint_problem(f) is None), None)
        previous = f"the previous complete checkpoint {older.name}" if older else "the stage's start"
        raise RecipeError(
            f"stage `{stage_name}`: checkpoint {folder} is damaged ({why}); nothing was changed. Move that folder "
            f"away to resume from {previous}, or rerun with --start-over to discard the whole run."
        )
    return None


class RecipeRunner:
    """Run a :class:`~hf_ptjf.recipe.RecipeConfig` in this process (under ``accelerate launch``)."""

    def __init__(self, config: RecipeConfig, *, start_over: bool = False) -> None:
        self.cfg = config
        self.out = Path(config.output_dir)
        # The process state must be set up the way TrainingArguments does it (CPU / DeepSpeed / gloo
        # flags); a bare PartialState() created first would win as the singleton and misread the launch.
        self.state = self.training_arguments(0, config.stages[0]).distributed_state
        self.start_over = start_over
        self.stages: list[StageResult] = []
        self._outputs: dict[str, dict[str, Any]] = {}  # stage name -> {"path", "repo", "sha"}

    # ------------------------------------------------------------------ entry point
    def run(self) -> dict[str, Any]:
        """Run every stage (skipping recorded ones) and write results.json and report.md."""
        self._claim_output_dir()
        with self._hub_endpoint():
            self._prepare_data()
            for index, stage in enumerate(self.cfg.stages):
                self.stages.append(self._load_record(index, stage) or self._run_stage(index, stage))
                self._write_results()
        results = self._write_results(final=True)
        return results

    # ------------------------------------------------------------------ output dir
    def _claim_output_dir(self) -> None:
        """Record the resolved config; refuse to continue a directory made with a different config."""
        record = self.out / CONFIG_RECORD
        mine = json.dumps(self.cfg.to_dict(), sort_keys=True, default=str)
        if self.state.is_main_process:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                probe = self.out / ".write_test"
                probe.write_text("ok")
                probe.unlink()
            except OSError as e:
                raise RecipeError(
                    f"output_dir `{self.out}` is not writable ({e.strerror}); choose another output_dir=..."
                ) from e
            if record.exists() and json.loads(record.read_text()) != json.loads(mine):
                if not self.start_over:
                    raise RecipeError(
                        f"output_dir `{self.out}` holds a run with a different config; nothing was changed. "
                        "Use a new output_dir=..., or pass --start-over to discard that run."
                    )
                # the old config record goes last: a start-over cut short is still refused without --start-over
                for child in sorted(self.out.iterdir(), key=lambda c: c == record):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            atomic_write_text(record, json.dumps(json.loads(mine), indent=2, sort_keys=True))
        self.state.wait_for_everyone()

    # ------------------------------------------------------------------ hub
    @contextlib.contextmanager
    def _hub_endpoint(self) -> Iterator[None]:
        """With ``hub.mode: local`` and no HF_ENDPOINT, serve the offline Hub from the main process."""
        if self.cfg.hub.mode != "local" or os.environ.get("HF_ENDPOINT"):
            yield
            return
        from accelerate.utils import broadcast_object_list

        from .testing.hub_server import HubServer, use_endpoint

        server = HubServer(self.out / "hub").start() if self.state.is_main_process else None
        url = [server.url if server else None]
        if self.state.num_processes > 1:
            broadcast_object_list(url)
        try:
            with use_endpoint(url[0]):
                yield
        finally:
            self.state.wait_for_everyone()
            if server is not None:
                server.stop()

    def _push(self, stage: StageSpec, folder: Path, result: StageResult) -> None:
        from accelerate.utils import broadcast_object_list

        from . import hub

        prefix = self.cfg.hub.repo_prefix or self.cfg.run_name
        repo = f"{self.cfg.hub.namespace}/{prefix}-{result.index}-{stage.name}"
        h = self.cfg.hub
        sha: list[Any] = [None]
        failure: Exception | None = None
        if self.state.is_main_process:
            try:
                hub.write_model_card(
                    folder, repo_id=repo, base_model=self._base_model(result.index, stage), tasks=result.tasks, rates=result.rates,
                    steps=result.steps, metrics=result.metrics, method=self.cfg.method or "custom",
                    language=self._languages(),
                )
                sha[0] = hub.push_folder(
                    folder, repo, commit_message=f"{self.cfg.run_name}: stage {stage.name} ({result.steps} steps)",
                    max_retries=h.max_retries, private=h.private, timeout=h.timeout,
                )
                hub.verify_revision(repo, sha[0], folder, max_retries=h.max_retries, timeout=h.timeout)
            except Exception as e:  # not confirmed: the stage stays unrecorded and the next one never starts
                failure = e if not isinstance(e, hub.HubError) else hub.HubError(
                    f"stage `{stage.name}` is trained and saved in {folder}, but its push was not confirmed: {e} "
                    "Rerun the same command to push it again (its training is not redone).",
                    repo_id=e.repo_id, endpoint=e.endpoint, status=e.status, attempts=e.attempts,
                )
                sha[0] = {"error": hub.redact(str(failure))}
        if self.state.num_processes > 1:
            broadcast_object_list(sha)  # every rank learns of a failure, instead of waiting for the next stage
        if failure is not None:
            raise failure
        if isinstance(sha[0], dict):
            raise hub.HubError(sha[0]["error"], repo_id=repo, endpoint=hub.current_endpoint())
        result.hub_repo, result.hub_sha = repo, sha[0]

    def _source_stage(self, index: int, stage: StageSpec) -> str | None:
        """The earlier stage whose output stage ``index`` starts from (None: scratch, a Hub id or a path)."""
        if stage.init == "previous":
            return self.cfg.stages[index - 1].name
        return stage.init if isinstance(stage.init, str) and stage.init != "scratch" else None

    def _base_model(self, index: int, stage: StageSpec) -> str | None:
        """What the model card names as the base: the source stage's repo, or the init's Hub id / path."""
        source = self._source_stage(index, stage)
        if source is not None:
            return self._outputs.get(source, {}).get("repo")
        return stage.init.get("hub") or stage.init.get("path") if isinstance(stage.init, dict) else None

    def _languages(self) -> list[str]:
        langs = ["en"]
        for spec in self.specs:
            if spec.lang and spec.lang not in langs:
                langs.append(spec.lang)
        return langs

    # ------------------------------------------------------------------ data
    def _prepare_data(self) -> None:
        from transformers import AutoTokenizer

        from .data import Seq2SeqCollator, SpanCorruptionCollator, TaskSpec, load_tasks, tokenize_tasks, train_tokenizer

        d = self.cfg.data
        try:
            self.specs = [TaskSpec.from_dict(t) for t in self.cfg.tasks]
        except ValueError as e:
            raise RecipeError(f"`tasks`: {e}") from e
        types = {s.type for s in self.specs}
        if len(types) > 1:
            raise RecipeError(f"a recipe trains one kind of task, got {sorted(types)}; split it into two recipes.")
        self.task_type = types.pop()
        with self.state.main_process_first():  # the main process builds the caches, the others reuse them
            corpora = load_tasks(self.specs, cache_dir=d.cache_dir, num_dev=d.num_dev, num_test=d.num_test, seed=d.seed)
            for name, dsd in corpora.items():
                if len(dsd["train"]) == 0:
                    raise RecipeError(
                        f"task `{name}` (in `tasks`) has no training examples after filtering; give it data, relax its "
                        "filters (e.g. `max_length_ratio: null`), or remove it from `tasks`."
                    )
            t = self.cfg.tokenizer
            if t.path:
                tokenizer = AutoTokenizer.from_pretrained(t.path)
            else:
                tokenizer = train_tokenizer(
                    corpora, vocab_size=t.vocab_size, tau=t.tau, max_sentences=t.max_sentences,
                    output_dir=str(self.out / "tokenizer"), seed=d.seed,
                )
            self.tokenized = tokenize_tasks(
                corpora, tokenizer, max_source_length=d.max_source_length, max_target_length=d.max_target_length
            )
        self.corpora, self.tokenizer = corpora, tokenizer
        if self.task_type == "lm":
            self.collator = SpanCorruptionCollator(tokenizer, seed=self.cfg.seed)
        else:
            self.collator = Seq2SeqCollator(tokenizer, label_pad_token_id=-100)

    # ------------------------------------------------------------------ stages
    def _stage_dir(self, index: int, stage: StageSpec) -> Path:
        return self.out / "stages" / f"{index}-{stage.name}"

    def _load_record(self, index: int, stage: StageSpec) -> StageResult | None:
        """A stage recorded as finished (and whose output is intact) is not run again."""
        record = self._stage_dir(index, stage) / STAGE_RECORD
        if not record.exists():
            return None
        result = StageResult(**json.loads(record.read_text()))
        final = Path(result.output_dir)
        if not final.is_dir() or folder_sha256(final) != result.files_sha256:
            raise RecipeError(
                f"stage `{stage.name}` is recorded as finished but its output {final} is missing or changed. "
                "Restore it, or rerun with --start-over."
            )
        logger.info("stage %s already finished (%s); skipping", stage.name, record)
        self._outputs[stage.name] = {"path": str(final), "repo": result.hub_repo, "sha": result.hub_sha}
        return result

    def training_arguments(self, index: int, stage: StageSpec) -> Any:
        """Training arguments of one stage (create them before the model: ZeRO-3 needs that order)."""
        from .trainer import MixtureTrainingArguments

        kw: dict[str, Any] = {**TRAINING_DEFAULTS, **self.cfg.training, **stage.training}
        if "ddp_backend" not in kw and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _cuda_available():
            # Without it, accelerate treats a DeepSpeed launch on CPU as one process per rank
            # ("no backend == no distributed training") while DeepSpeed itself runs distributed.
            kw["ddp_backend"] = "gloo"
        eval_steps = kw.pop("eval_steps", None) or max(1, stage.max_steps // 5)
        mix = stage.mixture
        kw.update(
            output_dir=str(self._stage_dir(index, stage)),
            max_steps=stage.max_steps,
            optim=OPTIMIZERS[stage.optimizer],
            **stage.optimizer_training_args(),  # optimizer_args {beta1: 0.9} -> adafactor_beta1=0.9
            lr_scheduler_type=LR_SCHEDULERS[stage.lr_scheduler],
            seed=self.cfg.seed,
            run_name=f"{self.cfg.run_name}/{stage.name}",
            eval_strategy=kw.get("eval_strategy", "steps"),
            eval_steps=eval_steps,
            save_steps=kw.get("save_steps", eval_steps),
            predict_with_generate=True,  # used by predict() only (evaluate() stays loss-only)
            push_to_hub=False,  # the runner pushes the consolidated stage output itself
            mixture_strategy=mix.strategy,
            mixture_tau=mix.tau,
            mixture_weights=mix.weight_list(mix.tasks or self.cfg.task_names),
            mixture_max_epochs=mix.max_epochs,
        )
        try:
            return MixtureTrainingArguments(**kw)
        except (TypeError, ValueError) as e:
            raise RecipeError(f"stage `{stage.name}` training arguments: {e}") from e

    def _init_model(self, index: int, stage: StageSpec) -> Any:
        from .modeling import ModelArguments, build_model

        init = stage.init
        if init == "scratch":
            try:
                margs = ModelArguments.from_dict(self.cfg.model)
            except ValueError as e:
                raise RecipeError(f"`model`: {e}") from e
            from transformers import set_seed

            set_seed(self.cfg.seed)  # the initial weights are part of the experiment: a rerun draws the same ones
            return build_model(margs, self.tokenizer)
        trust = self.cfg.model.get("trust_remote_code") is True  # remote code only if the recipe opts in
        if isinstance(init, dict) and "hub" in init:
            margs = ModelArguments(name_or_path=init["hub"], revision=init.get("revision"), trust_remote_code=trust)
        elif isinstance(init, dict):
            margs = ModelArguments(name_or_path=init["path"], trust_remote_code=trust)
        else:
            source = self._source_stage(index, stage)
            out = self._outputs[source]
            # load what the Hub holds at the pinned sha when the stage was pushed, else the local output
            margs = ModelArguments(name_or_path=out["repo"], revision=out["sha"]) if out.get("sha") else ModelArguments(
                name_or_path=out["path"]
            )
        if margs.revision is not None:
            from .hub import HubError, snapshot_at

            failure = None
            with self.state.main_process_first():  # one download into the cache; the other ranks reuse it
                try:
                    snapshot_at(margs.name_or_path, margs.revision, max_retries=self.cfg.hub.max_retries,
                                timeout=self.cfg.hub.timeout)
                except HubError as e:  # raised after the barrier, so that no rank waits for this one forever
                    failure = HubError(f"`stages.{index}.init`: {e} Finished stages are kept: rerun the same command then.",
                                       repo_id=e.repo_id, endpoint=e.endpoint, status=e.status, attempts=e.attempts)
            if failure is not None:
                raise failure
        # every rank together: under ZeRO-3 loading partitions the weights collectively
        try:
            return build_model(margs, self.tokenizer)
        except ValueError as e:  # e.g. the tokenizer does not fit the loaded model's embeddings
            raise RecipeError(
                f"`stages.{index}.init` ({margs.name_or_path}): {e} Set `tokenizer.path` to that model's "
                "tokenizer, or initialise the stage from a model trained with this recipe's tokenizer."
            ) from e
        except OSError as e:  # not found, or no safetensors weights (pickled .bin weights are never loaded)
            from .hub import redact

            where = margs.name_or_path + (f" at revision {margs.revision}" if margs.revision else "")
            raise RecipeError(
                f"`stages.{index}.init`: cannot load a model from {where}: {redact(' '.join(str(e).split()))} "
                "Weights load from safetensors only (model.safetensors); check the path or repo id, or re-save "
                "a trusted checkpoint with save_pretrained(), which writes safetensors."
            ) from e

    def _run_stage(self, index: int, stage: StageSpec) -> StageResult:
        from .trainer import MixtureTrainer

        start = time.time()
        stage_dir = self._stage_dir(index, stage)
        args = self.training_arguments(index, stage)
        model = self._init_model(index, stage)
        tasks = stage.mixture.tasks or self.cfg.task_names
        trainer = MixtureTrainer(
            model=model,
            args=args,
            train_datasets={t: self.tokenized[t]["train"] for t in tasks},
            eval_dataset=self._eval_sets(self.cfg.eval.loss_examples),
            data_collator=self.collator,
            processing_class=self.tokenizer,
        )
        resume = latest_checkpoint(stage_dir, stage.name)  # the newest *complete* one (skips a cut-short save)
        if resume:
            logger.info("stage %s: resuming from %s", stage.name, resume)
        trainer.train(resume_from_checkpoint=resume)
        metrics = {k: v for k, v in trainer.evaluate().items() if k.endswith("_loss")}
        if self.cfg.eval.bleu and self.task_type == "translation":
            metrics.update(self._bleu(trainer))
        final = stage_dir / "final"
        trainer.save_model(str(final))  # consolidated under ZeRO-3 (stage3_gather_16bit_weights_on_model_save)
        if self.state.is_main_process:
            self.tokenizer.save_pretrained(str(final))
        self.state.wait_for_everyone()
        seen = trainer.seen_counts()
        result = StageResult(
            index=index, name=stage.name, steps=trainer.state.global_step, wall_time_s=0.0, tasks=tasks,
            rates={t: float(r) for t, r in zip(tasks, trainer.rates)}, output_dir=str(final),
            files_sha256={}, init=stage.init, metrics=metrics,
            examples_seen={t: c["examples"] for t, c in seen.items()},
            target_tokens_seen={t: c["target_tokens"] for t, c in seen.items()},
            history=[h for h in trainer.state.log_history if any(k.endswith("_loss") or k == "loss" for k in h)],
        )
        push = stage.push_to_hub if stage.push_to_hub is not None else self.cfg.hub.mode != "none"
        if push:
            self._push(stage, final, result)
        result.files_sha256 = folder_sha256(final) if self.state.is_main_process else {}
        result.wall_time_s = round(time.time() - start, 2)
        if self.state.is_main_process:
            atomic_write_text(stage_dir / STAGE_RECORD, json.dumps(asdict(result), indent=2, default=str))
        self._outputs[stage.name] = {"path": str(final), "repo": result.hub_repo, "sha": result.hub_sha}
        self._release(trainer)
        return result

    def _eval_sets(self, limit: int | None) -> dict[str, Any]:
        """Every task's held-out split (all tasks, so forgetting of tasks outside the stage shows)."""
        split = self.cfg.eval.split
        out = {}
        for name, dsd in self.tokenized.items():
            ds = dsd[split]
            out[name] = ds.select(range(min(limit, len(ds)))) if limit else ds
        return out

    def _bleu(self, trainer: Any) -> dict[str, float]:
        from .metrics import compute_bleu

        e = self.cfg.eval
        scores = {}
        for name, ds in self._eval_sets(e.bleu_examples).items():
            refs = ds["target"] if "target" in ds.column_names else self.corpora[name][e.split]["target"][: len(ds)]
            out = trainer.predict(ds, metric_key_prefix=f"bleu_{name}", num_beams=e.num_beams, max_new_tokens=e.max_new_tokens)
            # ranks get consecutive batches round-robin and the last ones are padded with repeats to
            # even out; gathered results are in dataset order, so the first len(ds) rows are the answers
            preds = out.predictions[: len(ds)]
            preds[preds < 0] = self.tokenizer.pad_token_id
            hyps = self.tokenizer.batch_decode(preds, skip_special_tokens=True)
            scores[f"eval_{name}_bleu"] = round(float(compute_bleu(hyps, [[r] for r in refs])["score"]), 2)
        return scores

    def _release(self, trainer: Any) -> None:
        """Free the stage and reset process-global accelerate / DeepSpeed state for the next one."""
        from accelerate.state import AcceleratorState, GradientState

        trainer.accelerator.free_memory()
        del trainer
        gc.collect()
        AcceleratorState._reset_state(reset_partial_state=False)  # keep the process group
        GradientState._reset_state()
        try:
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
        except ImportError:
            pass

    # ------------------------------------------------------------------ results
    def _write_results(self, final: bool = False) -> dict[str, Any]:
        results = summarize(self.cfg, self.stages)
        if self.state.is_main_process:
            atomic_write_text(self.out / RESULTS_NAME, json.dumps(results, indent=2, default=str))
            if final:
                atomic_write_text(self.out / REPORT_NAME, render_report(results))
        return results


def summarize(cfg: RecipeConfig, stages: list[StageResult]) -> dict[str, Any]:
    """results.json: per task final/best loss, BLEU, examples/tokens seen; per stage the record."""
    offset, history = 0, []
    for s in stages:
        for h in s.history:
            history.append({**h, "stage": s.name, "step": offset + h.get("step", 0)})
        offset += s.steps
    tasks: dict[str, dict[str, Any]] = {}
    last = stages[-1] if stages else None
    for name in cfg.task_names:
        losses = [h[f"eval_{name}_loss"] for h in history if f"eval_{name}_loss" in h]
        if last:
            losses.append(last.metrics.get(f"eval_{name}_loss"))
        losses = [x for x in losses if x is not None]
        tasks[name] = {
            "final_loss": last.metrics.get(f"eval_{name}_loss") if last else None,
            "best_loss": min(losses) if losses else None,
            "bleu": last.metrics.get(f"eval_{name}_bleu") if last else None,
            "examples_seen": sum(s.examples_seen.get(name, 0) for s in stages),
            "target_tokens_seen": sum(s.target_tokens_seen.get(name, 0) for s in stages),
        }
    return {
        "run_name": cfg.run_name,
        "method": cfg.method,
        "complete": len(stages) == len(cfg.stages),
        "total_steps": offset,
        "tasks": tasks,
        "stages": [asdict(s) for s in stages],
        "history": history,
    }


def render_report(results: dict[str, Any]) -> str:
    """report.md: the results as Markdown tables."""
    lines = [f"# {results['run_name']} ({results['method'] or 'custom stages'})", "", "## Tasks", "",
             "| task | final val loss | best val loss | BLEU | examples seen | target tokens seen |",
             "|---|---|---|---|---|---|"]
    for name, t in results["tasks"].items():
        cells = [_fmt(t[k]) for k in ("final_loss", "best_loss", "bleu", "examples_seen", "target_tokens_seen")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Stages", "", "| # | stage | steps | wall time (s) | tasks (rate) | Hub repo @ sha |", "|---|---|---|---|---|---|"]
    for s in results["stages"]:
        rates = ", ".join(f"{t} ({r:.3f})" for t, r in s["rates"].items())
        hub = f"{s['hub_repo']} @ {s['hub_sha'][:10]}" if s.get("hub_sha") else "local"
        lines.append(f"| {s['index']} | {s['name']} | {s['steps']} | {s['wall_time_s']} | {rates} | {hub} |")
    return "\n".join(lines) + "\n"


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_recipe(config: RecipeConfig, *, start_over: bool = False) -> dict[str, Any]:
    """Run a recipe; returns the results dict (also written to ``output_dir/results.json``)."""
    return RecipeRunner(config, start_over=start_over).run()
