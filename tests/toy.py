"""Tiny models and synthetic tasks for fast CPU tests (no downloads)."""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from transformers import T5Config, T5ForConditionalGeneration

VOCAB = 48


def tiny_t5(seed: int = 0, vocab_size: int = VOCAB, dropout: float = 0.0) -> T5ForConditionalGeneration:
    """A ~30k-parameter T5 built from a config (pad 0, eos 1, decoder start = pad)."""
    import torch

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size, d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8,
        dropout_rate=dropout, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config)


def toy_task(n: int, shift: int, seed: int, length: tuple[int, int] = (3, 8)) -> Dataset:
    """A synthetic 'translation' task: target = source tokens shifted by `shift` (mod vocab), + eos."""
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for _ in range(n):
        src = rng.integers(2, VOCAB, size=int(rng.integers(*length))).tolist()
        tgt = [(t - 2 + shift) % (VOCAB - 2) + 2 for t in src]
        rows["input_ids"].append(src + [1])
        rows["attention_mask"].append([1] * (len(src) + 1))
        rows["labels"].append(tgt + [1])
    return Dataset.from_dict(rows)


def collate(features: list[dict]) -> dict:
    """Pad a toy batch (pad 0, labels -100) and pass `task_id` / `characters` through."""
    import torch

    def pad(key: str, value: int) -> torch.Tensor:
        width = max(len(f[key]) for f in features)
        return torch.tensor([list(f[key]) + [value] * (width - len(f[key])) for f in features])

    batch = {"input_ids": pad("input_ids", 0), "attention_mask": pad("attention_mask", 0), "labels": pad("labels", -100)}
    for key in ("task_id", "characters"):  # passed through as the package's collators do (-1: a row without)
        if any(f.get(key) is not None for f in features):
            batch[key] = torch.tensor([-1 if f.get(key) is None else f[key] for f in features])
    return batch


def toy_mixture() -> tuple[dict, dict]:
    """Two tasks of very different sizes, plus per-task eval sets."""
    train = {"hr": toy_task(3000, 3, 0), "lr": toy_task(40, 7, 1)}
    evals = {"hr": toy_task(32, 3, 10), "lr": toy_task(32, 7, 11)}
    return train, evals
