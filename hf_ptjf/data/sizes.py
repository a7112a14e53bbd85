"""``TaskSizes``: every task's training size in examples, tokens or characters, counted once and cached.

Rates can be computed from sizes in any unit (``mixture.size_unit``): mC4's published sizes are in characters,
UniMax's budget too (Chung et al. 2023). A map-style task is counted from its tokenized rows (examples, tokens the
model reads) and their ``characters`` column (the text they came from); a streamed task uses its declared ``size`` or, with ``size: count``, one
pass over its stream. Counts are cached under ``<cache>/sizes/<hash>.json``, keyed by the data's content
(a dataset's fingerprint, or each streamed file's path, size and modification time) and the tokenizer.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pyarrow.compute as pc

from ..files import atomic_write_text
from ..seen import CHARACTERS
from .cache import stable_hash
from .columns import column_arrow
from .spec import SIZE_UNITS

__all__ = ["TaskSizes", "dataset_sizes", "file_identity"]

logger = logging.getLogger(__name__)


def dataset_sizes(tokenized: Any) -> dict[str, float]:
    """Examples, tokens (as ``row_sizes`` counts them) and characters (the rows' ``characters`` column, when they
    have one) of a tokenized split."""
    out = {"examples": float(len(tokenized))}
    tokens = pc.sum(pc.list_value_length(column_arrow(tokenized, "input_ids"))).as_py() or 0
    if "attention_mask" in tokenized.column_names and "labels" in tokenized.column_names:
        tokens += pc.sum(pc.list_value_length(column_arrow(tokenized, "labels"))).as_py() or 0
    out["tokens"] = float(tokens)
    if CHARACTERS in tokenized.column_names:
        out["characters"] = float(pc.sum(column_arrow(tokenized, CHARACTERS)).as_py() or 0)
    return out


def file_identity(files: Sequence[str]) -> list[tuple[str, int, int]]:
    """What a streamed task's content is known by: each file's path, size and modification time."""
    out = []
    for f in files:
        st = os.stat(f)
        out.append((os.path.abspath(f), st.st_size, st.st_mtime_ns))
    return out


class TaskSizes:
    """Each task's size per unit; counting (a callable per task) runs at most once, cached on disk by ``keys``.

    Args:
        counters: task -> a callable counting its sizes (``{unit: value}``), or ``None`` when it cannot be counted
            (a streamed task without ``size: count``).
        declared: task -> sizes given in the recipe (they win over counting).
        keys: task -> what identifies its content (for the cache); ``cache_dir``: where the counts are kept.
    """

    def __init__(
        self,
        counters: Mapping[str, Callable[[], dict[str, float]] | None],
        declared: Mapping[str, Mapping[str, float]] | None = None,
        keys: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self._counters = dict(counters)
        self._declared = {t: dict(v) for t, v in (declared or {}).items()}
        self._keys = dict(keys or {})
        self._cache = Path(cache_dir) / "sizes" if cache_dir is not None else None
        self._counted: dict[str, dict[str, float]] = {}

    @property
    def tasks(self) -> list[str]:
        return list(self._counters)

    def of(self, unit: str, tasks: Sequence[str] | None = None) -> dict[str, float]:
        """``{task: size in unit}``; a task whose size in ``unit`` is not known raises ``ValueError`` with the fix."""
        if unit not in SIZE_UNITS:
            raise ValueError(f"`size_unit` must be one of {SIZE_UNITS}, got {unit!r}.")
        out = {}
        for task in tasks or self.tasks:
            value = self._declared.get(task, {}).get(unit)
            if value is None and self._counters.get(task) is not None:
                value = self._count(task).get(unit)
            if value is None:
                raise ValueError(f"task `{task}` is streamed and its size in {unit} is not known: declare it on the "
                                 f"task (`size: {{{unit}: N}}`) or count it with one pass (`size: count`), or mix "
                                 "with `strategy: static`, which needs no sizes.")
            out[task] = float(value)
        return out

    def per_example(self, unit: str, tasks: Sequence[str]) -> float:
        """Mean ``unit`` per example over ``tasks`` (to express an example budget in that unit)."""
        if unit == "examples":
            return 1.0
        try:
            examples, units = self.of("examples", tasks), self.of(unit, tasks)
        except ValueError as e:
            raise ValueError(f"a budget in {unit} (UniMax, or an epoch cap) is converted from the stage's examples "
                             f"with each task's {unit} per example, so every task needs its size in examples too: {e}"
                             ) from None
        return sum(units.values()) / sum(examples.values())

    def _count(self, task: str) -> dict[str, float]:
        if task in self._counted:
            return self._counted[task]
        path = self._cache / f"{stable_hash({'task': task, 'key': self._keys.get(task)})}.json" if (
            self._cache is not None and task in self._keys) else None
        if path is not None and path.is_file():
            self._counted[task] = json.loads(path.read_text())
            return self._counted[task]
        logger.info("task %s: counting its size (cached after the first run)", task)
        counted = self._counters[task]()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(counted))
        self._counted[task] = counted
        return counted
