"""Suggestions for misspelled names in error messages (the one did-you-mean of the project)."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(key: object, allowed: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """`` Did you mean `x`?`` (or `` `x`, `y` or `z`?`` with ``n > 1``) for the entries of ``allowed`` closest to
    ``key``, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(key), list(dict.fromkeys(allowed)), n=n, cutoff=cutoff)
    if not close:
        return ""
    names = [f"`{c}`" for c in close]
    return f" Did you mean {names[0] if len(names) == 1 else ', '.join(names[:-1]) + ' or ' + names[-1]}?"
