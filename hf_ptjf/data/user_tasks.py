"""The user's own data: JSON lines, CSV, TSV files or any ``datasets`` dataset.

Columns are renamed with the spec's ``columns`` mapping (dotted names reach into nested fields,
e.g. ``translation.en`` in WMT datasets), whitespace is normalised, rows without letters and pairs
with an outlying length ratio are dropped. The user's validation/test splits are used when present;
missing ones are carved out of train with the seed. Training rows whose source (or LM text) appears in
any task's validation/test split are dropped after loading (:mod:`hf_ptjf.data.heldout`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import datasets
from datasets.data_files import resolve_pattern, sanitize_patterns
import numpy as np
import pandas as pd
import pyarrow.compute as pc

from .cache import cached_dataset_dict, stable_hash
from .cleaning import CLEANING_VERSION, clean_text, has_letter
from .columns import column_arrow
from .features import FORMAT, features_for
from .meta import set_task_meta
from .spec import TaskSpec
from .splits import carve_indices, subsample_indices, task_rng

__all__ = ["VALIDATION_NAMES", "builder_kwargs", "clean_split", "column_mapping", "data_file_splits", "keep_rows",
           "length_ratio_median", "load_user_task", "normalise_rows", "subsample_train"]

logger = logging.getLogger(__name__)

VALIDATION_NAMES = ("validation", "valid", "dev", "development")  # a split by any of these names is the validation
BUILDERS = {"json": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet", "arrow": "arrow"}  # source -> builder


def builder_kwargs(spec: TaskSpec) -> dict[str, Any]:
    """What ``datasets.load_dataset`` needs beside the files for the task's source (map-style and streamed)."""
    kwargs: dict[str, Any] = {}
    if spec.source == "tsv":
        kwargs.update(delimiter="\t", quoting=3)  # csv.QUOTE_NONE: quotes are text in TSV corpora
    if spec.source in ("csv", "tsv") and spec.column_names:
        kwargs["column_names"] = list(spec.column_names)
    return kwargs


def data_file_splits(spec: TaskSpec) -> dict[str, list[str]]:
    """The files of each split of a file task (``data_files``, or ``path`` as the ``train`` split), every pattern
    resolved from the working directory. A pattern that matches no file is refused, named (``datasets`` would drop
    a glob that matches nothing and report the split as missing)."""
    field = "data_files" if spec.data_files is not None else "path"
    given = spec.data_files if spec.data_files is not None else spec.path
    out: dict[str, list[str]] = {}
    for split, patterns in sanitize_patterns(given).items():
        out[split] = []
        for pattern in patterns:
            try:
                out[split] += [str(f) for f in resolve_pattern(pattern, base_path=os.getcwd())]
            except FileNotFoundError:
                where = f"{field}.{split}" if isinstance(given, dict) else field
                raise ValueError(f"task `{spec.name}`: no file matches `{field}` (`{where}` pattern {pattern!r} matches "
                                 f"no file; relative paths are from the directory you run in, {os.getcwd()}); check "
                                 "the path, or restore the files: a run's checkpoints are kept and a rerun continues "
                                 "from them.") from None
    return out


def _load_raw(spec: TaskSpec, root: Path) -> datasets.DatasetDict:
    cache = str(root / "hf_datasets")
    if spec.source != "hf":
        data_file_splits(spec)  # every pattern matches a file (the patterns themselves go to datasets, as before)
    if spec.source == "hf":
        if spec.path and os.path.isdir(spec.path):
            raw = datasets.load_from_disk(spec.path)
        else:
            raw = datasets.load_dataset(
                spec.dataset or spec.path, spec.config, data_files=spec.data_files, cache_dir=cache
            )
    else:
        files = spec.data_files if spec.data_files is not None else spec.path
        raw = datasets.load_dataset(BUILDERS[spec.source], data_files=files, cache_dir=cache, **builder_kwargs(spec))
    if isinstance(raw, datasets.Dataset):
        raw = datasets.DatasetDict({spec.split: raw})
    return raw


def _pick_splits(spec: TaskSpec, raw: datasets.DatasetDict) -> tuple[str, str | None, str | None]:
    where = f"task {spec.name!r}"
    if spec.split not in raw:
        raise ValueError(f"{where}: `split`={spec.split!r} is not in the data (splits: {list(raw)}); set `split`.")
    val = spec.validation_split or next((s for s in VALIDATION_NAMES if s in raw), None)
    test = spec.test_split or ("test" if "test" in raw else None)
    for key, name in (("validation_split", val), ("test_split", test)):
        if name is not None and name not in raw:
            raise ValueError(f"{where}: `{key}`={name!r} is not in the data (splits: {list(raw)}).")
    return spec.split, val, test


def _ours(spec: TaskSpec) -> tuple[str, ...]:
    return ("source", "target") if spec.type == "translation" else ("text",)


def column_mapping(spec: TaskSpec) -> dict[str, str]:
    """Our column -> the data's column (dotted for nested fields)."""
    mapping = {k: spec.columns.get(k, k) for k in _ours(spec)}
    if "id" in spec.columns:
        mapping["id"] = spec.columns["id"]
    return mapping


def _values(batch: dict[str, list], column: str) -> list:
    """A batch's column; a dotted name reaches into nested fields (``translation.en``) unless flattened already."""
    if column in batch or "." not in column:
        return batch[column]
    head, *path = column.split(".")
    values = batch[head]
    for key in path:
        values = [v.get(key) if isinstance(v, dict) else None for v in values]
    return values


def normalise_rows(batch: dict[str, list], spec: TaskSpec, ids: list[str]) -> dict[str, list]:
    """The user's columns renamed to ours, cast to string and cleaned of whitespace noise; ``ids`` where the data
    has no id column."""
    mapping = column_mapping(spec)
    out = {k: clean_text(pd.Series(["" if x is None else str(x) for x in _values(batch, mapping[k])])).tolist()
           for k in _ours(spec)}
    out["id"] = [str(x) for x in _values(batch, mapping["id"])] if "id" in mapping else ids
    return out


def _log_length_ratios(sources: list[str], targets: list[str]) -> np.ndarray:
    ls = np.array([max(len(x), 1) for x in sources], np.float64)
    lt = np.array([max(len(x), 1) for x in targets], np.float64)
    return np.log(lt / ls)


def length_ratio_median(sources: list[str], targets: list[str]) -> float:
    """The median log length ratio target/source (the centre of the length-ratio filter)."""
    return float(np.median(_log_length_ratios(sources, targets)))


def keep_rows(batch: dict[str, list], spec: TaskSpec, median: float | None) -> np.ndarray:
    """Which normalised rows to keep: with letters and, for translation, a length ratio near ``median``."""
    ok = np.ones(len(batch[_ours(spec)[0]]), dtype=bool)
    for k in _ours(spec):
        ok &= has_letter(pd.Series(batch[k], dtype=object))
    if median is not None:
        ok &= np.abs(_log_length_ratios(batch["source"], batch["target"]) - median) <= np.log(spec.max_length_ratio)
    return ok


def _normalise_columns(ds: datasets.Dataset, spec: TaskSpec, split: str) -> datasets.Dataset:
    """Rename the user's columns to ours, cast to string, add ids, and clean whitespace."""
    mapping = column_mapping(spec)
    if any("." in c for c in mapping.values()):
        ds = ds.flatten()
    missing = [f"{k} -> {c}" for k, c in mapping.items() if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"task {spec.name!r}: columns {missing} not found in split {split!r} (columns: {ds.column_names}); "
            "fix the `columns` mapping, e.g. {source: en, target: fr}."
        )

    def fn(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        return normalise_rows(batch, spec, [f"{split}-{i}" for i in idx])

    features = features_for(spec.type)
    ds = ds.map(fn, batched=True, with_indices=True, remove_columns=ds.column_names, features=features)
    return ds.select_columns(list(features))


def _filter_user(ds: datasets.Dataset, spec: TaskSpec, seed: int) -> datasets.Dataset:
    """Drop rows without letters and, for translation, pairs with an outlying length ratio."""
    median = None
    if spec.type == "translation" and spec.max_length_ratio is not None and len(ds):
        # the median length ratio from a sample is enough for the filter's centre
        idx = np.random.default_rng(seed).choice(len(ds), size=min(len(ds), 100_000), replace=False)
        sample = ds.select(np.sort(idx))
        ls = pc.utf8_length(column_arrow(sample, "source")).to_numpy().clip(min=1)
        lt = pc.utf8_length(column_arrow(sample, "target")).to_numpy().clip(min=1)
        median = float(np.median(np.log(lt / ls)))

    return ds.filter(lambda batch: keep_rows(batch, spec, median).tolist(), batched=True)


def clean_split(ds: datasets.Dataset, spec: TaskSpec, split: str, seed: int) -> datasets.Dataset:
    """A split of the user's data in our columns, cleaned and filtered (map-style splits, a stream's held-out rows)."""
    return _filter_user(_normalise_columns(ds, spec, split), spec, seed)


def user_task_key(spec: TaskSpec, raw: datasets.DatasetDict, num_dev: int, num_test: int, seed: int) -> str:
    """The cache key of a user task: its spec's cached fields, the split sizes and seed, the raw data's fingerprints,
    the cleaning and the format."""
    fingerprints = {k: getattr(v, "_fingerprint", None) for k, v in raw.items()}
    params = {"spec": spec.cache_fields(), "num_dev": num_dev, "num_test": num_test, "seed": seed, "raw": fingerprints}
    return stable_hash({**params, "cleaning": CLEANING_VERSION, "format": FORMAT})


def load_user_task(spec: TaskSpec, root: Path, *, num_dev: int, num_test: int, seed: int) -> datasets.DatasetDict:
    """Build (or load from ``root/tasks``) one task from files or a ``datasets`` dataset."""
    raw = _load_raw(spec, root)
    train_name, val_name, test_name = _pick_splits(spec, raw)

    path = root / "tasks" / f"{spec.name}-{user_task_key(spec, raw, num_dev, num_test, seed)}"

    def build() -> datasets.DatasetDict:
        train = clean_split(raw[train_name], spec, train_name, seed)
        val = clean_split(raw[val_name], spec, val_name, seed) if val_name else None
        test = clean_split(raw[test_name], spec, test_name, seed) if test_name else None
        if val is None or test is None:
            # carve what is missing from train; the carve is seeded, so it is the same every run
            tr, dv, te = carve_indices(len(train), num_dev if val is None else 0, num_test if test is None else 0, seed)
            val = train.select(dv) if val is None else val
            test = train.select(te) if test is None else test
            train = train.select(tr)
        dsd = datasets.DatasetDict({"train": train, "validation": val, "test": test})
        return set_task_meta(dsd, name=spec.name, type=spec.type, lang=spec.lang)

    dsd = cached_dataset_dict(path, build)
    _say_if_capped(spec, dsd, num_dev if val_name is None else 0, num_test if test_name is None else 0)
    return dsd


def _say_if_capped(spec: TaskSpec, dsd: datasets.DatasetDict, num_dev: int, num_test: int) -> None:
    """Carved dev/test splits are capped at 10% of a task each (splits.carve_indices): say so, once, with the fix."""
    short = [f"{key}: {asked} -> {len(dsd[split])} rows" for key, split, asked in
             (("num_dev", "validation", num_dev), ("num_test", "test", num_test)) if 0 < len(dsd[split]) < asked]
    if short:
        logger.warning(
            "task %s: %s (a split carved out of a task's own data is capped at 10%% of its rows). Give the task its "
            "own splits (`validation_split` / `test_split`, or `validation` / `test` files in `data_files`), or lower "
            "`data.num_dev` / `data.num_test` to silence this.", spec.name, "; ".join(short))


def subsample_train(dsd: datasets.DatasetDict, spec: TaskSpec, seed: int) -> datasets.DatasetDict:
    """``train_size`` rows of the training split (seeded), drawn after the held-out texts of every task were
    removed, so a low-resource task gets exactly the rows it asks for."""
    if spec.train_size is None:
        return dsd
    rng = task_rng(spec.seed if spec.seed is not None else seed, spec.name)
    try:
        rows = subsample_indices(len(dsd["train"]), spec.train_size, rng)
    except ValueError as e:
        raise ValueError(f"task `{spec.name}`: {e}") from None
    out = datasets.DatasetDict(dsd)
    out["train"] = dsd["train"].select(rows)
    return out
