"""SentencePiece tokenizer: temperature-sampled corpus, T5 ids, save/load stability, tokenize_tasks."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from transformers import AutoTokenizer

from hf_ptjf.data import load_tasks, set_task_meta, tokenize_tasks, train_tokenizer
from hf_ptjf.data.tokenizer import sample_tokenizer_corpus

SPECS = [
    {"name": "en-fr", "src_versions": ["WEB"], "tgt_versions": ["Segond"], "train_size": 2000},
    {"name": "en-ro", "src_versions": ["WEB"], "tgt_versions": ["Cornilescu"], "train_size": 200},
    {"name": "lm-ro", "type": "lm", "versions": ["Cornilescu"], "train_size": 300},
]
VOCAB = 700


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return load_tasks(SPECS, cache_dir=tmp_path_factory.mktemp("data"), num_dev=20, num_test=20)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tok")


@pytest.fixture(scope="module")
def tokenizer(corpora, tok_dir):
    return train_tokenizer(corpora, vocab_size=VOCAB, max_sentences=4000, output_dir=str(tok_dir), num_sentinels=20)


def _toy(name, n, text="x"):
    dsd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"id": [str(i) for i in range(n)], "text": [f"{text}{i}" for i in range(n)]}
            )
        }
    )
    return set_task_meta(dsd, name=name, type="lm", lang=None)


def test_corpus_is_temperature_sampled():
    corpora = {"big": _toy("big", 9000, "b"), "small": _toy("small", 1000, "s")}
    proportional = sample_tokenizer_corpus(corpora, tau=1.0, max_sentences=1000)
    flat = sample_tokenizer_corpus(corpora, tau=100.0, max_sentences=1000)

    def share(xs):
        return np.mean([x.startswith("s") for x in xs])

    assert share(proportional) == pytest.approx(0.1, abs=0.01)
    assert share(flat) == pytest.approx(0.5, abs=0.02)  # tau -> inf: uniform over tasks
    assert sample_tokenizer_corpus(corpora, seed=1) == sample_tokenizer_corpus(corpora, seed=1)


def test_t5_ids_and_special_tokens(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer) <= VOCAB
    for tag in ("<2fr>", "<2ro>"):
        ids = tokenizer(f"{tag} In the beginning", add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids[0]) == tag  # one token, never split
    assert "<2lm>" not in tokenizer.get_vocab()  # LM tasks have no tag
    sentinels = [tokenizer.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(20)]
    assert len(set(sentinels)) == 20 and tokenizer.unk_token_id not in sentinels
    ids = tokenizer("<2fr> God said.")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "God said."


def test_save_load_round_trip_gives_identical_ids(tokenizer, corpora, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    texts = corpora["en-ro"]["validation"]["target"][:] + corpora["en-fr"]["validation"]["source"][:]
    texts += ["<2ro> Dumnezeu a zis <extra_id_3> ceva", "Ünïcödé ✓ 😀 ", ""]
    assert reloaded(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"].startswith("T5Tokenizer")


def test_training_is_cached(corpora, tok_dir, tokenizer):
    stamp = (tok_dir / "hf_ptjf_tokenizer.json").read_text()
    mtime = (tok_dir / "tokenizer.json").stat().st_mtime_ns
    again = train_tokenizer(corpora, vocab_size=VOCAB, max_sentences=4000, output_dir=str(tok_dir), num_sentinels=20)
    assert (tok_dir / "tokenizer.json").stat().st_mtime_ns == mtime  # reused, not retrained
    assert (tok_dir / "hf_ptjf_tokenizer.json").read_text() == stamp
    assert again.get_vocab() == tokenizer.get_vocab()


def test_vocab_too_small_is_refused(corpora, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(corpora, vocab_size=50, output_dir=str(tmp_path))


def test_tokenize_tasks_columns_tags_and_cache(corpora, tokenizer):
    out = tokenize_tasks(corpora, tokenizer, max_source_length=32, max_target_length=24)
    tr, va = out["en-ro"]["train"], out["en-ro"]["validation"]
    assert tr.column_names == ["id", "input_ids", "attention_mask", "labels", "characters"]
    raw = corpora["en-ro"]["train"]  # characters: each pair's source + target, what characters_seen counts
    assert tr["characters"][:] == [len(s) + len(t) for s, t in zip(raw["source"][:], raw["target"][:])]
    assert {"source", "target", "id"} <= set(va.column_names)  # raw text kept for BLEU
    row = tr[0]
    assert tokenizer.convert_ids_to_tokens(row["input_ids"][0]) == "<2ro>"
    assert row["input_ids"][-1] == 1 and row["labels"][-1] == 1
    assert max(len(x) for x in tr["input_ids"][:]) <= 32 and max(len(x) for x in tr["labels"][:]) <= 24
    assert out["en-fr"]["train"][0]["input_ids"][0] == tokenizer.convert_tokens_to_ids("<2fr>")
    lm = out["lm-ro"]["train"]
    assert lm.column_names == ["id", "input_ids", "characters"]
    assert sum(lm["characters"][:]) == sum(len(t) for t in corpora["lm-ro"]["train"]["text"][:])
    lengths = [len(x) for x in lm["input_ids"][:]]
    assert max(lengths) == lengths[0] > 32  # chunks are sized for span corruption (inputs ~ 32 after it)
    again = tokenize_tasks(corpora, tokenizer, max_source_length=32, max_target_length=24)
    assert again["en-ro"]["train"].cache_files == tr.cache_files  # Dataset.map cache reused


def test_tokenize_needs_the_tag_in_the_vocab(corpora, tokenizer):
    dsd = set_task_meta(
        datasets.DatasetDict({"train": corpora["en-ro"]["train"]}), name="en-xx", type="translation", lang="xx"
    )
    with pytest.raises(ValueError, match="<2xx>"):
        tokenize_tasks({"en-xx": dsd}, tokenizer)


def test_push_to_hub_round_trip(tokenizer, tmp_path):
    """Through a local Hub-compatible server: the pushed tokenizer loads back with identical ids."""
    from hf_ptjf.hub import HubServer, use_endpoint

    with HubServer(tmp_path / "hub") as srv, use_endpoint(srv.url, cache_dir=tmp_path / "hf_cache"):
        tokenizer.push_to_hub("test-user/ptjf-tok")
        pulled = AutoTokenizer.from_pretrained("test-user/ptjf-tok")
    texts = ["<2fr> In the beginning God created the heavens.", "<2ro> La început <extra_id_0> ceva."]
    assert pulled(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    assert pulled.get_vocab() == tokenizer.get_vocab()
