"""Generic loaders for the user's own data: JSON lines, CSV, TSV and ``datasets`` datasets."""

from __future__ import annotations

import json

import datasets
import pytest

from hf_ptjf.data import load_tasks, task_meta
from hf_ptjf.data.columns import column_list

PAIRS = [(f"Hello  number {i} , my\tfriend.", f"Bonjour numéro {i}, mon ami.") for i in range(200)]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_jsonl_with_column_mapping_carves_dev_and_test(tmp_path):
    f = _write_jsonl(tmp_path / "pairs.jsonl", [{"en": s, "fr": t} for s, t in PAIRS] + [{"en": "  ", "fr": "x"}])
    spec = {"name": "en-fr", "source": "json", "path": f, "columns": {"source": "en", "target": "fr"}}
    dsd = load_tasks([spec], cache_dir=tmp_path / "cache", num_dev=15, num_test=15, seed=0)["en-fr"]
    assert dsd["train"].column_names == ["id", "source", "target"]
    assert (len(dsd["validation"]), len(dsd["test"])) == (15, 15)
    assert len(dsd["train"]) == 170  # 200 pairs - 30 held out; the blank pair is dropped
    assert dsd["train"][0]["source"].startswith("Hello number ")  # whitespace normalised
    assert dsd["train"][0]["source"].endswith(" , my friend.")  # nothing else touched
    ids = [set(column_list(dsd[s], "id")) for s in dsd]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert task_meta("en-fr", dsd)["tag"] == "<2fr>"
    again = load_tasks([spec], cache_dir=tmp_path / "cache", num_dev=15, num_test=15, seed=0)["en-fr"]
    assert again["validation"].to_dict() == dsd["validation"].to_dict()


def test_csv_and_tsv_with_own_splits_and_subsample(tmp_path):
    pairs = [(s.replace("\t", " "), t) for s, t in PAIRS]  # no tabs inside TSV fields
    train = tmp_path / "train.tsv"
    train.write_text("en\tro\n" + "".join(f'"Quoted" {s}\t{t}\n' for s, t in pairs[:150]), encoding="utf-8")
    dev = tmp_path / "dev.tsv"
    dev.write_text("en\tro\n" + "".join(f"{s}\t{t}\n" for s, t in pairs[150:160]), encoding="utf-8")
    csv = tmp_path / "test.csv"
    csv.write_text(
        "id,en,ro\n" + "".join(f'{i},"{s}","{t}"\n' for i, (s, t) in enumerate(pairs[160:170])), encoding="utf-8"
    )
    specs = [
        {
            "name": "en-ro",
            "source": "tsv",
            "data_files": {"train": str(train), "validation": str(dev)},
            "columns": {"source": "en", "target": "ro"},
            "train_size": 40,
        },
        {
            "name": "csv-task",
            "source": "csv",
            "path": str(csv),
            "columns": {"source": "en", "target": "ro", "id": "id"},
            "lang": "ro",
        },
    ]
    out = load_tasks(specs, cache_dir=tmp_path / "cache", num_dev=5, num_test=5, seed=0)
    tsv = out["en-ro"]
    assert len(tsv["validation"]) == 10  # the user's own validation split is used as is
    assert len(tsv["test"]) == 5  # no test split given: carved from train
    assert len(tsv["train"]) == 40
    assert tsv["train"][0]["source"].startswith('"Quoted"')  # TSV quotes are text, not CSV quoting
    assert all(i.isdigit() for i in column_list(out["csv-task"]["train"], "id"))  # the mapped id column
    assert len(out["csv-task"]["train"]) == 8
    assert task_meta("csv-task", out["csv-task"])["tag"] == "<2ro>"


def test_hf_dataset_with_nested_columns(tmp_path):
    rows = {"translation": [{"en": f"Sentence {i}.", "de": f"Satz {i}."} for i in range(60)]}
    dsd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows),
            "validation": datasets.Dataset.from_dict({"translation": [{"en": "a b", "de": "c d"}]}),
            "test": datasets.Dataset.from_dict({"translation": [{"en": "e f", "de": "g h"}]}),
        }
    )
    dsd.save_to_disk(str(tmp_path / "wmt"))
    spec = {
        "name": "en-de",
        "source": "hf",
        "path": str(tmp_path / "wmt"),
        "columns": {"source": "translation.en", "target": "translation.de"},
    }
    out = load_tasks([spec], cache_dir=tmp_path / "cache")["en-de"]
    assert (len(out["train"]), len(out["validation"]), len(out["test"])) == (60, 1, 1)
    assert out["test"][0] == {"id": "test-0", "source": "e f", "target": "g h"}


def test_lm_task_from_json(tmp_path):
    f = _write_jsonl(tmp_path / "mono.jsonl", [{"sentence": f"Propoziția numărul {i}."} for i in range(50)])
    spec = {"name": "lm-ro", "type": "lm", "source": "json", "path": f, "columns": {"text": "sentence"}}
    dsd = load_tasks([spec], cache_dir=tmp_path / "cache", num_dev=5, num_test=5)["lm-ro"]
    assert dsd["train"].column_names == ["id", "text"] and len(dsd["train"]) == 40
    assert task_meta("lm-ro", dsd)["type"] == "lm"


def test_bad_column_mapping_names_the_fix(tmp_path):
    f = _write_jsonl(tmp_path / "p.jsonl", [{"en": "a", "fr": "b"}] * 20)
    spec = {"name": "en-fr", "source": "json", "path": f, "columns": {"source": "english", "target": "fr"}}
    with pytest.raises(ValueError, match=r"columns.*source -> english.*\['en', 'fr'\]"):
        load_tasks([spec], cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="`columns` keys"):
        load_tasks([{"name": "en-fr", "source": "json", "path": f, "columns": {"src": "en"}}], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="needs `path`"):
        load_tasks([{"name": "en-fr", "source": "json"}], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="set `lang`"):
        load_tasks([{"name": "mytask", "source": "json", "path": f}], cache_dir=tmp_path)


def test_an_empty_user_file_names_the_task(tmp_path):
    from hf_ptjf.data import load_tasks

    empty = tmp_path / "pairs.jsonl"
    empty.write_text("")
    spec = {"name": "en-xx", "source": "json", "path": str(empty), "columns": {"source": "en", "target": "xx"}}
    with pytest.raises(ValueError, match=r"task `en-xx` could not load its json data .*no rows"):
        load_tasks([spec], cache_dir=tmp_path / "cache")
