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

__all__ = ["load_user_task", "subsample_train"]

logger = logging.getLogger(__name__)

_VALIDATION_NAMES = ("validation", "valid", "dev", "development")


def _load_raw(spec: TaskSpec, root: Path) -> datasets.DatasetDict:
    cache = str(root / "hf_datasets")
    if spec.source == "hf":
        if spec.path and os.path.isdir(spec.path):
            raw = datasets.load_from_disk(spec.path)
        else:
            raw = datasets.load_dataset(
                spec.dataset or spec.path, spec.config, data_files=spec.data_files, cache_dir=cache
            )
    else:
        files = spec.data_files if spec.data_files is not None else spec.path
        kwargs: dict[str, Any] = {}
        if spec.source == "tsv":
            kwargs.update(delimiter="\t", quoting=3)  # csv.QUOTE_NONE: quotes are text in TSV corpora
        if spec.source in ("csv", "tsv") and spec.column_names:
            kwargs["column_names"] = list(spec.column_names)
        builder = "json" if spec.source == "json" else "csv"
        raw = datasets.load_dataset(builder, data_files=files, cache_dir=cache, **kwargs)
    if isinstance(raw, datasets.Dataset):
        raw = datasets.DatasetDict({spec.split: raw})
    return raw


def _pick_splits(spec: TaskSpec, raw: datasets.DatasetDict) -> tuple[str, str | None, str | None]:
    where = f"task {spec.name!r}"
    if spec.split not in raw:
        raise ValueError(f"{where}: `split`={spec.split!r} is not in the data (splits: {list(raw)}); set `split`.")
    val = spec.validation_split or next((s for s in _VALIDATION_NAMES if s in raw), None)
    test = spec.test_split or ("test" if "test" in raw else None)
    for key, name in (("validation_split", val), ("test_split", test)):
        if name is not None and name not in raw:
            raise ValueError(f"{where}: `{key}`={name!r} is not in the data (splits: {list(raw)}).")
    return spec.split, val, test


def _normalise_columns(ds: datasets.Dataset, spec: TaskSpec, split: str) -> datasets.Dataset:
    """Rename the user's columns to ours, cast to string, add ids, and clean whitespace."""
    ours = ("source", "target") if spec.type == "translation" else ("text",)
    mapping = {k: spec.columns.get(k, k) for k in ours}
    if "id" in spec.columns:
        mapping["id"] = spec.columns["id"]
    if any("." in c for c in mapping.values()):
        ds = ds.flatten()
    missing = [f"{k} -> {c}" for k, c in mapping.items() if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"task {spec.name!r}: columns {missing} not found in split {split!r} (columns: {ds.column_names}); "
            "fix the `columns` mapping, e.g. {source: en, target: fr}."
        )
    keep_id = "id" in mapping

    def fn(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        out = {
            k: clean_text(pd.Series(["" if x is None else str(x) for x in batch[mapping[k]]])).tolist() for k in ours
        }
        out["id"] = [str(x) for x in batch[mapping["id"]]] if keep_id else [f"{split}-{i}" for i in idx]
        return out

    features = features_for(spec.type)
    ds = ds.map(fn, batched=True, with_indices=True, remove_columns=ds.column_names, features=features)
    return ds.select_columns(list(features))


def _filter_user(ds: datasets.Dataset, spec: TaskSpec, seed: int) -> datasets.Dataset:
    """Drop rows without letters and, for translation, pairs with an outlying length ratio."""
    ours = ("source", "target") if spec.type == "translation" else ("text",)
    median = None
    if spec.type == "translation" and spec.max_length_ratio is not None and len(ds):
        # the median length ratio from a sample is enough for the filter's centre
        idx = np.random.default_rng(seed).choice(len(ds), size=min(len(ds), 100_000), replace=False)
        sample = ds.select(np.sort(idx))
        ls = pc.utf8_length(column_arrow(sample, "source")).to_numpy().clip(min=1)
        lt = pc.utf8_length(column_arrow(sample, "target")).to_numpy().clip(min=1)
        median = float(np.median(np.log(lt / ls)))

    def keep(batch: dict[str, list]) -> list[bool]:
        ok = np.ones(len(batch[ours[0]]), dtype=bool)
        for k in ours:
            ok &= has_letter(pd.Series(batch[k], dtype=object))
        if median is not None:
            ls = np.array([max(len(x), 1) for x in batch["source"]], np.float64)
            lt = np.array([max(len(x), 1) for x in batch["target"]], np.float64)
            ok &= np.abs(np.log(lt / ls) - median) <= np.log(spec.max_length_ratio)
        return ok.tolist()

    return ds.filter(keep, batched=True)


def _user_key(spec: TaskSpec, raw: datasets.DatasetDict, num_dev: int, num_test: int, seed: int) -> str:
    fingerprints = {k: getattr(v, "_fingerprint", None) for k, v in raw.items()}
    params = {"spec": spec.cache_fields(), "num_dev": num_dev, "num_test": num_test, "seed": seed, "raw": fingerprints}
    return stable_hash({**params, "cleaning": CLEANING_VERSION, "format": FORMAT})


def load_user_task(spec: TaskSpec, root: Path, *, num_dev: int, num_test: int, seed: int) -> datasets.DatasetDict:
    """Build (or load from ``root/tasks``) one task from files or a ``datasets`` dataset."""
    raw = _load_raw(spec, root)
    train_name, val_name, test_name = _pick_splits(spec, raw)

    path = root / "tasks" / f"{spec.name}-{_user_key(spec, raw, num_dev, num_test, seed)}"

    def build() -> datasets.DatasetDict:
        train = _filter_user(_normalise_columns(raw[train_name], spec, train_name), spec, seed)
        val = _filter_user(_normalise_columns(raw[val_name], spec, val_name), spec, seed) if val_name else None
        test = _filter_user(_normalise_columns(raw[test_name], spec, test_name), spec, seed) if test_name else None
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
