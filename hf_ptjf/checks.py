"""Value checks shared by every config section: did-you-mean and typed numbers, each written once.

A ``bool`` is an ``int`` in Python, so ``max_steps: true`` would pass a plain ``isinstance(value, int)``: every
integer and number check here refuses booleans.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Iterable

__all__ = ["did_you_mean", "is_integer", "is_number", "size_in_bytes"]


def did_you_mean(key: object, allowed: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """`` Did you mean `x`?`` (or `` `x`, `y` or `z`?`` with ``n > 1``) for the entries of ``allowed`` closest to
    ``key``, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(key), list(dict.fromkeys(allowed)), n=n, cutoff=cutoff)
    if not close:
        return ""
    names = [f"`{c}`" for c in close]
    return f" Did you mean {names[0] if len(names) == 1 else ', '.join(names[:-1]) + ' or ' + names[-1]}?"


def is_integer(value: Any, minimum: int | None = None) -> bool:
    """``value`` is an ``int`` (not a ``bool``), and ``>= minimum`` when one is given."""
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def is_number(value: Any, low: float | None = None, high: float | None = None, *, open_low: bool = False) -> bool:
    """``value`` is a finite-or-not real number (not a ``bool``) in ``[low, high)`` (``(low, high)`` with
    ``open_low``); a bound of ``None`` is no bound."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        return False
    if low is not None and (value <= low if open_low else value < low):
        return False
    return high is None or value < high


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def size_in_bytes(value: Any) -> int | None:
    """Bytes of a size written as transformers' ``max_shard_size`` is: a positive int, or ``"5GB"`` / ``"500MB"``
    (powers of 10) / ``"2GiB"`` (powers of 2); None when ``value`` is none of these."""
    if is_integer(value, 1):
        return int(value)
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", value.upper())
    if not m:
        return None
    size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2) or ""])
    return size if size > 0 else None
