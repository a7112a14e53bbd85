"""What training counts as *seen* per task, and where each count is recorded.

``MixtureTrainer`` counts, per task, the examples it trained on, their target tokens (what the loss scores) and the
characters of text they came from (rows carry their count in a ``characters`` column, written by the tokenizing
functions). The counts are logged as ``<unit>_seen_<task>``, checkpointed, and kept in every stage record as
``<unit>_seen: {task: n}``. A rate strategy's ``size_unit`` (``examples`` / ``tokens`` / ``characters``) reads the
matching count (``tokens`` -> target tokens), so the sweep's efficiency plot and summary count in the mixture's unit.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["CHARACTERS", "SEEN_UNITS", "seen_key", "seen_label", "seen_of_size_unit", "total_seen"]

CHARACTERS = "characters"  # the row column holding the characters of text a training row came from
SEEN_UNITS = ("examples", "target_tokens", "characters")
_OF_SIZE_UNIT = {"examples": "examples", "tokens": "target_tokens", "characters": "characters"}


def seen_key(unit: str) -> str:
    """``examples`` -> ``examples_seen``: a record's key, and (``+ "_<task>"``) a log's."""
    if unit not in SEEN_UNITS:
        raise ValueError(f"seen counts are in {SEEN_UNITS}, got {unit!r}.")
    return f"{unit}_seen"


def seen_of_size_unit(size_unit: str) -> str:
    """The seen count that measures a mixture's ``size_unit`` (``tokens``: the target tokens the loss scores)."""
    if size_unit not in _OF_SIZE_UNIT:
        raise ValueError(f"`size_unit` must be one of {sorted(_OF_SIZE_UNIT)}, got {size_unit!r}.")
    return _OF_SIZE_UNIT[size_unit]


def seen_label(size_unit: str) -> str:
    """What a table or an axis calls the count of a ``size_unit``: ``"examples"``, ``"target tokens"``, ``"characters"``."""
    return seen_of_size_unit(size_unit).replace("_", " ")


def total_seen(stages: Iterable[Mapping[str, Any]], unit: str, task: str) -> int | None:
    """``task``'s count in ``unit`` over stage records: a stage that did not train the task adds 0; one that trained
    it without counting the unit (rows without a ``characters`` column, or a record older than the unit) makes the
    total unknown (``None``)."""
    total = 0
    for stage in stages:
        if task not in (stage.get(seen_key("examples")) or {}):
            continue
        n = (stage.get(seen_key(unit)) or {}).get(task)
        if n is None:
            return None
        total += int(n)
    return total
