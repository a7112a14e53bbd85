"""Task metadata carried inside each split's ``DatasetInfo`` (survives ``save_to_disk``, ``map``, ``filter``).

``tokenize_tasks`` and ``train_tokenizer`` receive only ``{name: DatasetDict}``; the task type and
target tag travel with the data so they need no extra arguments.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import datasets

__all__ = ["set_task_meta", "task_meta"]

_KEY = "hf_ptjf_task"


def set_task_meta(dsd: datasets.DatasetDict, *, name: str, type: str, lang: str | None) -> datasets.DatasetDict:
    """A copy of ``dsd`` whose splits carry ``{name, type, lang, tag}`` (the data itself is shared, not copied)."""
    meta = {"name": name, "type": type, "lang": lang, "tag": f"<2{lang}>" if type == "translation" and lang else None}
    out = datasets.DatasetDict()
    for split, ds in dsd.items():
        ds = copy.copy(ds)  # shallow: same Arrow table, own info
        ds._info = ds.info.copy()
        ds._info.description = json.dumps({_KEY: meta}, sort_keys=True)
        out[split] = ds
    return out


def task_meta(name: str, dsd: datasets.DatasetDict) -> dict[str, Any]:
    """The task metadata of ``dsd``, or one inferred from its columns and a name like ``en-fr``.

    Raises ``ValueError`` when a translation task's target language cannot be known.
    """
    first = next(iter(dsd.values()))
    try:
        meta = json.loads(first.info.description or "{}").get(_KEY)
    except (json.JSONDecodeError, AttributeError):
        meta = None
    if meta:
        return meta
    cols = set(first.column_names)
    if {"source", "target"} <= cols:
        m = re.fullmatch(r"[a-z]{2,3}-([a-z]{2,3})", name)
        if not m:
            raise ValueError(
                f"task {name!r}: cannot tell its target language; name it like 'en-fr' or load it with "
                "hf_ptjf.data.load_tasks (or use hf_ptjf.data.set_task_meta(dsd, name=..., type='translation', "
                "lang=...))."
            )
        lang = m.group(1)
        return {"name": name, "type": "translation", "lang": lang, "tag": f"<2{lang}>"}
    if "text" in cols:
        return {"name": name, "type": "lm", "lang": None, "tag": None}
    raise ValueError(
        f"task {name!r}: expected columns `source`/`target` (translation) or `text` (lm), got {sorted(cols)}."
    )
