"""Checks that need the files a recipe names and the machine, run before the run directory is touched.

:func:`hf_ptjf.recipe.load_recipe` already checked the config itself (keys, types, ranges, rates); what is
left needs the filesystem: a tokenizer path, initial weights, data files, the data cache. A typo there must
stop the run before ``--start-over`` deletes anything and before stage 1 trains for an hour.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from safetensors import safe_open
from torch import nn
from transformers import AutoConfig

from .. import hub
from ..checks import did_you_mean
from ..modeling import build_config, build_meta_model, count_parameters, is_causal
from ..recipe import RecipeConfig, RecipeError
from .resets import check_resets

__all__ = ["check_adapter_base", "check_before_work", "linear_module_names"]

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")


def _local_or_hub(value: str, field: str, what: str) -> None:
    if Path(value).expanduser().exists():
        return
    if _HUB_ID.fullmatch(value) and not value.startswith(".") and not _offline():

        # a bounded look instead of the client's retries (about a minute) before an OSError
        why = hub.unreachable(timeout=5.0)
        if why:
            raise RecipeError(f"`{field}`: {value!r} is not a local path, and the Hub at {hub.current_endpoint()} "
                              f"does not answer ({why}); give {what}.")
        if not hub.repo_exists(value):
            raise RecipeError(f"`{field}`: {value!r} is neither a local path nor a repo on the Hub at "
                              f"{hub.current_endpoint()}; give {what}.")
        return
    raise RecipeError(f"`{field}`: {value!r} does not exist{' (and the Hub is offline)' if _HUB_ID.fullmatch(value) else ''}; "
                      f"give {what}.")


def check_adapter_base(adapter: dict, where: str, field: str) -> None:
    """Refuse a LoRA adapter whose base (``adapter_config.json``'s ``base_model_name_or_path``) is gone: a local
    path that no longer exists (a Hub repo is checked when it downloads)."""
    name = adapter.get("base_model_name_or_path") or ""
    if not name or (adapter.get("revision") is None and not Path(name).exists() and not _HUB_ID.fullmatch(name)):
        raise RecipeError(
            f"`{field}`: {where} is a LoRA adapter whose base model {name!r} cannot be found; restore that base "
            "(its path or Hub repo), or start the stage from merged weights (`peft.merge: true` on the stage that "
            "trained the adapter).")


BYTES_PER_PARAMETER = 16  # a checkpoint: fp32 weights + two Adam moments, plus the stage's final weights


def _stored_parameters(folder: Path) -> int:
    """Parameters in a local checkpoint's safetensors files (their headers only); 0 when there are none."""

    total = 0
    for file in folder.glob("*.safetensors") if folder.is_dir() else []:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                n = 1
                for dim in f.get_slice(key).get_shape():
                    n *= dim
                total += n
    return total


def _free_space(cfg: RecipeConfig) -> None:
    """Enough free disk under ``output_dir`` for one checkpoint (a full disk mid-save ends in an unreadable C++
    stream error). The model's size: counted from its sizes, or read from a local checkpoint's weight files."""
    name = cfg.model.name_or_path
    if name:
        params = _stored_parameters(Path(str(name)).expanduser())
        if not params:
            return  # a Hub id: its size is known once downloaded
        what = f"{name}"
    else:

        margs = cfg.model  # (its fields were checked when the recipe was read; transformers may still refuse them)
        try:
            params = count_parameters(build_config(margs, vocab_size=margs.vocab_size or cfg.tokenizer.vocab_size))
        except ValueError as e:
            raise RecipeError(f"`model`: {e}") from e
        what = "this model"
    where = Path(cfg.output_dir).resolve()
    while not where.exists():
        where = where.parent
    need, free = params * BYTES_PER_PARAMETER, shutil.disk_usage(where).free
    if free < need:
        raise RecipeError(f"output_dir `{cfg.output_dir}`: {free / 2**20:,.0f} MiB free on its disk, but one checkpoint "
                          f"of {what} ({params / 1e6:,.1f}M parameters) needs about {need / 2**20:,.0f} MiB; free "
                          "some space or choose another output_dir=...")


def _hub_reachable(cfg: RecipeConfig) -> None:
    """With ``hub.mode: remote`` and a stage that pushes, the Hub must answer now, not after stage 1 trained."""
    pushes = any(s.push_to_hub if s.push_to_hub is not None else cfg.hub.mode != "none" for s in cfg.stages)
    if cfg.hub.mode != "remote" or not pushes:
        return  # `local` serves its own Hub for the run

    why = hub.unreachable(timeout=cfg.hub.timeout)
    if why:
        raise RecipeError(f"`hub.mode: remote`: the Hub at {hub.current_endpoint()} does not answer ({why}); start it "
                          "or fix HF_ENDPOINT, or set hub.mode=local (an offline Hub for this run) or hub.mode=none.")


def _model_config(cfg: RecipeConfig) -> tuple[Any, Any]:
    """(ModelArguments, config) of the recipe's model: the checkpoint's config (read, not loaded), or the one its
    sizes build."""

    margs = cfg.model
    if margs.name_or_path:

        return margs, AutoConfig.from_pretrained(margs.name_or_path, revision=margs.revision,
                                                 trust_remote_code=margs.trust_remote_code)
    return margs, build_config(margs, vocab_size=margs.vocab_size or cfg.tokenizer.vocab_size)


def _model_fits_tasks(cfg: RecipeConfig) -> None:
    """The model can learn every task (an lm objective it has), and its positions hold the longest sequence."""

    margs, config = _model_config(cfg)
    causal = is_causal(config)
    positions = getattr(config, "max_position_embeddings", None) if causal else None
    if margs.name_or_path:
        what = f"model.name_or_path {margs.name_or_path!r} is {'decoder-only' if causal else 'an encoder-decoder'}"
    else:
        what = f"model.family is {margs.family!r} ({'decoder-only' if causal else 'encoder-decoder'})"
    wanted = "next_token" if causal else "span_corruption"
    for i, task in enumerate(cfg.tasks):
        objective = task.objective
        if task.type == "lm" and objective not in (None, wanted):
            fix = "model.family: llama (a decoder-only model)" if not causal else "model.family: t5 (an encoder-decoder)"
            raise RecipeError(f"`tasks.{i}.objective` (task `{task.name}`): {objective} cannot be learned: {what}, "
                              f"which learns lm tasks by {wanted}; drop `objective` (or set {wanted}), or use {fix}.")
    if causal and positions:
        d = cfg.data
        translation = any(task.type == "translation" for task in cfg.tasks)
        longest = d.max_source_length + (d.max_target_length if translation else 0)
        if longest > positions:
            fields = "data.max_source_length + data.max_target_length" if translation else "data.max_source_length"
            raise RecipeError(f"`{fields}` = {longest} tokens, but the model has {positions} positions "
                              f"(max_position_embeddings); shorten the sequences or give the model more positions"
                              f"{'' if margs.name_or_path else ' (model.max_position_embeddings)'}.")


def linear_module_names(model: Any) -> list[str]:
    """The names LoRA's ``target_modules`` match against: the last part of every linear layer's name."""

    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def _lora_targets_exist(cfg: RecipeConfig) -> None:
    """Every LoRA stage's target modules name linear layers of the model (read on the meta device, no memory)."""
    stages = [(i, s) for i, s in enumerate(cfg.stages) if s.peft is not None and isinstance(s.peft.target_modules, list)]
    if not stages:
        return

    linear = linear_module_names(build_meta_model(_model_config(cfg)[1]))
    for i, stage in stages:
        wanted = stage.peft.target_modules
        if not set(wanted) & set(linear):
            hint = did_you_mean(wanted[0], linear) if len(wanted) == 1 else ""
            raise RecipeError(f"`stages.{i}.peft.target_modules`: {wanted!r} match no module of the model; its linear "
                              f"layers are named {', '.join(linear)}.{hint} Or use target_modules: all-linear.")


def check_before_work(cfg: RecipeConfig) -> None:
    """Raise a :class:`RecipeError` naming the field for anything missing; writes nothing."""
    check_resets(cfg)  # a stage reset whose previous state cannot exist: refused before any work
    _free_space(cfg)
    _hub_reachable(cfg)
    if cfg.tokenizer.path:
        _local_or_hub(cfg.tokenizer.path, "tokenizer.path", "the directory of a saved tokenizer (save_pretrained) or a "
                      "Hub id, or remove `tokenizer.path` to train one on the recipe's tasks")
    if cfg.model.name_or_path:
        _local_or_hub(str(cfg.model.name_or_path), "model.name_or_path",
                      "a local model directory or a Hub id, or build the model from sizes (d_model, num_layers, ...)")
    _model_fits_tasks(cfg)
    _lora_targets_exist(cfg)
    for i, stage in enumerate(cfg.stages):
        init = stage.init
        if isinstance(init, dict) and "hub" in init:  # a later stage's Hub init must not fail after stage 1 trained
            _local_or_hub(str(init["hub"]), f"stages.{i}.init.hub", "a model repo on the Hub (with `revision:` a "
                          "commit sha), a `path:`, or an earlier stage")
        adapter = Path(init["path"]) / "adapter_config.json" if isinstance(init, dict) and "path" in init else None
        if adapter is not None and adapter.is_file():  # a LoRA adapter: its base must still be there
            check_adapter_base(json.loads(adapter.read_text()), repr(init["path"]), f"stages.{i}.init.path")
        elif isinstance(init, dict) and "path" in init and not (Path(init["path"]) / "config.json").is_file():
            raise RecipeError(f"`stages.{i}.init.path`: {init['path']!r} is not a saved model (no config.json there); "
                              "give a directory written by save_pretrained(), or init from an earlier stage.")
    if cfg.data.cache_dir and Path(cfg.data.cache_dir).exists() and not Path(cfg.data.cache_dir).is_dir():
        raise RecipeError(f"`data.cache_dir`: {cfg.data.cache_dir!r} is a file; give a directory (it is created "
                          "if missing).")
    for i, task in enumerate(cfg.tasks):
        path = task.path
        if task.source in ("json", "csv", "tsv") and isinstance(path, str) and not glob.has_magic(path):
            if not Path(path).expanduser().is_file():
                raise RecipeError(f"`tasks.{i}.path` (task `{task.name}`): file {path!r} does not exist; fix "
                                  "the path (relative paths are from the directory you run in).")
