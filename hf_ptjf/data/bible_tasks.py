"""Bible tasks: verses of the requested versions, cleaned, paired, split and subsampled.

Translation: every (source version, target version) pairing joined on the verse key and
length-filtered; training takes all pairings, dev/test the first pairing only (one example per
held-out verse). LM: the verses of each version. In both, the shared held-out verses are removed
from training, and so is any training verse whose text equals a held-out verse's text (refrains
repeated across chapters would otherwise leak).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Mapping

import datasets
import numpy as np
import pandas as pd

from .bible import all_verse_ids, db_fingerprint, read_version
from .cache import cached_dataset_dict, stable_hash
from .cleaning import CLEANING_VERSION, clean_version, length_ratio_mask
from .features import FORMAT, LM, TRANSLATION
from .meta import set_task_meta
from .spec import TaskSpec
from .splits import HeldOut, heldout_verse_ids, subsample_indices, task_rng
from .versions import resolve_version

__all__ = ["bible_task_key", "heldout", "load_bible_task"]


@functools.lru_cache(maxsize=8)
def heldout(num_dev: int, num_test: int, seed: int) -> HeldOut:
    """The held-out verses shared by every Bible task for these parameters."""
    return heldout_verse_ids(all_verse_ids(), num_dev, num_test, seed)


def load_bible_task(spec: TaskSpec, root: Path, *, num_dev: int, num_test: int, seed: int) -> datasets.DatasetDict:
    """Build (or load from ``root/tasks``) one Bible task."""
    path = root / "tasks" / f"{spec.name}-{bible_task_key(spec, num_dev, num_test, seed)}"
    build = _build_translation if spec.type == "translation" else _build_lm
    return cached_dataset_dict(path, lambda: build(spec, heldout(num_dev, num_test, seed), seed))


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
            k: datasets.Dataset.from_pandas(
                df[cols].astype(object).reset_index(drop=True), features=features, preserve_index=False
            )
            for k, df in splits.items()
        }
    )
    return set_task_meta(dsd, name=spec.name, type=spec.type, lang=spec.lang)


def bible_task_key(spec: TaskSpec, num_dev: int, num_test: int, seed: int) -> str:
    """The cache key of a Bible task: its spec's cached fields, the held-out draw, the database, cleaning and format."""
    params = {"spec": spec.cache_fields(), "num_dev": num_dev, "num_test": num_test, "seed": seed}
    return stable_hash({**params, "db": db_fingerprint(), "cleaning": CLEANING_VERSION, "format": FORMAT})


def _heldout_texts(codes: Iterable[str], heldout: HeldOut) -> set[str]:
    """Texts of held-out verses: a training verse with the very same text (repeated refrains) leaks too."""
    texts: set[str] = set()
    for code in codes:
        df = _cleaned(code)
        texts.update(df.loc[df.verse.isin(heldout.all), "text"].tolist())
    return texts


def _build_translation(spec: TaskSpec, heldout: HeldOut, seed: int) -> datasets.DatasetDict:
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
    return _to_dsd({"train": train, "validation": dev, "test": test}, TRANSLATION, spec)


def _build_lm(spec: TaskSpec, heldout: HeldOut, seed: int) -> datasets.DatasetDict:
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
    return _to_dsd({"train": train, "validation": dev, "test": test}, LM, spec)
