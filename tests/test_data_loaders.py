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


def _shards(folder, n=2, rows=30, bad=None):
    """``n`` JSON-lines shards of pairs; ``bad=(shard, line)`` breaks that line (1-based)."""
    folder.mkdir(exist_ok=True)
    for s in range(n):
        lines = [json.dumps({"source": f"The word {s} {i} here", "target": f"Le mot {s} {i} ici"}) for i in range(rows)]
        if bad is not None and bad[0] == s:
            lines[bad[1] - 1] = '{"source": oops}'
        (folder / f"part-{s}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("streaming", [True, False])
def test_a_train_pattern_that_matches_no_file_is_named(tmp_path, streaming):
    """Once said "`data_files` has no `train` split (it has ['test', 'train', 'validation'])": the split was there, its
    glob matched nothing."""
    folder = _shards(tmp_path / "shards")
    pattern = str(folder / "nope-*.jsonl")
    spec = {"name": "en-fr", "source": "json", "streaming": streaming, "lang": "fr",
            "data_files": {"train": pattern, "validation": str(folder / "part-0.jsonl"),
                           "test": str(folder / "part-1.jsonl")}}
    with pytest.raises(ValueError) as e:
        load_tasks([spec], cache_dir=tmp_path / "cache", num_dev=2, num_test=2)
    message = str(e.value)
    assert "task `en-fr`" in message and f"`data_files.train` pattern '{pattern}' matches no file" in message, message
    assert "has no `train` split" not in message and "relative paths are from" in message
    with pytest.raises(ValueError, match=r"`path` pattern '.*nope\*\.jsonl' matches no file"):
        load_tasks([{**spec, "data_files": None, "path": str(tmp_path / "nope*.jsonl")}], cache_dir=tmp_path / "c2")


@pytest.mark.parametrize("streaming, bad", [(True, (1, 4)), (True, (0, 1)), (False, (1, 4))])
def test_a_malformed_json_row_names_the_file_and_the_line(tmp_path, streaming, bad):
    """A broken row in a shard once ended with the parser's own words (`error: JSON parse error: Invalid value. in
    row 3`); the message names the task, the file, the line and the fix."""
    folder = _shards(tmp_path / "shards", bad=bad)
    spec = {"name": "en-fr", "source": "json", "streaming": streaming, "lang": "fr",
            "data_files": {"train": str(folder / "part-*.jsonl")}}
    with pytest.raises(ValueError) as e:
        load_tasks([spec], cache_dir=tmp_path / "cache", num_dev=2, num_test=2)
    message = str(e.value)
    assert message.startswith("task `en-fr`: ") and f"part-{bad[0]}.jsonl line {bad[1]} is not valid JSON" in message, \
        message
    assert "each line must be one JSON object" in message


def test_a_malformed_json_row_met_while_streaming_names_the_line(tmp_path):
    """A shard broken after the run opened it (or past the rows read up front) is named with its line when read."""
    from hf_ptjf.data.stream import StreamError, TaskStream

    folder = _shards(tmp_path / "shards", rows=30)
    files = sorted(str(p) for p in folder.glob("*.jsonl"))
    train = datasets.load_dataset("json", data_files=files, split="train", streaming=True)
    text = (folder / "part-1.jsonl").read_text().splitlines()
    text[6] = '{"source": "x", oops}'
    (folder / "part-1.jsonl").write_text("\n".join(text) + "\n")
    stream = TaskStream.from_iterable("en-fr", train, window=10, shard_names=files)
    with pytest.raises(StreamError, match=r"task `en-fr`: reading .*part-1\.jsonl failed: line 7 is not valid JSON .*"
                                          r"Fix that line"):
        list(stream._windows())
