"""T5 span corruption on known inputs, and the string-tolerant seq2seq collator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import T5Tokenizer

from hf_ptjf.data import Seq2SeqCollator, SpanCorruptionCollator, random_spans_noise_mask, span_corruption_lengths
from hf_ptjf.data.collators import corrupt

N_SENTINELS = 10


@pytest.fixture(scope="module")
def tokenizer():
    # a tiny T5 tokenizer built in memory: <pad>=0, </s>=1, <unk>=2, words w0..w99, sentinels
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(N_SENTINELS)]
    vocab += [(f"▁w{i}", -1.0) for i in range(100)]
    return T5Tokenizer(
        vocab=vocab, extra_ids=0, additional_special_tokens=[f"<extra_id_{i}>" for i in range(N_SENTINELS)]
    )


def _sentinels(tok):
    return [tok.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(N_SENTINELS)]


def test_noise_mask_shape_density_and_spans():
    rng = np.random.default_rng(0)
    for length in (2, 7, 20, 100, 513):
        mask = random_spans_noise_mask(length, 0.15, 3.0, rng)
        assert mask.shape == (length,) and mask.dtype == bool
        assert mask.sum() == min(max(round(length * 0.15), 1), length - 1)
        assert not mask[0]  # spans start with non-noise
        starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
        assert len(starts) == max(1, min(round(mask.sum() / 3.0), mask.sum()))
    assert not random_spans_noise_mask(1, 0.15, 3.0, rng).any()
    a = random_spans_noise_mask(100, 0.15, 3.0, np.random.default_rng(7))
    b = random_spans_noise_mask(100, 0.15, 3.0, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_corrupt_on_known_input():
    ids = [10, 11, 12, 13, 14, 15, 16, 17]
    mask = np.array([0, 0, 1, 1, 0, 0, 0, 1], dtype=bool)
    s = [100, 101, 102]
    assert corrupt(ids, mask, s) == [10, 11, 100, 14, 15, 16, 101]
    assert corrupt(ids, ~mask, s) == [100, 12, 13, 101, 17]
    with pytest.raises(ValueError, match="sentinel"):
        corrupt(ids, mask, s[:1])


def test_span_corruption_lengths_match_t5():
    # T5 / run_t5_mlm_flax: 512 input tokens after corruption need 568 raw tokens, targets 114
    assert span_corruption_lengths(512, 0.15, 3.0) == (568, 114)
    raw, target = span_corruption_lengths(128)
    assert raw > 128 and target < 64


def _reconstruct(inputs, labels, sentinels, eos=1):
    """Undo span corruption: put each sentinel's label span back into the inputs."""
    spans, cur = {}, None
    for t in labels:
        if t in sentinels:
            cur = t
            spans[cur] = []
        elif t != eos and cur is not None:
            spans[cur].append(t)
    out = []
    for t in inputs:
        if t in sentinels:
            out.extend(spans[t])
        elif t != eos:
            out.append(t)
    return out


def test_collator_batches_reconstruct_the_input(tokenizer):
    sentinels = _sentinels(tokenizer)
    collator = SpanCorruptionCollator(tokenizer, noise_density=0.15, mean_noise_span_length=3.0, seed=0)
    examples = [
        {"input_ids": list(range(20, 60)) + [1], "task_id": 3},
        {"input_ids": list(range(20, 40)) + [1], "task_id": 1},
    ]
    batch = collator(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "task_id"}
    assert batch["task_id"].dtype == torch.long and batch["task_id"].tolist() == [3, 1]
    for i, ex in enumerate(examples):
        n = int(batch["attention_mask"][i].sum())
        inputs = batch["input_ids"][i, :n].tolist()
        assert (batch["input_ids"][i, n:] == 0).all()  # padded with <pad>
        labels = [t for t in batch["labels"][i].tolist() if t != -100]
        assert inputs[-1] == 1 and labels[-1] == 1 and labels[0] == sentinels[0]
        assert _reconstruct(inputs, labels, sentinels) == ex["input_ids"][:-1]
        corrupted = len(ex["input_ids"]) - 1 - (n - 1 - sum(t in sentinels for t in inputs))
        assert corrupted == round((len(ex["input_ids"]) - 1) * 0.15)
    again = SpanCorruptionCollator(tokenizer, seed=0)(examples)
    assert torch.equal(again["input_ids"], batch["input_ids"])  # same seed, same noise


def test_collator_input_length_truncates(tokenizer):
    collator = SpanCorruptionCollator(tokenizer, input_length=16, seed=1)
    batch = collator([{"input_ids": list(range(20, 120))}])
    assert batch["input_ids"].shape[1] <= 16 and "task_id" not in batch


def test_collator_refuses_tokenizer_without_sentinels():
    plain = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁a", -1.0)], extra_ids=0)
    with pytest.raises(ValueError, match="sentinel"):
        SpanCorruptionCollator(plain)
    with pytest.raises(ValueError, match="noise_density"):
        SpanCorruptionCollator(plain, noise_density=1.5)


def test_seq2seq_collator_ignores_strings_and_passes_task_id(tokenizer):
    features = [
        {
            "id": "a",
            "source": "x",
            "target": "y",
            "input_ids": [5, 6, 1],
            "attention_mask": [1, 1, 1],
            "labels": [7, 1],
            "task_id": 0,
        },
        {
            "id": "b",
            "source": "x",
            "target": "y",
            "input_ids": [5, 1],
            "attention_mask": [1, 1],
            "labels": [7, 8, 9, 1],
            "task_id": 2,
        },
    ]
    batch = Seq2SeqCollator(tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "task_id"}
    assert batch["input_ids"].tolist() == [[5, 6, 1], [5, 1, 0]]
    assert batch["labels"].tolist() == [[7, 1, -100, -100], [7, 8, 9, 1]]
    assert batch["task_id"].tolist() == [0, 2] and batch["task_id"].dtype == torch.long
