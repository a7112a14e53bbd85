"""Suggestions for misspelled names in error messages."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(key: object, allowed: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` Did you mean `x`?`` for the entry of ``allowed`` closest to ``key``, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=cutoff)
    return f" Did you mean `{close[0]}`?" if close else ""
