"""The handoff between stages: where a stage's weights come from and where its output goes.

A stage starts from ``init``: scratch (seeded), an earlier stage's output, a Hub id at a revision, or a path.
A finished stage's consolidated output is pushed (model card, push, verify the commit against the local
files) and the next stage loads ``from_pretrained(repo, revision=sha)``: the sha recorded at push time, so
what trains next is exactly what was pushed. With ``hub.mode: local`` and no ``HF_ENDPOINT`` the main
process serves the offline Hub (:class:`hf_ptjf.hub.HubServer`) for the length of the run.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from accelerate.utils import broadcast_object_list
from transformers import set_seed
from transformers.utils import cached_file

from .. import hub
from ..modeling import ModelArguments, build_model, is_causal
from ..recipe import RecipeConfig, RecipeError, StageSpec
from .preflight import check_adapter_base, linear_module_names
from .records import StageResult

__all__ = ["StageHandoff", "offline_hub"]


@contextlib.contextmanager
def offline_hub(cfg: RecipeConfig, root: Path, state: Any) -> Iterator[None]:
    """With ``hub.mode: local`` and no HF_ENDPOINT, serve the offline Hub from the main process."""
    if cfg.hub.mode != "local" or os.environ.get("HF_ENDPOINT"):
        yield
        return
    server = hub.HubServer(root).start() if state.is_main_process else None
    url = [server.url if server else None]
    if state.num_processes > 1:
        broadcast_object_list(url)
    try:
        with hub.use_endpoint(url[0]):
            yield
    finally:
        state.wait_for_everyone()
        if server is not None:
            server.stop()


def _adapter_config(margs: Any) -> dict | None:
    """The ``adapter_config.json`` of a LoRA adapter at ``margs`` (a path, or a repo at its revision), else None."""
    path = cached_file(margs.name_or_path, "adapter_config.json", revision=margs.revision,
                       _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False)
    return json.loads(Path(path).read_text()) if path else None


def new_adapter(model: Any, stage: StageSpec, index: int, base: Any, seed: int) -> Any:
    """``model`` wrapped with the stage's new LoRA adapter, whose config pins its base (name and revision); its
    initial weights are drawn from ``seed``, not from whatever the global RNG holds after the earlier stages (a
    rerun that skips finished stages draws the same adapter as the uninterrupted run)."""
    from peft import get_peft_model  # optional: only runs with LoRA need it

    set_seed(seed)
    config = stage.peft.lora_config("CAUSAL_LM" if is_causal(model) else "SEQ_2_SEQ_LM")
    try:
        wrapped = get_peft_model(model, config, revision=base.revision)
    except ValueError as e:  # (checked before work for the recipe's own model; an `init` model may differ)
        raise RecipeError(f"`stages.{index}.peft.target_modules`: {stage.peft.target_modules!r} match no module of "
                          f"{type(model).__name__} ({' '.join(str(e).split())[:120]}); its linear layers are named "
                          f"{', '.join(linear_module_names(model))}. Or use target_modules: all-linear.") from e
    wrapped.peft_config["default"].base_model_name_or_path = base.name_or_path  # (peft names the loaded model's path)
    return wrapped


def _method_and_reset(method: str, stage: StageSpec) -> str:
    """The method as a model card names it, with the stage's reset when it is not the paper's."""
    return method if stage.reset.is_default else f"{method} (this stage's reset: {stage.reset.describe()})"


class StageHandoff:
    """The outputs of the stages run so far, and how the next stage loads its weights or pushes its own."""

    def __init__(self, cfg: RecipeConfig, state: Any) -> None:
        self.cfg = cfg
        self.state = state
        self.outputs: dict[str, dict[str, Any]] = {}  # stage name -> {"path", "repo", "sha"}

    def remember(self, result: StageResult) -> None:
        self.outputs[result.name] = {"path": result.output_dir, "repo": result.hub_repo, "sha": result.hub_sha}

    def source_stage(self, index: int, stage: StageSpec) -> str | None:
        """The earlier stage whose output stage ``index`` starts from (None: scratch, a Hub id or a path)."""
        if stage.init == "previous":
            return self.cfg.stages[index - 1].name
        return stage.init if isinstance(stage.init, str) and stage.init != "scratch" else None

    def base_model(self, index: int, stage: StageSpec) -> tuple[str | None, str | None]:
        """What the model card names as the base, and the revision it was loaded at (None, None: scratch)."""
        if stage.init == "scratch":
            return None, None
        margs = self._init_source(index, stage)
        return margs.name_or_path, margs.revision

    # ------------------------------------------------------------------ loading
    def load_model(self, index: int, stage: StageSpec, tokenizer: Any, new_tokens: Sequence[str] = ()) -> Any:
        """The stage's initial model: seeded from scratch, or loaded from its ``init`` (pinned revision).

        An ``init`` that is a LoRA adapter loads its base (at the revision its config pins), then the adapter:
        kept trainable with ``peft.continue_adapter``, else merged. A stage with ``peft`` then gets a new adapter.
        ``new_tokens``: language tags the recipe added to a checkpoint's tokenizer (rows are made for them).
        """
        if stage.init == "scratch":
            margs = self.cfg.model  # (parsed and checked when the recipe was read)
            set_seed(self.cfg.seed)  # the initial weights are part of the experiment: a rerun draws the same ones
            return build_model(margs, tokenizer, new_tokens)
        margs = self._init_source(index, stage)
        if margs.revision is not None:
            self._download(margs, index)
        adapter = _adapter_config(margs)
        if adapter is None:
            model = self._build(margs, index, tokenizer, new_tokens)
        else:
            model = self._adapter_on_its_base(margs, adapter, index, stage, tokenizer)
        if stage.peft is not None and not (adapter is not None and stage.peft.continue_adapter):
            model = new_adapter(model, stage, index, margs, self.cfg.seed)
        return model

    def _build(self, margs: Any, index: int, tokenizer: Any, new_tokens: Sequence[str] = ()) -> Any:
        # every rank together: under ZeRO-3 loading partitions the weights collectively
        try:
            return build_model(margs, tokenizer, new_tokens)
        except ValueError as e:  # e.g. the tokenizer does not fit the loaded model's embeddings
            raise RecipeError(
                f"`stages.{index}.init` ({margs.name_or_path}): {e} Set `tokenizer.path` to that model's "
                "tokenizer, or initialise the stage from a model trained with this recipe's tokenizer."
            ) from e
        except OSError as e:  # not found, or no safetensors weights (pickled .bin weights are never loaded)
            where = margs.name_or_path + (f" at revision {margs.revision}" if margs.revision else "")
            raise RecipeError(
                f"`stages.{index}.init`: cannot load a model from {where}: {hub.redact(' '.join(str(e).split()))} "
                "Weights load from safetensors only (model.safetensors); check the path or repo id, or re-save "
                "a trusted checkpoint with save_pretrained(), which writes safetensors."
            ) from e

    def _adapter_on_its_base(self, margs: Any, adapter: dict, index: int, stage: StageSpec, tokenizer: Any) -> Any:
        from peft import PeftModel  # optional: only runs with LoRA need it

        base = ModelArguments(name_or_path=adapter.get("base_model_name_or_path"), revision=adapter.get("revision"),
                              trust_remote_code=self.cfg.model.trust_remote_code)
        where = margs.name_or_path + (f" at {margs.revision}" if margs.revision else "")
        check_adapter_base(adapter, where, f"stages.{index}.init")
        if base.revision is not None:
            self._download(base, index)
        model = self._build(base, index, tokenizer)
        keep = stage.peft is not None and stage.peft.continue_adapter
        model = PeftModel.from_pretrained(model, margs.name_or_path, revision=margs.revision, is_trainable=keep)
        return model if keep else model.merge_and_unload()

    def _init_source(self, index: int, stage: StageSpec) -> Any:
        """ModelArguments naming where a non-scratch stage's weights come from."""
        trust = self.cfg.model.trust_remote_code  # remote code only if the recipe opts in
        init = stage.init
        if isinstance(init, dict) and "hub" in init:
            return ModelArguments(name_or_path=init["hub"], revision=init.get("revision"), trust_remote_code=trust)
        if isinstance(init, dict):
            return ModelArguments(name_or_path=init["path"], trust_remote_code=trust)
        out = self.outputs[self.source_stage(index, stage)]
        # what the Hub holds at the sha pinned when the stage was pushed, else the local output
        if out.get("sha"):
            return ModelArguments(name_or_path=out["repo"], revision=out["sha"])
        return ModelArguments(name_or_path=out["path"])

    def _download(self, margs: Any, index: int) -> None:
        """Download the pinned revision once (main process first); a failure is raised on every rank."""
        failure = None
        with self.state.main_process_first():  # one download into the cache; the other ranks reuse it
            try:
                hub.snapshot_at(margs.name_or_path, margs.revision, max_retries=self.cfg.hub.max_retries,
                                timeout=self.cfg.hub.timeout)
            except hub.HubError as e:  # raised after the barrier, so that no rank waits for this one forever
                failure = hub.HubError(f"`stages.{index}.init`: {e} Finished stages are kept: rerun the same command then.",
                                       repo_id=e.repo_id, endpoint=e.endpoint, status=e.status, attempts=e.attempts)
        if failure is not None:
            raise failure

    # ------------------------------------------------------------------ pushing
    def push(self, stage: StageSpec, folder: Path, result: StageResult, languages: list[str], run_steps: int) -> None:
        """Model card, push, verify the commit against ``folder``; sets ``result.hub_repo`` / ``hub_sha``.

        A push that is not confirmed raises on every rank: the stage stays unrecorded and the next one never starts.
        ``run_steps``: steps of the whole run up to and including this stage (the card gives both).
        """
        h = self.cfg.hub
        repo = f"{h.namespace}/{h.repo_prefix or self.cfg.run_name}-{result.index}-{stage.name}"
        sha: list[Any] = [None]
        failure: Exception | None = None
        if self.state.is_main_process:
            try:
                base, revision = self.base_model(result.index, stage)
                hub.write_model_card(
                    folder, repo_id=repo, base_model=base, base_revision=revision, tasks=result.tasks,
                    rates=result.rates, online=result.online,
                    metrics=hub.metrics_by_task(result.metrics, self.cfg.task_names),
                    method=_method_and_reset(self.cfg.method or "custom", stage), language=languages,
                    steps={f"{stage.name} (this stage)": result.steps, "whole run so far": run_steps,
                           "whole recipe": sum(s.max_steps for s in self.cfg.stages)},
                )
                sha[0] = hub.push_folder(
                    folder, repo, commit_message=f"{self.cfg.run_name}: stage {stage.name} ({result.steps} steps)",
                    max_retries=h.max_retries, private=h.private, timeout=h.timeout,
                )
                hub.verify_revision(repo, sha[0], folder, max_retries=h.max_retries, timeout=h.timeout)
            except Exception as e:
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
