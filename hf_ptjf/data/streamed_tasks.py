"""Streamed tasks (``streaming: true``): the training split is read as a stream, never loaded or tokenized up front.

* Sources: JSON lines, CSV/TSV, Parquet, Arrow files on local disk (one shard per file: give a big corpus as many
  files), or a ``datasets`` dataset (``source: hf``: a ``save_to_disk`` directory or a builder).
* Held-out splits: the data's own validation/test splits (``data_files: {train: [...], validation: ...}``) are
  loaded as usual; without them, the first ``num_dev`` + ``num_test`` rows of the stream are the validation and test
  splits. Either way every training window drops the rows whose text is held out by any task (``heldout: shared``),
  as the map-style path does (:mod:`hf_ptjf.data.heldout`), so a stream never trains on its own dev/test rows.
* Each window is cleaned (:func:`~hf_ptjf.data.user_tasks.normalise_rows`), filtered (letters, and the length ratio
  around the window's median) and then tokenized by the recipe (``prepare_recipe_data``).
* Sizes: ``size: {characters: 1.3e13}`` declares a task's size (mC4's published counts); ``size: count`` counts it
  with one pass, cached by the files' identity (:mod:`hf_ptjf.data.sizes`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import datasets
import numpy as np
import pyarrow as pa

from .heldout import keep_mask
from .json_lines import first_bad_line_of
from .meta import set_task_meta
from .spec import TaskSpec
from .stream import StreamError
from .user_tasks import (BUILDERS, VALIDATION_NAMES, builder_kwargs, clean_split, column_mapping, data_file_splits,
                         keep_rows, length_ratio_median, normalise_rows)

__all__ = ["RawTaskStream", "StreamedTaskDict", "open_streamed_task"]

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 20_000  # rows of the stream kept in memory to train the recipe's tokenizer on


@dataclass
class RawTaskStream:
    """A streamed task before tokenizing: its training split, where its shards are, and the window cleaner."""

    spec: TaskSpec
    train: datasets.IterableDataset
    files: list[str]
    banned: set[str]

    def clean(self, window: dict[str, list]) -> dict[str, list]:
        """A raw window -> its normalised rows that pass the filters and are not held out."""
        rows = normalise_rows(window, self.spec, [f"w{i}" for i in range(len(next(iter(window.values()), [])))])
        median = None
        if self.spec.type == "translation" and self.spec.max_length_ratio is not None and rows["source"]:
            median = length_ratio_median(rows["source"], rows["target"])
        keep = keep_rows(rows, self.spec, median)
        column = "source" if self.spec.type == "translation" else "text"
        keep &= keep_mask(pa.array(rows[column], pa.string()), self.banned)
        index = np.flatnonzero(keep).tolist()
        return {k: [v[i] for i in index] for k, v in rows.items()}

    def transform(self, tokenize: Callable[[dict[str, list]], dict[str, list]]) -> Callable[[dict[str, list]], dict[str, list]]:
        """Window -> model-ready rows: clean, then ``tokenize`` (the map-style path's batch function)."""
        def fn(window: dict[str, list]) -> dict[str, list]:
            rows = self.clean(window)
            if not rows["id"]:
                return {}
            out = tokenize(rows)
            if "id" not in out:
                out["id"] = rows["id"]
            return out

        return fn


class StreamedTaskDict(datasets.DatasetDict):
    """A streamed task as :func:`~hf_ptjf.data.loaders.load_tasks` returns it: its map-style splits (``sample``,
    ``validation``, ``test``; no ``train``) and, as ``stream``, its training stream."""

    stream: RawTaskStream


def _files(spec: TaskSpec) -> dict[str, list[str]]:
    try:
        return data_file_splits(spec)
    except ValueError as e:
        raise StreamError(str(e)) from None


def _read_error(spec: TaskSpec, files: list[str], where: str, e: Exception) -> StreamError:
    """A failure to read a stream's rows, said as the task's: for JSON lines, the file and line that is broken."""
    bad = first_bad_line_of(files) if spec.source == "json" else None
    if bad is not None:
        return StreamError(f"task `{spec.name}`: {bad}")
    return StreamError(f"task `{spec.name}`: cannot read {where} ({type(e).__name__}: {e}); check the files.")


def _load(spec: TaskSpec, files: list[str] | None, root: Path) -> datasets.IterableDataset:
    cache = str(root / "hf_datasets")
    if spec.source == "hf":
        if spec.path and os.path.isdir(spec.path):
            ds = datasets.load_from_disk(spec.path)
            ds = ds[spec.split] if isinstance(ds, datasets.DatasetDict) else ds
            return ds.to_iterable_dataset(num_shards=max(1, min(len(ds) // 10_000, 64)))
        return datasets.load_dataset(spec.dataset or spec.path, spec.config, split=spec.split, streaming=True,
                                     data_files=spec.data_files, cache_dir=cache)
    return datasets.load_dataset(BUILDERS[spec.source], data_files=files, split="train", streaming=True,
                                 cache_dir=cache, **builder_kwargs(spec))


def _peek(spec: TaskSpec, train: datasets.IterableDataset, files: list[str], where: str) -> dict[str, Any]:
    """The stream's first row, checked for the mapped columns (before any work)."""
    try:
        first = next(iter(train.take(1)), None)
    except Exception as e:  # noqa: BLE001 - the reader's own error, said as the task's
        raise _read_error(spec, files, where, e) from e
    if first is None:
        raise StreamError(f"task `{spec.name}`: the stream {where} is empty; give the task data or remove it.")
    for ours, theirs in column_mapping(spec).items():
        if not _has_column(first, theirs):
            raise StreamError(f"task `{spec.name}`: the column `{theirs}` (for `columns.{ours}`) is not in {where} "
                              f"(its columns: {sorted(first)}); fix the task's `columns` mapping, e.g. "
                              "{source: en, target: fr}.")
    return first


def _has_column(row: dict[str, Any], column: str) -> bool:
    if column in row:
        return True
    value: Any = row
    for key in column.split("."):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def open_streamed_task(spec: TaskSpec, root: Path, *, num_dev: int, num_test: int,
                       seed: int) -> StreamedTaskDict:
    """A ``streaming: true`` task: ``sample`` holds the stream's first rows (the recipe's tokenizer trains on them);
    the stream's ``banned`` texts are set by :func:`~hf_ptjf.data.loaders.load_tasks` once every task's held-out
    splits are known."""
    files = _files(spec) if spec.source != "hf" else {}
    train_files = files.get(spec.split, files.get("train", []))
    if spec.source != "hf" and not train_files:
        raise StreamError(f"task `{spec.name}`: `data_files` has no `{spec.split}` split (it has {sorted(files)}); "
                          "name the training files, e.g. data_files: {train: [part-*.jsonl], validation: dev.jsonl}.")
    where = f"{train_files[0] if train_files else spec.dataset or spec.path}"
    try:
        train = _load(spec, train_files, root)
    except (StopIteration, ValueError, OSError) as e:  # datasets reads the first rows to infer the columns
        raise StreamError(f"task `{spec.name}`: cannot open the stream {where} ({type(e).__name__}: "
                          f"{str(e) or 'no rows'}); check that its files exist and have rows.") from None
    _peek(spec, train, train_files, where)
    splits = _own_heldout_splits(spec, files, root, seed)
    carve = (0 if "validation" in splits else num_dev) + (0 if "test" in splits else num_test)
    try:
        head = datasets.Dataset.from_list(list(train.take(max(carve, SAMPLE_ROWS))))
    except Exception as e:  # noqa: BLE001 - the reader's own error (a broken row past the first), said as the task's
        raise _read_error(spec, train_files, where, e) from e
    head = clean_split(head, spec, "train", seed)
    if carve:  # the stream's first rows are held out (and dropped from every training window by text)
        start = 0
        for key, n in (("validation", num_dev), ("test", num_test)):
            if key not in splits:
                splits[key] = head.select(range(start, min(start + n, len(head))))
                start += n
    dsd = StreamedTaskDict(set_task_meta(datasets.DatasetDict({"sample": head, **splits}), name=spec.name,
                                         type=spec.type, lang=spec.lang))
    logger.info("task %s: streamed from %d shard(s); %s", spec.name, max(1, len(train_files)),
                ", ".join(f"{len(ds):,} {k}" for k, ds in dsd.items()))
    dsd.stream = RawTaskStream(spec, train, train_files, set())
    return dsd


def _own_heldout_splits(spec: TaskSpec, files: dict[str, list[str]], root: Path, seed: int) -> dict[str, Any]:
    """The data's own validation / test splits (loaded whole, cleaned), where ``data_files`` has them."""
    splits: dict[str, datasets.Dataset] = {}
    for key, names in (("validation", (spec.validation_split,) if spec.validation_split else VALIDATION_NAMES),
                       ("test", (spec.test_split or "test",))):
        name = next((n for n in names if n in files), None)
        if name is not None:
            try:
                raw = datasets.Dataset.from_list(list(_load(spec, files[name], root)))
            except Exception as e:  # noqa: BLE001 - the reader's own error, said as the task's
                raise _read_error(spec, files[name], files[name][0], e) from e
            splits[key] = clean_split(raw, spec, key, seed)
    return splits
