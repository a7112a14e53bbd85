"""Batch collators: T5 span corruption for LM tasks, a string-tolerant seq2seq collator, and the decoder-only
collator (prompted translation, packed text with per-document positions, left-padded prompts for generation).

All pass the integer ``task_id`` and ``characters`` features through as LongTensors (the MixtureTrainer counts
examples and characters per task with them).

Span corruption follows T5 (Raffel et al. 2020, and HF's ``run_t5_mlm_flax.py``): 15% of the
tokens, in spans of mean length 3, are replaced in the inputs by one sentinel each
(``<extra_id_0>``, ``<extra_id_1>``, ...), and the targets list each sentinel followed by the
tokens it replaced::

    tokens:  A B C D E F G H      noise mask: . . X X . . . X
    inputs:  A B <extra_id_0> E F G <extra_id_1> </s>
    labels:  <extra_id_0> C D <extra_id_1> H </s>
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from ..seen import CHARACTERS

__all__ = [
    "CausalLMCollator",
    "Seq2SeqCollator",
    "SpanCorruptionCollator",
    "corrupt",
    "random_spans_noise_mask",
    "span_corruption_lengths",
]


def _noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    num_noise = int(round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, num_spans


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, rng: np.random.Generator
) -> np.ndarray:
    """Boolean mask of ``length`` with ``round(length * noise_density)`` noise tokens in random spans.

    Spans alternate non-noise / noise, starting with non-noise, so the sequence never starts with
    noise. Sequences shorter than 2 tokens get no noise (there is nothing to both keep and predict).
    """
    if length < 2:
        return np.zeros(length, dtype=bool)
    num_noise, num_spans = _noise_counts(length, noise_density, mean_noise_span_length)
    num_spans = min(num_spans, num_noise, length - num_noise)

    def segment(n_items: int, n_segments: int) -> np.ndarray:
        # random partition of n_items into n_segments non-empty parts
        marks = np.zeros(n_items - 1, dtype=np.int64)
        marks[rng.permutation(n_items - 1)[: n_segments - 1]] = 1
        ids = np.concatenate([[0], np.cumsum(marks)])
        return np.bincount(ids, minlength=n_segments)

    noise_lengths = segment(num_noise, num_spans)
    keep_lengths = segment(length - num_noise, num_spans)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for k, n in zip(keep_lengths, noise_lengths):
        pos += k
        mask[pos : pos + n] = True
        pos += n
    return mask


def corrupt(ids: Sequence[int], mask: np.ndarray, sentinel_ids: Sequence[int]) -> list[int]:
    """Replace each run of masked tokens in ``ids`` by the next sentinel id; keep unmasked tokens."""
    out: list[int] = []
    k = 0
    prev = False
    for tok, m in zip(ids, mask):
        if m and not prev:
            if k >= len(sentinel_ids):
                raise ValueError(
                    f"span corruption needs more than {len(sentinel_ids)} sentinel tokens; shorten the inputs."
                )
            out.append(int(sentinel_ids[k]))
            k += 1
        elif not m:
            out.append(int(tok))
        prev = bool(m)
    return out


def span_corruption_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(raw tokens, target length) such that corrupted inputs, with ``</s>``, are at most ``inputs_length``.

    T5's ``compute_input_and_target_lengths``: feed chunks of the first value and the inputs fit
    ``inputs_length`` exactly; the second value bounds the labels (``max_target_length``).
    """

    def lengths(tokens: int) -> tuple[int, int]:
        num_noise = int(round(tokens * noise_density))
        num_spans = int(round(num_noise / mean_noise_span_length))
        return tokens - num_noise + num_spans + 1, num_noise + num_spans + 1

    if inputs_length < 2:
        raise ValueError(f"`input_length` must be >= 2 for span corruption, got {inputs_length}.")
    tokens = inputs_length - 1
    while lengths(tokens + 1)[0] <= inputs_length:
        tokens += 1
    return tokens, lengths(tokens)[1]


PASSED_THROUGH = ("task_id", CHARACTERS)  # per-row integers the trainer counts with (it pops them from the batch)


def _passed_through(examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The batch's ``task_id`` / ``characters`` as LongTensors, for the features its rows carry (-1 for a row
    without one, when others have it: tasks with and without a ``characters`` column mix)."""
    return {k: torch.tensor([-1 if e.get(k) is None else int(e[k]) for e in examples], dtype=torch.long)
            for k in PASSED_THROUGH if any(e.get(k) is not None for e in examples)}


def _pad(rows: list[list[int]], value: int, multiple: int | None) -> torch.Tensor:
    n = max(len(r) for r in rows)
    if multiple:
        n = -(-n // multiple) * multiple
    return torch.tensor([r + [value] * (n - len(r)) for r in rows], dtype=torch.long)


class SpanCorruptionCollator:
    """T5 span-corruption collator for LM examples with an ``input_ids`` feature.

    Args:
        tokenizer: provides ``pad_token_id``, ``eos_token_id`` and the ``<extra_id_N>`` sentinels.
        noise_density: fraction of tokens corrupted (T5: 0.15).
        mean_noise_span_length: mean corrupted span length (T5: 3).
        input_length: if set, raw examples are truncated so corrupted inputs (with ``</s>``) fit it.
        seed: seeds the noise; two collators with the same seed corrupt a stream identically.
        pad_to_multiple_of: round padded lengths up (tensor cores like multiples of 8).

    Returns ``input_ids``, ``attention_mask`` (padded with the pad id / 0), ``labels`` (padded with
    -100), and ``task_id`` / ``characters`` when examples carry them.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        noise_density: float = 0.15,
        mean_noise_span_length: float = 3.0,
        input_length: int | None = None,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        if not 0 < noise_density < 1:
            raise ValueError(f"`noise_density` must be in (0, 1), got {noise_density!r}.")
        if not mean_noise_span_length >= 1:
            raise ValueError(f"`mean_noise_span_length` must be >= 1, got {mean_noise_span_length!r}.")
        self.tokenizer = tokenizer
        self.noise_density = float(noise_density)
        self.mean_noise_span_length = float(mean_noise_span_length)
        self.input_length = input_length
        self.max_raw_tokens = (
            span_corruption_lengths(input_length, noise_density, mean_noise_span_length)[0] if input_length else None
        )
        self.pad_to_multiple_of = pad_to_multiple_of
        self.rng = np.random.default_rng(seed)
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        if self.pad_id is None or self.eos_id is None:
            raise ValueError("the tokenizer needs a pad and an eos token for span corruption (T5: <pad>=0, </s>=1).")
        self.sentinel_ids = _sentinel_ids(tokenizer)

    def corrupt_one(self, ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """(inputs, labels) for one example; a trailing ``</s>`` is kept out of the noise and re-appended."""
        body = list(ids)
        if body and body[-1] == self.eos_id:
            body = body[:-1]
        body = [t for t in body if t != self.pad_id]
        if self.max_raw_tokens is not None:
            body = body[: self.max_raw_tokens]
        mask = random_spans_noise_mask(len(body), self.noise_density, self.mean_noise_span_length, self.rng)
        inputs = corrupt(body, mask, self.sentinel_ids) + [self.eos_id]
        labels = corrupt(body, ~mask, self.sentinel_ids) + [self.eos_id]
        return inputs, labels

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty batch.")
        if "input_ids" not in examples[0]:
            raise ValueError(f"span corruption needs an `input_ids` feature, got {sorted(examples[0])}.")
        pairs = [self.corrupt_one(e["input_ids"]) for e in examples]
        inputs = [p[0] for p in pairs]
        batch = {
            "input_ids": _pad(inputs, self.pad_id, self.pad_to_multiple_of),
            "attention_mask": _pad([[1] * len(x) for x in inputs], 0, self.pad_to_multiple_of),
            "labels": _pad([p[1] for p in pairs], -100, self.pad_to_multiple_of),
        }
        batch.update(_passed_through(examples))
        return batch


def _sentinel_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids: list[int] = []
    unk = tokenizer.unk_token_id
    vocab = tokenizer.get_vocab()
    while f"<extra_id_{len(ids)}>" in vocab and vocab[f"<extra_id_{len(ids)}>"] != unk:
        ids.append(vocab[f"<extra_id_{len(ids)}>"])
    if not ids:
        raise ValueError(
            "the tokenizer has no sentinel tokens <extra_id_0>, <extra_id_1>, ...; train one with "
            "hf_ptjf.data.train_tokenizer (it adds them) or use a T5 tokenizer."
        )
    return ids


@dataclass
class Seq2SeqCollator(DataCollatorForSeq2Seq):
    """``DataCollatorForSeq2Seq`` that ignores string features (``id``, raw ``source``/``target``).

    The stock collator passes integer features through, but fails on string columns,
    which validation/test splits keep for BLEU. Labels are padded with -100.
    """

    label_pad_token_id: int = -100

    def __call__(self, features: Sequence[dict[str, Any]], return_tensors: str | None = None) -> dict[str, Any]:
        numeric = [{k: v for k, v in f.items() if not isinstance(v, str) and k not in PASSED_THROUGH} for f in features]
        batch = super().__call__(numeric, return_tensors)
        batch.update(_passed_through(features))
        return batch


class CausalLMCollator:
    """Batches for a decoder-only model, from ``tokenize_tasks(..., causal=True)`` rows.

    * Rows with ``labels`` (prompted translation): right-padded; labels padded with -100 (prompt tokens are
      already -100: no loss on them).
    * Rows without (packed ``lm`` text): labels are the inputs. Position ids restart after every ``</s>``, and
      no attention mask is passed, so attention stays within each document (transformers builds the
      block-diagonal causal mask from the position ids, for every attention implementation); padding at the end
      of a short row is never attended to by real tokens (it comes after them) and carries no loss. With
      ``per_document=False`` (plain packing, for models whose attention ignores position ids) an attention mask
      over the row's real tokens is passed instead, and documents attend to the earlier ones in their row.
    * :meth:`prompts` (for ``generate``, on rows whose ``input_ids`` are a prompt alone, e.g. the ``prompt_ids``
      of held-out splits): padded on the LEFT, so every row's next token is the first generated one; no labels.

    Returns ``input_ids``, ``labels``, ``attention_mask`` or ``position_ids``, and ``task_id`` / ``characters`` when
    rows carry them.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None,
                 per_document: bool = True) -> None:
        self.tokenizer = tokenizer
        self.per_document = per_document  # False: plain packing, attention over the whole row
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_id = tokenizer.eos_token_id
        if self.pad_id is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token; give it one (tokenizer.pad_token = ...).")
        self.pad_to_multiple_of = pad_to_multiple_of
        self.generating = False

    @contextlib.contextmanager
    def prompts(self) -> Iterator[None]:
        """Within this block, batches are left-padded prompts for generation."""
        self.generating = True
        try:
            yield
        finally:
            self.generating = False

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty batch.")
        if self.generating:
            rows = [list(e["input_ids"]) for e in examples]
            n = max(len(r) for r in rows)
            if self.pad_to_multiple_of:
                n = -(-n // self.pad_to_multiple_of) * self.pad_to_multiple_of
            batch = {
                "input_ids": torch.tensor([[self.pad_id] * (n - len(r)) + r for r in rows], dtype=torch.long),
                "attention_mask": torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows], dtype=torch.long),
            }
        else:
            rows = [list(e["input_ids"]) for e in examples]
            batch = {"input_ids": _pad(rows, self.pad_id, self.pad_to_multiple_of)}
            if "labels" in examples[0]:
                batch["labels"] = _pad([list(e["labels"]) for e in examples], -100, self.pad_to_multiple_of)
                batch["attention_mask"] = _pad([[1] * len(r) for r in rows], 0, self.pad_to_multiple_of)
            else:
                batch["labels"] = _pad(rows, -100, self.pad_to_multiple_of)
                if self.per_document:
                    batch["position_ids"] = _document_positions(batch["input_ids"], self.eos_id)
                else:
                    batch["attention_mask"] = _pad([[1] * len(r) for r in rows], 0, self.pad_to_multiple_of)
        batch.update(_passed_through(examples))
        return batch


def _document_positions(input_ids: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """Position ids counting from 0 at the start of each row and after each ``eos_id``."""
    n = input_ids.shape[1]
    index = torch.arange(n).expand_as(input_ids)
    if eos_id is None:
        return index.clone()
    starts = torch.zeros_like(input_ids, dtype=torch.bool)
    starts[:, 1:] = input_ids[:, :-1] == eos_id
    starts[:, 0] = True
    last_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - last_start
