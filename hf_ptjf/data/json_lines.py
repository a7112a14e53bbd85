"""Which line of a JSON-lines file is broken.

The readers (pyarrow, then datasets' fallbacks) name a row of the block they parse (``JSON parse error: Invalid
value. in row 3``), not a file or a line of it; a user fixes a line of a file. Read only once a read has failed.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
from typing import IO, Iterable

__all__ = ["first_bad_line", "first_bad_line_of", "is_json_lines"]

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_SUFFIXES = (".json", ".jsonl", ".ndjson")


def is_json_lines(path: str) -> bool:
    """A path named like a JSON(-lines) file, compressed or not (``part-0.jsonl``, ``en.json.gz``)."""
    name = str(path).lower()
    for suffix in _OPENERS:
        name = name.removesuffix(suffix)
    return name.endswith(_SUFFIXES)


def _open(path: str) -> IO[str]:
    opener = next((o for suffix, o in _OPENERS.items() if str(path).lower().endswith(suffix)), open)
    return opener(path, "rt", encoding="utf-8", errors="replace")


def first_bad_line(path: str) -> str | None:
    """``"<path> line N is not valid JSON (why, column C); each line must be one JSON object, ..."`` for the first
    line of ``path`` that is not a JSON object, or ``None`` (all lines are, or the file cannot be read)."""
    if not os.path.isfile(path):
        return None
    try:
        with _open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    return (f"{path} line {number} is not valid JSON ({e.msg}, column {e.colno}); each line must be "
                            'one JSON object, e.g. {"source": "...", "target": "..."}.')
                if not isinstance(row, dict):
                    return (f"{path} line {number} is a JSON {type(row).__name__}, not an object; each line must be "
                            "one object.")
    except (OSError, EOFError, ValueError):  # (unreadable or a broken archive: the reader's own error says it)
        return None
    return None


def first_bad_line_of(files: Iterable[str]) -> str | None:
    """:func:`first_bad_line` of the first of ``files`` (JSON lines, in the order they are read) that has one: the
    files before it were read whole, so the scan reads no more than the reader did."""
    for path in files:
        bad = first_bad_line(path)
        if bad is not None:
            return bad
    return None
