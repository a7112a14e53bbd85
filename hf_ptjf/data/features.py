"""Column schemas shared by the task builders."""

from __future__ import annotations

import datasets

__all__ = ["FORMAT", "LM", "TRANSLATION", "features_for"]

FORMAT = 1  # bump when the on-disk layout of a task changes: it is part of every cache key
TRANSLATION = datasets.Features({k: datasets.Value("string") for k in ("id", "source", "target")})
LM = datasets.Features({k: datasets.Value("string") for k in ("id", "text")})


def features_for(task_type: str) -> datasets.Features:
    """The raw-text columns of a ``translation`` or ``lm`` task."""
    return TRANSLATION if task_type == "translation" else LM
