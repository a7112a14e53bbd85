"""Held-out texts are shared across tasks on the user's own data (the leak data/splits.py guards for the Bible)."""

from __future__ import annotations

import json
import logging

import pyarrow as pa

from hf_ptjf.data import load_tasks
from hf_ptjf.data.columns import column_arrow
from hf_ptjf.data.heldout import normalise_for_matching


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _sources(ds):
    return set(normalise_for_matching(column_arrow(ds, "source")).to_pylist())


def _corpus(tmp_path):
    """Three tasks translating one English corpus: en-ro and en-hi reuse en-fr's sources (en-ro with other
    case and spacing), so independently carved dev/test splits overlap the other tasks' training rows."""
    fr = _write(tmp_path / "fr.jsonl", [{"source": f"Sentence number {i} about things.", "target": f"Phrase {i}."}
                                        for i in range(1000)])
    ro = _write(tmp_path / "ro.jsonl", [{"source": f"SENTENCE  number {i} about   things.", "target": f"Fraza {i}."}
                                        for i in range(300)])
    hi = _write(tmp_path / "hi.jsonl", [{"source": f"Sentence number {i} about things.", "target": f"Vakya {i}."}
                                        for i in range(300)])
    return [
        {"name": "en-fr", "source": "json", "path": fr, "lang": "fr"},
        {"name": "en-ro", "source": "json", "path": ro, "lang": "ro"},
        {"name": "en-hi", "source": "json", "path": hi, "lang": "hi", "heldout": "own"},
    ]


def test_no_task_trains_on_another_tasks_heldout_sources(tmp_path, caplog):
    specs = _corpus(tmp_path)
    with caplog.at_level(logging.INFO, logger="hf_ptjf.data.heldout"):
        corpora = load_tasks(specs, cache_dir=tmp_path / "cache", num_dev=20, num_test=20, seed=0)
    held = set().union(*(_sources(d[s]) for d in corpora.values() for s in ("validation", "test")))
    assert len(held) > 60  # the three tasks' dev/test sources differ (carved with per-task rows)
    for name in ("en-fr", "en-ro"):
        assert not _sources(corpora[name]["train"]) & held, name
    # en-ro lost the rows whose (normalised) source is held out by en-fr or en-hi, and the run says how many
    lost = {r.getMessage().split(":")[0]: r.getMessage() for r in caplog.records}
    assert "task en-ro" in lost and "task en-fr" in lost and "task en-hi" not in lost
    assert len(corpora["en-ro"]["train"]) < 300 - 40
    assert f"{300 - 40 - len(corpora['en-ro']['train'])} of {300 - 40} training rows removed" in lost["task en-ro"]
    # heldout: own keeps the task's split as given: other tasks' held-out sources stay in its training data
    hi_train, hi_held = _sources(corpora["en-hi"]["train"]), _sources(corpora["en-hi"]["validation"])
    assert hi_train & (held - hi_held - _sources(corpora["en-hi"]["test"]))
    assert not hi_train & hi_held


def test_bible_only_recipes_are_unchanged_by_the_text_guard():
    """Bible tasks guard each other by verse id; the text guard must not remove repeated verse texts from them."""
    from hf_ptjf.data.heldout import share_heldout_texts
    from hf_ptjf.data.spec import TaskSpec

    specs = [TaskSpec.from_dict({"name": "en-fr", "source": "bible", "tgt_versions": ["Segond"], "train_size": 300}),
             TaskSpec.from_dict({"name": "en-ro", "source": "bible", "tgt_versions": ["Cornilescu"], "train_size": 80})]
    corpora = load_tasks(specs, num_dev=40, num_test=40)
    _, removed = share_heldout_texts(corpora, specs)
    assert removed == {}


def test_normalised_comparison():
    got = normalise_for_matching(pa.array(["  Hello\u00a0 WORLD ", "ﬁne", "Hello world"])).to_pylist()
    assert got == ["hello world", "fine", "hello world"]


def test_a_capped_carved_split_is_reported_with_the_fix(tmp_path, caplog):
    ro = _write(tmp_path / "ro.jsonl", [{"source": f"Sentence {i} here.", "target": f"Fraza {i}."} for i in range(300)])
    with caplog.at_level(logging.WARNING, logger="hf_ptjf.data.user_tasks"):
        corpora = load_tasks([{"name": "en-ro", "source": "json", "path": ro, "lang": "ro"}],
                             cache_dir=tmp_path / "cache", num_dev=200, num_test=10)
    assert len(corpora["en-ro"]["validation"]) == 30
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "num_dev: 200 -> 30 rows" in msg and "num_test" not in msg.split("(")[0] and "validation_split" in msg


def test_train_size_is_drawn_after_the_shared_heldout_texts_are_removed(tmp_path):
    specs = _corpus(tmp_path)
    specs[1]["train_size"] = 200  # en-ro: 260 rows after its own carve, fewer after en-fr's held-out texts go
    corpora = load_tasks(specs, cache_dir=tmp_path / "cache", num_dev=20, num_test=20, seed=0)
    held = set().union(*(_sources(d[s]) for d in corpora.values() for s in ("validation", "test")))
    assert len(corpora["en-ro"]["train"]) == 200 and not _sources(corpora["en-ro"]["train"]) & held
