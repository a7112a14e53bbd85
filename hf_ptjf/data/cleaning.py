"""Cleaning rules for Bible text and generic length filters, vectorised with pandas.

Every rule is a (regex, replacement) applied to a whole version at once. Known noise in
``bible.db`` and the rule that handles it:

* WEB, Darby, Elberfelder, Swahili...: ``[supplied words]`` -> brackets dropped, words kept;
  ``<...>`` (Swahili) likewise.
* WEB, Romanian: backticks used as apostrophes / quotes -> ``'``.
* Hindi: ``*`` footnote marks -> dropped; cross references ``(भज. 78:24)`` -> dropped.
* Segond, Ostervald, Schlachter, Russian, Japanese...: Hebrew verse numbers ``(30:1)`` kept in
  the text where the versification differs from the KJV key -> dropped (the row key is already KJV);
  likewise ``(32-1)`` (Indonesian, Ukrainian, Vietnamese) and Chinese notes ``（本节在《马索拉抄本》为32:1）``.
* Turkish: ``(aynı)`` ("same": a verse merged into its neighbour) and ``(ADDED ...)`` editor notes -> dropped.
* Psalm superscriptions ("A Psalm of David...") are merged into verse 1 by most versions
  (Romanian in parentheses, Segond after ``(3:1)``, Spanish/Arabic inline) but not by KJV/WEB,
  and cannot be split off reliably -> Psalms verse 1 is dropped from every version.
* Reina Valera 1909, Diodati, Almeida: chapter-initial words set in capitals (``EN el principio``,
  ``Y FUERON acabados``) -> ``En el principio``, ``Y fueron acabados``.
* Romanian (Cornilescu): ``i- a`` tokenisation artefacts -> ``i-a``; ``: , `` opening quotes -> ``: '``;
  cedilla ş/ţ -> comma-below ș/ț (modern orthography, as in WMT16 En-Ro).
* Soft hyphens, zero-width spaces, LRM/RLM marks and BOMs -> dropped (ZWJ/ZWNJ are kept: they
  are meaningful in Devanagari, Bengali and Persian).
* Tabs, newlines, repeated spaces -> one space; empty verses and verses without a letter
  (``[]``, ``...``, ``-`` for verses merged into a neighbour) -> dropped.

Rules are RE2 patterns run by ``pyarrow.compute`` (C++, ~0.1 s per 31k-verse version).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .bible import PSALMS

__all__ = ["CLEANING_VERSION", "RULES", "clean_text", "clean_version", "length_ratio_mask", "has_letter"]

# bump when a rule changes: it is part of every cache key
CLEANING_VERSION = 3

ALL, BIBLE = "all", "bible"
RO = frozenset("u")

# (name, RE2 regex, replacement, scope) applied in this order. Scope: ALL (user data too),
# BIBLE (every Bible version) or a set of version codes.
RULES: tuple[tuple[str, str, str, str | frozenset[str]], ...] = (
    ("verse_refs", r"\s*[(（][^()（）]*\d+\s*:\s*\d+[^()（）]*[)）]", "", BIBLE),
    ("verse_markers", r"\s*\(\d+-\d+[a-z]?\)", "", BIBLE),  # "(32-1)": Indonesian, Ukrainian, Vietnamese
    ("open_verse_ref", r"^\(\d+:\d+\s*", "", BIBLE),  # Segond Lev 6:2 lost its ")"
    ("tr_placeholders", r"^\(aynı\)$|^\(ADDED[^)]*\)\s*", "", frozenset("t")),
    ("marks", r"[*\[\]<>\x{00ad}\x{200b}\x{200e}\x{200f}\x{feff}]", "", BIBLE),
    ("backticks", r"`", "'", BIBLE),
    ("ro_hyphen_space", r"(\pL)- (\pL)", r"\1-\2", RO),
    ("ro_quote", r"([:;]) , ", r"\1 '", RO),
    ("ro_s_cedilla", "ş", "ș", RO),
    ("ro_S_cedilla", "Ş", "Ș", RO),
    ("ro_t_cedilla", "ţ", "ț", RO),
    ("ro_T_cedilla", "Ţ", "Ț", RO),
    ("invisible", r"[\x{200b}\x{feff}]", "", ALL),
    # runs of 2+ spaces, or any single non-ASCII/control space (matching every " " is 5x slower)
    (
        "whitespace",
        r"[\s\p{Z}]{2,}|[\t\n\r\f\v\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]",
        " ",
        ALL,
    ),
)

_LETTER = r"\pL"
DROP_CAPS = frozenset("vda")  # versions that print a chapter's first word(s) in capitals


def _applies(scope: str | frozenset[str], code: str | None) -> bool:
    return scope == ALL or (code is not None and (scope == BIBLE or code in scope))


def clean_text(text: pd.Series, code: str | None = None) -> pd.Series:
    """NFC, then the :data:`RULES` for Bible version ``code`` (``None``: user data, whitespace rules only), strip."""
    arr = pc.utf8_normalize(pa.array(text.astype(str), pa.string()), "NFC")
    for _, pattern, repl, scope in RULES:
        if _applies(scope, code):
            arr = pc.replace_substring_regex(arr, pattern, repl)
    arr = pc.utf8_trim_whitespace(arr)
    out = arr.to_pandas()
    out.index = text.index
    return out


def has_letter(text: pd.Series) -> np.ndarray:
    """True where the text contains at least one letter (any script)."""
    return pc.match_substring_regex(pa.array(text.astype(str), pa.string()), _LETTER).to_numpy(zero_copy_only=False)


def undo_drop_caps(text: str) -> str:
    """``"Y FUERON acabados"`` -> ``"Y fueron acabados"``: lower leading all-capital words that are
    followed by a lower-case word (``"SENHOR Deus"``, a name, is left alone)."""
    words = text.split(" ")
    n = 0
    while n < len(words) and words[n].isupper():
        n += 1
    if n == 0 or n == len(words) or not words[n][:1].islower():
        return text
    head = " ".join(words[:n]).lower()
    first = next((i for i, ch in enumerate(head) if ch.isalpha()), 0)
    return head[:first] + head[first : first + 1].upper() + head[first + 1 :] + " " + " ".join(words[n:])


def clean_version(df: pd.DataFrame, code: str) -> pd.DataFrame:
    """Clean one version's verses (columns ``verse, b, c, v, text``); drops empty verses and Psalms v1."""
    out = df.loc[~((df.b == PSALMS) & (df.v == 1))].copy()
    out["text"] = clean_text(out["text"], code)
    if code in DROP_CAPS:
        first = out.v == 1
        out.loc[first, "text"] = out.loc[first, "text"].map(undo_drop_caps)
    return out.loc[has_letter(out["text"])].reset_index(drop=True)


def length_ratio_mask(source: pd.Series, target: pd.Series, max_ratio: float | None) -> np.ndarray:
    """Keep pairs whose target/source character-length ratio is within ``max_ratio`` of the median ratio.

    Normalising by the pair's median ratio makes one threshold work across scripts (Chinese text is
    ~3x shorter than English in characters, Hindi about as long). ``None`` keeps everything.
    """
    if max_ratio is None:
        return np.ones(len(source), dtype=bool)
    if not max_ratio > 1:
        raise ValueError(f"`max_length_ratio` must be > 1 (or null to disable), got {max_ratio!r}.")
    ls = source.str.len().to_numpy(np.float64).clip(min=1)
    lt = target.str.len().to_numpy(np.float64).clip(min=1)
    r = np.log(lt / ls)
    if r.size == 0:
        return np.ones(0, dtype=bool)
    return np.abs(r - np.median(r)) <= np.log(max_ratio)
