"""``tokenize_tasks``: raw task corpora in, model-ready columns out (batched, cached ``Dataset.map``).

* Translation: ``input_ids``/``attention_mask`` of ``"<2xx> " + source`` and ``labels`` of the target
  (both end with ``</s>``). Training splits keep only ``id`` besides; validation/test also keep
  the raw ``source``/``target`` strings for BLEU (``Seq2SeqCollator`` ignores string columns).
* LM: texts (each ending in ``</s>``) are concatenated and cut into chunks sized so that, after
  span corruption, inputs fill ``max_source_length`` (T5's recipe); each chunk's ``id`` is the id
  of the example it starts in.

For a decoder-only (causal) model (``causal=True``):

* Translation is prompted: ``input_ids`` = prompt (``"<2xx> " + source``, ending in ``</s>``) + target (ending
  in ``</s>``), ``labels`` = -100 over the prompt, then the target: the loss is on target tokens only.
  Validation/test keep ``prompt_ids`` (the prompt alone) for generation.
* LM: texts are packed per task into rows of exactly ``max_source_length`` tokens (documents joined with
  ``</s>``; each batch of 1,000 documents ends in one shorter row), so every row belongs to one task and the sampler's
  rates stay per task. The collator resets position ids at each document (see ``CausalLMCollator``).

The map fingerprints are derived from the input fingerprint, the tokenizer's vocabulary and the
parameters, so re-running with the same inputs reuses the cache files next to the data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Mapping

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase

from ..checks import is_integer
from ..seen import CHARACTERS
from .cache import stable_hash
from .collators import span_corruption_lengths
from .meta import task_meta

__all__ = ["lm_rows", "task_rows", "tokenize_tasks", "tokenizer_fingerprint", "translation_rows"]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of what determines a tokenizer's ids (its serialised backend, or its vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def tokenize_tasks(
    corpora: Mapping[str, datasets.DatasetDict],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_source_length: int = 128,
    max_target_length: int = 128,
    num_proc: int | None = None,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    causal: bool = False,
    lang_codes: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, datasets.DatasetDict]:
    """Tokenize every split of every task (see module docstring for the columns produced).

    ``noise_density`` / ``mean_noise_span_length`` only size LM chunks for span corruption; pass the values the
    :class:`~hf_ptjf.data.SpanCorruptionCollator` uses. ``causal``: columns for a decoder-only model.
    ``lang_codes``: ``{task: (source code, target code)}`` for a tokenizer with language codes (mBART-50, NLLB,
    M2M100): its ``src_lang`` / ``tgt_lang`` mark the source and the labels instead of a ``<2xx>`` tag.
    """
    for name, value in (("max_source_length", max_source_length), ("max_target_length", max_target_length)):
        if not is_integer(value, minimum=2):
            raise ValueError(f"`{name}` must be an integer >= 2, got {value!r}.")
    tok_fp = tokenizer_fingerprint(tokenizer)
    out: dict[str, datasets.DatasetDict] = {}
    for name, dsd in corpora.items():
        meta = task_meta(name, dsd)
        if meta["type"] == "translation":
            tag = meta["tag"]
            codes = (lang_codes or {}).get(name)
            if codes is None and tag not in tokenizer.get_vocab():
                raise ValueError(
                    f"task {name!r}: the tokenizer has no token {tag}; train it on these tasks with "
                    "hf_ptjf.data.train_tokenizer (it adds every task's tag), or add the tags with "
                    "hf_ptjf.data.add_language_tags (a recipe with `tokenizer.path` does)."
                )
            out[name] = datasets.DatasetDict(
                {
                    split: _tokenize_translation(ds, tokenizer, tag, split, max_source_length, max_target_length,
                                                 num_proc, tok_fp, causal, codes)
                    for split, ds in dsd.items()
                }
            )
        else:
            chunk = _lm_chunk(max_source_length, causal, noise_density, mean_noise_span_length)
            out[name] = datasets.DatasetDict(
                {split: _tokenize_lm(ds, tokenizer, chunk, num_proc, tok_fp) for split, ds in dsd.items()}
            )
    return out


def _ending_in(ids: list[int], eos: int | None) -> list[int]:
    """``ids`` with a final end-of-sequence token (T5 tokenizers add one; Llama-style ones add a BOS instead)."""
    return ids if eos is None or (ids and ids[-1] == eos) else [*ids, eos]


def translation_rows(
    tokenizer: PreTrainedTokenizerBase,
    tag: str,
    split: str,
    max_source_length: int,
    max_target_length: int,
    causal: bool,
    codes: tuple[str, str] | None = None,
) -> Callable[[dict[str, list]], dict[str, list]]:
    """The batch function turning ``source``/``target`` texts into model-ready rows (map-style and streamed)."""
    eos = tokenizer.eos_token_id

    def seq2seq(batch: dict[str, list]) -> dict[str, list]:
        if codes:  # the tokenizer's own convention: source and labels start with (or end in) language codes
            tokenizer.src_lang, tokenizer.tgt_lang = codes
            sources = list(batch["source"])
        else:
            sources = [f"{tag} {s}" for s in batch["source"]]
        enc = tokenizer(sources, max_length=max_source_length, truncation=True)
        labels = tokenizer(text_target=batch["target"], max_length=max_target_length, truncation=True)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels["input_ids"],
                CHARACTERS: _pair_characters(batch)}

    def prompted(batch: dict[str, list]) -> dict[str, list]:
        prompts = tokenizer([f"{tag} {s}" for s in batch["source"]], max_length=max_source_length - 1,
                            truncation=True)["input_ids"]
        targets = tokenizer(batch["target"], max_length=max_target_length - 1, truncation=True)["input_ids"]
        prompts = [_ending_in(p, eos) for p in prompts]
        targets = [_ending_in(t, eos) for t in targets]
        out = {
            "input_ids": [p + t for p, t in zip(prompts, targets)],
            "labels": [[-100] * len(p) + t for p, t in zip(prompts, targets)],  # no loss on the prompt
            CHARACTERS: _pair_characters(batch),
        }
        if split != "train":
            out["prompt_ids"] = prompts  # what generate() continues, for BLEU
        return out

    return prompted if causal else seq2seq


def _pair_characters(batch: dict[str, list]) -> list[int]:
    """Characters of text of each translation pair (source + target, untruncated): what ``size_unit: characters``
    counts."""
    return [len(s) + len(t) for s, t in zip(batch["source"], batch["target"])]


def _tokenize_translation(
    ds: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    tag: str,
    split: str,
    max_source_length: int,
    max_target_length: int,
    num_proc: int | None,
    tok_fp: str,
    causal: bool,
    codes: tuple[str, str] | None = None,
) -> datasets.Dataset:
    # raw strings stay in eval splits for BLEU; training batches need ids only
    drop = [c for c in ds.column_names if c != "id"] if split == "train" else []
    kind = "prompted" if causal else "translation"
    marker = list(codes) if codes else tag
    fp = stable_hash([ds._fingerprint, tok_fp, kind, marker, drop, max_source_length, max_target_length, 2])
    fn = translation_rows(tokenizer, tag, split, max_source_length, max_target_length, causal, codes)
    return ds.map(fn, batched=True, remove_columns=drop, num_proc=num_proc, new_fingerprint=fp,
                  desc=f"tokenize {split}")


def lm_rows(tokenizer: PreTrainedTokenizerBase, chunk: int) -> Callable[[dict[str, list]], dict[str, list]]:
    """The batch function packing ``text`` documents into rows of ``chunk`` tokens (the batch's last row shorter).

    A row's ``characters``: the characters of the documents it packs, a document split over rows shared in proportion
    to its tokens (rounded on cumulative totals, so that the rows of a batch add up to its characters exactly)."""
    eos = tokenizer.eos_token_id

    def fn(batch: dict[str, list]) -> dict[str, list]:
        seqs = [_ending_in(ids, eos) for ids in tokenizer(batch["text"], add_special_tokens=True)["input_ids"]]
        lengths = np.array([len(x) for x in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = [t for seq in seqs for t in seq]
        starts = np.arange(0, len(flat), chunk)  # the shorter tail chunk is kept, not dropped
        owner = np.searchsorted(offsets[:-1], starts, side="right") - 1
        # characters before token position p: whole documents before p, plus p's document's share up to p
        chars = np.array([len(t) for t in batch["text"]], dtype=np.float64)
        chars_before = np.concatenate([[0.0], np.cumsum(chars)])
        edges = np.append(starts, len(flat))
        doc = np.minimum(np.searchsorted(offsets, edges, side="right") - 1, len(seqs) - 1)
        inside = (edges - offsets[doc]) / np.maximum(lengths[doc], 1)
        cumulative = np.rint(chars_before[doc] + chars[doc] * inside).astype(np.int64)
        return {"id": [batch["id"][i] for i in owner], "input_ids": [flat[i : i + chunk] for i in starts],
                CHARACTERS: np.diff(cumulative).tolist()}

    return fn


def task_rows(
    meta: Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    split: str,
    *,
    max_source_length: int,
    max_target_length: int,
    causal: bool,
    codes: tuple[str, str] | None = None,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
) -> Callable[[dict[str, list]], dict[str, list]]:
    """The batch function of one task's ``split`` (its ``meta``: type and tag): what ``tokenize_tasks`` maps over a
    map-style split, and what a streamed task applies to each window."""
    if meta["type"] == "translation":
        return translation_rows(tokenizer, meta["tag"], split, max_source_length, max_target_length, causal, codes)
    return lm_rows(tokenizer, _lm_chunk(max_source_length, causal, noise_density, mean_noise_span_length))


def _lm_chunk(max_source_length: int, causal: bool, noise_density: float, mean_noise_span_length: float) -> int:
    """Tokens per packed LM row: the whole row for a decoder-only model; before span corruption for T5."""
    return (max_source_length if causal
            else span_corruption_lengths(max_source_length, noise_density, mean_noise_span_length)[0])


def _tokenize_lm(
    ds: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, chunk: int, num_proc: int | None, tok_fp: str
) -> datasets.Dataset:
    fn = lm_rows(tokenizer, chunk)
    fp = stable_hash([ds._fingerprint, tok_fp, "lm", chunk, 2])  # 2: rows carry `characters`
    return ds.map(
        fn,
        batched=True,
        batch_size=1000,
        remove_columns=ds.column_names,
        num_proc=num_proc,
        new_fingerprint=fp,
        desc="tokenize lm",
    )
