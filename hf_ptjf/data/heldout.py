"""Held-out texts shared across tasks: no task trains on a source (or LM text) that any task evaluates on.

Bible tasks share their held-out verses by id (:mod:`hf_ptjf.data.splits`). The user's own data has no
such ids, and tasks that share a source side (en-fr and en-ro from one English corpus) carve their
dev/test splits independently; so after loading, every text in a user-data task's validation/test
split is removed from the training split of every task, and every Bible task's held-out text from the
training split of every user-data task. Texts are compared normalised (NFKC, case-folded, whitespace
collapsed). A task with ``heldout: own`` loses only the rows that repeat its own held-out texts.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import column_arrow
from .spec import TaskSpec

__all__ = ["banned_texts", "keep_mask", "normalise_for_matching", "share_heldout_texts"]

logger = logging.getLogger(__name__)

HELDOUT_SPLITS = ("validation", "test")


def normalise_for_matching(texts: pa.Array) -> pa.Array:
    """NFKC, case-folded, internal whitespace collapsed, trimmed: the form held-out texts are compared in."""
    out = pc.utf8_lower(pc.utf8_normalize(texts, "NFKC"))
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(out, r"\s+", " "))


def _column(spec: TaskSpec) -> str:
    return "source" if spec.type == "translation" else "text"


def _texts(ds: datasets.Dataset, spec: TaskSpec) -> set[str]:
    return set(normalise_for_matching(column_arrow(ds, _column(spec))).to_pylist())


def banned_texts(corpora: Mapping[str, datasets.DatasetDict], specs: Sequence[TaskSpec]) -> dict[str, set[str]]:
    """The normalised texts each task must not train on (a streamed task filters its windows with them)."""
    held: dict[str, set[str]] = {
        s.name: set().union(*(_texts(corpora[s.name][split], s) for split in HELDOUT_SPLITS)) for s in specs
    }
    out = {}
    for spec in specs:
        # Bible tasks already exclude their own and each other's held-out verses by id; user-data tasks are
        # guarded by text, from their own held-out texts always and from every other task's unless `heldout: own`
        others = [] if spec.heldout == "own" else [
            o for o in specs if o.name != spec.name and (o.source != "bible" or spec.source != "bible")]
        out[spec.name] = set().union(*(held[o.name] for o in others)) if others else set()
        if spec.source != "bible":
            out[spec.name] |= held[spec.name]
    return out


def keep_mask(texts: pa.Array, banned: set[str]) -> np.ndarray:
    """Which of ``texts`` are not among the ``banned`` (normalised) texts."""
    if not banned:
        return np.ones(len(texts), dtype=bool)
    keep = pc.invert(pc.is_in(normalise_for_matching(texts), value_set=pa.array(sorted(banned), pa.string())))
    return keep.to_numpy(zero_copy_only=False)


def share_heldout_texts(
    corpora: Mapping[str, datasets.DatasetDict], specs: Sequence[TaskSpec],
    every_banned: Mapping[str, set[str]] | None = None,
) -> tuple[dict[str, datasets.DatasetDict], dict[str, int]]:
    """``(corpora with shared held-out texts removed from training, {task: training rows removed})``; a streamed
    task (no ``train`` split: see :mod:`hf_ptjf.data.streamed_tasks`) is filtered window by window instead.
    ``every_banned``: :func:`banned_texts` of these corpora, when the caller has it already."""
    out, removed = dict(corpora), {}
    every_banned = banned_texts(corpora, specs) if every_banned is None else every_banned
    for spec in specs:
        banned, train = every_banned[spec.name], corpora[spec.name].get("train")
        if train is None or not banned or len(train) == 0:
            continue
        indices = np.flatnonzero(keep_mask(column_arrow(train, _column(spec)), banned))
        if len(indices) < len(train):
            removed[spec.name] = len(train) - len(indices)
            dsd = datasets.DatasetDict(corpora[spec.name])
            dsd["train"] = train.select(indices)
            out[spec.name] = dsd
    for name, n in removed.items():
        logger.info("task %s: %d of %d training rows removed: their text is in a task's validation/test split "
                    "(held-out texts are shared across tasks; `heldout: own` on the task ignores the other tasks')",
                    name, n, len(corpora[name]["train"]))
    return out, removed
