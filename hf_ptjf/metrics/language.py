"""Which language a hypothesis is in, offline, and the off-target rate: the share of a task's hypotheses that are not
in its target language (the failure mode of low-resource multilingual MT that BLEU cannot tell from a bad
translation).

The detector is ``py3langid`` (a fork of langid.py that ships its own model, pure Python + numpy, 140 labels).
It was chosen by accuracy on short strings: on 500 dev verses of each of the 22 languages of the shipped Bible
versions it is right on 99.9% of whole verses and 99.3% of their first 30 characters when restricted to those
languages (97.7% / 94.8% over all of its 140 labels, where Indonesian falls to 68% as Malay); lingua and langdetect
score lower (docs/evaluation.md, ``bench/langid_accuracy.py``). So a detector is restricted to the languages that
can occur in a run (the caller passes them: the shipped Bible languages and every task's target): an off-target
hypothesis there is an answer in another task's language or a copy of the source, and the nearest neighbours
that an unrestricted model confuses (id/ms, es/gl, ru/uk) stop counting correct outputs as off-target.

    >>> detector = language_detector(["en", "fr", "ro", "hi"])
    >>> detector.detect(["Au commencement, Dieu créa les cieux et la terre.", "", "परमेश्वर ने आकाश बनाया"])
    ['fr', None, 'hi']
    >>> off_target_rate(["La început Dumnezeu a făcut cerurile", "Au commencement"], "ro", detector)
    0.5
"""

from __future__ import annotations

import functools
from typing import Iterable, Sequence

from py3langid.langid import MODEL_FILE, LanguageIdentifier

__all__ = ["DETECTOR_NAME", "LanguageDetector", "iso639_1", "language_detector", "off_target_rate",
           "off_target_verdicts", "unknown_language_note"]

#: What detects the languages (named in reports and notes).
DETECTOR_NAME = "py3langid"

# ISO 639-3 / 639-2 (B and T) codes of the languages py3langid labels with an ISO 639-1 code, for the language
# codes of NLLB-200 (fra_Latn), M2M100-style three-letter codes and 639-2/B spellings (fre, rum); NLLB's individual
# languages map to their macrolanguage's code (arb -> ar, pes -> fa, swh -> sw, zsm -> ms, ...).
_THREE_LETTER = {
    "afr": "af", "amh": "am", "arg": "an", "ara": "ar", "arb": "ar", "asm": "as", "aze": "az", "azj": "az",
    "bak": "ba", "bel": "be", "bul": "bg", "ben": "bn", "bre": "br", "bos": "bs", "cat": "ca", "ces": "cs",
    "cze": "cs", "cym": "cy", "wel": "cy", "dan": "da", "deu": "de", "ger": "de", "dzo": "dz", "ell": "el",
    "gre": "el", "eng": "en", "epo": "eo", "spa": "es", "est": "et", "ekk": "et", "eus": "eu", "baq": "eu",
    "fas": "fa", "per": "fa", "pes": "fa", "fin": "fi", "fao": "fo", "fra": "fr", "fre": "fr", "fry": "fy",
    "gle": "ga", "gla": "gd", "glg": "gl", "guj": "gu", "hau": "ha", "heb": "he", "hin": "hi", "hrv": "hr",
    "hat": "ht", "hun": "hu", "hye": "hy", "arm": "hy", "ind": "id", "ibo": "ig", "isl": "is", "ice": "is",
    "ita": "it", "jpn": "ja", "jav": "jv", "kat": "ka", "geo": "ka", "kaz": "kk", "khm": "km", "kan": "kn",
    "kor": "ko", "kur": "ku", "kmr": "ku", "kir": "ky", "lat": "la", "ltz": "lb", "lug": "lg", "lin": "ln",
    "lao": "lo", "lit": "lt", "lav": "lv", "lvs": "lv", "mlg": "mg", "plt": "mg", "mkd": "mk", "mac": "mk",
    "mal": "ml", "mon": "mn", "khk": "mn", "mar": "mr", "msa": "ms", "may": "ms", "zsm": "ms", "mlt": "mt",
    "mya": "my", "bur": "my", "nep": "ne", "npi": "ne", "nld": "nl", "dut": "nl", "nno": "nn", "nor": "no",
    "nob": "no", "oci": "oc", "orm": "om", "gaz": "om", "ori": "or", "ory": "or", "pan": "pa", "pol": "pl",
    "pus": "ps", "pbt": "ps", "por": "pt", "que": "qu", "quy": "qu", "ron": "ro", "rum": "ro", "rus": "ru",
    "kin": "rw", "san": "sa", "sme": "se", "sin": "si", "slk": "sk", "slo": "sk", "slv": "sl", "sna": "sn",
    "som": "so", "sqi": "sq", "alb": "sq", "als": "sq", "srp": "sr", "sot": "st", "swe": "sv", "swa": "sw",
    "swh": "sw", "tam": "ta", "tel": "te", "tgk": "tg", "tha": "th", "tuk": "tk", "tgl": "tl", "tur": "tr",
    "tat": "tt", "uig": "ug", "ukr": "uk", "urd": "ur", "uzb": "uz", "uzn": "uz", "vie": "vi", "vol": "vo",
    "wln": "wa", "xho": "xh", "yor": "yo", "zho": "zh", "chi": "zh", "zul": "zu",
}


def iso639_1(code: str) -> str:
    """The language of a task's ``lang`` or language code, as the detector labels it: ``fr``, ``fr_XX`` (mBART-50),
    ``fra_Latn`` (NLLB-200), ``fre`` / ``fra`` and ``pt-BR`` are all ``fr`` / ``pt``; a code without an ISO 639-1
    equivalent is returned lowercased (``ace_Arab`` -> ``ace``, which py3langid also labels)."""
    base = str(code).replace("-", "_").split("_")[0].lower()
    return _THREE_LETTER.get(base, base)


class LanguageDetector:
    """py3langid's shipped model, restricted to ``languages`` (those it knows; see the module docstring for why).

    Args:
        languages: ISO 639-1 codes (or any code :func:`iso639_1` maps) to choose among; None: all 140 labels.
    """

    def __init__(self, languages: Iterable[str] | None = None) -> None:
        # the model (~5 MB, half a second) loads here, when a run first scores hypotheses, not on import
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
        self.known: frozenset[str] = frozenset(self._identifier.labels)
        chosen = None if languages is None else sorted({iso639_1(x) for x in languages} & self.known)
        if chosen is not None and len(chosen) < 2:
            raise ValueError(f"`languages` must name at least two languages {DETECTOR_NAME} knows, got "
                             f"{sorted(languages or [])}.")
        if chosen is not None:
            self._identifier.set_languages(chosen)
        self.languages: tuple[str, ...] = tuple(chosen) if chosen is not None else tuple(sorted(self.known))

    def knows(self, lang: str) -> bool:
        """Whether ``lang`` (mapped by :func:`iso639_1`) is one of the languages this detector chooses among."""
        return iso639_1(lang) in self.languages

    def detect(self, texts: Sequence[str]) -> list[str | None]:
        """The language of each text; None for a text without a single letter (blank, digits or punctuation),
        which is in no language."""
        return [self._identifier.classify(t)[0] if any(c.isalpha() for c in t) else None for t in texts]


@functools.lru_cache(maxsize=8)
def _cached_detector(languages: tuple[str, ...] | None) -> LanguageDetector:
    return LanguageDetector(languages)


def language_detector(languages: Iterable[str] | None = None) -> LanguageDetector:
    """A :class:`LanguageDetector` for ``languages``, loaded once per set (every stage of a run shares it)."""
    key = None if languages is None else tuple(sorted({iso639_1(x) for x in languages}))
    return _cached_detector(key)


def off_target_verdicts(hypotheses: Sequence[str], target: str, detector: LanguageDetector
                        ) -> tuple[list[str | None], list[bool]]:
    """``(detected languages, off-target flags)`` of ``hypotheses``: a hypothesis is off target when its detected
    language is not ``target``; a blank one (no letter, detected as None) is not in the target language either."""
    if not detector.knows(target):
        raise ValueError(unknown_language_note(target))
    want = iso639_1(target)
    detected = detector.detect(hypotheses)
    return detected, [lang != want for lang in detected]


def off_target_rate(hypotheses: Sequence[str], target: str, detector: LanguageDetector) -> float:
    """The share of ``hypotheses`` not in the ``target`` language (rounded to 4 decimals, as runs record it)."""
    if len(hypotheses) == 0:
        raise ValueError("`hypotheses` is empty: pass at least one hypothesis to check.")
    _, flags = off_target_verdicts(hypotheses, target, detector)
    return round(sum(flags) / len(flags), 4)


def unknown_language_note(target: str) -> str:
    """What a run says instead of an off-target rate when the detector does not know the target language."""
    return (f"not measured: the language detector ({DETECTOR_NAME}) does not know the target language "
            f"{target!r} (ISO 639-1 {iso639_1(target)!r})")
