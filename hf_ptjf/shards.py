"""Sharded safetensors checkpoints written and read one shard at a time, also under DeepSpeed ZeRO-3.

transformers' own paths hold the whole model on one rank under ZeRO-3: ``Trainer.save_model`` gathers the full
16-bit state dict on rank 0 before writing it (``stage3_gather_16bit_weights_on_model_save``), and
``from_pretrained`` reads every checkpoint file into one state dict on rank 0 before partitioning it. At 13B that is
26 GB (bf16) or 52 GB (fp32) on one process. Here:

* :func:`save_sharded`: the shards are planned from the parameters' full sizes (``max_shard_size``, the Hub's
  ``"5GB"`` by default); each shard's parameters are gathered one at a time, copied by the writer, and the shard is
  written and freed before the next one is gathered. Files, names and index are those ``save_pretrained`` writes
  (``model.safetensors``, or ``model-0000i-of-0000N.safetensors`` + ``model.safetensors.index.json``).
* :func:`load_sharded`: a checkpoint's tensors copied into a model (ZeRO-3 partitioned or not) one shard at a time:
  rank 0 reads one shard, every rank gathers one parameter, rank 0 fills it, DeepSpeed re-partitions it.

A rank's transient memory is then one shard (the writer / reader) plus one parameter, not the model.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .checks import size_in_bytes

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "INDEX_NAME",
    "WEIGHTS_NAME",
    "checkpoint_files",
    "load_sharded",
    "parse_shard_size",
    "plan_shards",
    "release_gathered",
    "save_sharded",
    "stage_has_adapter",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_SIZE = "5GB"  # the Hub's and transformers' convention for published checkpoints
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"


def parse_shard_size(value: int | str) -> int:
    """Bytes of a shard size: an int, or ``"5GB"`` / ``"500MB"`` (powers of 10) / ``"2GiB"`` (powers of 2)."""
    size = size_in_bytes(value)
    if size is None:
        raise ValueError(f"max_shard_size must be a positive size such as \"5GB\", \"500MB\" or \"2GiB\" "
                         f"(or a number of bytes), got {value!r}")
    return size


def _is_partitioned(p: torch.Tensor) -> bool:
    return hasattr(p, "ds_id")


def _full_bytes(p: torch.Tensor) -> int:
    return int(getattr(p, "ds_numel", p.numel())) * p.element_size()


def _saved_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of what a checkpoint holds: every parameter once (a tied one under its first name, as
    ``save_pretrained`` keeps it) and the persistent buffers."""
    out = list(model.named_parameters())
    seen = {id(p) for _, p in out}
    for module_name, module in model.named_modules():
        for name, buf in module.named_buffers(recurse=False):
            if buf is None or name in module._non_persistent_buffers_set or id(buf) in seen:
                continue
            seen.add(id(buf))
            out.append((f"{module_name}.{name}" if module_name else name, buf))
    return out


def plan_shards(model: nn.Module, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> list[list[str]]:
    """The tensor names of each shard, in model order: a new shard starts when the next tensor would take the
    current one past ``max_shard_size`` (a tensor larger than that gets a shard of its own)."""
    limit = parse_shard_size(max_shard_size)
    shards: list[list[str]] = [[]]
    size = 0
    for name, tensor in _saved_tensors(model):
        n = _full_bytes(tensor)
        if shards[-1] and size + n > limit:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    return [s for s in shards if s]


@contextlib.contextmanager
def _gathered(tensor: torch.Tensor, modifier_rank: int | None = None) -> Iterator[None]:
    """The full tensor on every rank for the block (ZeRO-3 partitioned parameters), else nothing to do."""
    if not _is_partitioned(tensor):
        yield
        return
    import deepspeed  # optional: only ZeRO-3 partitioned parameters get here

    with deepspeed.zero.GatheredParameters([tensor], modifier_rank=modifier_rank):
        yield


def _shard_names(count: int) -> list[str]:
    if count == 1:
        return [WEIGHTS_NAME]
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def save_sharded(model: nn.Module, folder: str | Path, *, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
                 is_writer: bool = True) -> list[str]:
    """Write ``model``'s weights to ``folder`` as ``save_pretrained`` names them, one shard in memory at a time;
    returns the file names. Under ZeRO-3 every rank must call it (the gathers are collective); ``is_writer``: the
    process that writes (the others only take part in the gathers). ``config.json`` and ``generation_config.json``
    are written too (by the writer)."""
    folder = Path(folder)
    tensors = dict(_saved_tensors(model))
    plan = plan_shards(model, max_shard_size)
    names = _shard_names(len(plan))
    if is_writer:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("model*.safetensors"), folder / INDEX_NAME]:  # a rerun's or another layout's
            stale.unlink(missing_ok=True)
    weight_map: dict[str, str] = {}
    total = 0
    for file_name, keys in zip(names, plan):
        shard: dict[str, torch.Tensor] = {}
        for key in keys:
            with _gathered(tensors[key]):
                if is_writer:
                    shard[key] = tensors[key].detach().to("cpu", copy=True).contiguous()
        if is_writer:
            save_file(shard, str(folder / file_name), metadata={"format": "pt"})
            total += sum(t.numel() * t.element_size() for t in shard.values())
            weight_map.update({k: file_name for k in keys})
        del shard
    if is_writer:
        if len(names) > 1:
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (folder / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        _save_configs(model, folder)
    return names


def _save_configs(model: nn.Module, folder: Path) -> None:
    config = getattr(model, "config", None)
    if config is None:
        return
    config.architectures = [type(model).__name__]
    config.save_pretrained(str(folder))
    generation = getattr(model, "generation_config", None)
    if generation is not None and getattr(model, "can_generate", lambda: False)():
        generation.save_pretrained(str(folder))


def checkpoint_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder: the index's shards in order, or ``model.safetensors``."""
    folder = Path(folder)
    index = folder / INDEX_NAME
    if index.is_file():
        return [folder / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    if (folder / WEIGHTS_NAME).is_file():
        return [folder / WEIGHTS_NAME]
    raise FileNotFoundError(f"{folder} holds neither {INDEX_NAME} nor {WEIGHTS_NAME}")


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _targets(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every name a checkpoint may use for a tensor of ``model`` (tied parameters under each of their names)."""
    out: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    out.update(dict(model.named_buffers(remove_duplicate=False)))
    return out


def load_sharded(model: nn.Module, files: list[str | Path]) -> set[str]:
    """Copy the tensors of checkpoint ``files`` into ``model``, one file at a time; returns the model's tensor
    names no file held. Under ZeRO-3 every rank must call it; only rank 0 reads the files (the values reach the
    other ranks' partitions through the gathered parameter), buffers are broadcast."""
    targets = _targets(model)
    filled: set[int] = set()
    reader = _rank() == 0
    for path in files:
        keys = _keys_of(path) if reader else None
        if dist.is_available() and dist.is_initialized():
            box = [keys]
            dist.broadcast_object_list(box, src=0)
            keys = box[0]
        unexpected = [k for k in keys if k not in targets]
        if unexpected:
            raise ValueError(f"{path}: tensors the model has no place for: {', '.join(unexpected[:5])}")
        with (safe_open(str(path), framework="pt") if reader else contextlib.nullcontext()) as f:
            for key in keys:
                target = targets[key]
                if id(target) in filled:  # a tied tensor saved under two names
                    continue
                _copy_into(target, f.get_tensor(key) if reader else None, reader)
                filled.add(id(target))
    return {name for name, t in _saved_tensors(model) if id(t) not in filled}


def _keys_of(path: str | Path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def _copy_into(target: torch.Tensor, value: torch.Tensor | None, reader: bool) -> None:
    """``target`` := ``value`` (read by rank 0 only): a partitioned parameter through a gather, others in place."""
    with torch.no_grad():
        if _is_partitioned(target):
            with _gathered(target, modifier_rank=0):
                if reader:
                    _check_shape(target, value)
                    target.data.copy_(value)
            return
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            buf = value.to(target.dtype) if reader else torch.empty_like(target)
            dist.broadcast(buf, src=0)
            value = buf
        _check_shape(target, value)
        target.data.copy_(value)


def _check_shape(target: torch.Tensor, value: torch.Tensor) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise ValueError(f"checkpoint tensor of shape {tuple(value.shape)} does not fit the model's "
                         f"{tuple(target.shape)}")


def release_gathered(engine: Any) -> None:
    """Release every ZeRO-3 parameter a DeepSpeed ``engine`` still holds gathered or in flight (``generate``
    prefetches parameters in an order the trace of training does not match); a gather for a save then starts from
    partitioned parameters only, instead of failing with "Cannot partition a param in flight"."""
    empty = getattr(engine, "empty_partition_cache", None)
    if callable(empty):
        empty()


def stage_has_adapter(model: nn.Module) -> bool:
    """Whether ``model`` is a PEFT model (its save writes the adapter, not the weights)."""
    return hasattr(model, "peft_config")
