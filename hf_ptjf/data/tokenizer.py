"""Train one SentencePiece (unigram) model over all tasks and wrap it as a T5 tokenizer.

* The training corpus is drawn from every task's training split with temperature sampling over
  tasks (tau = 3.33 as in the paper), so low-resource languages get a fair share of the vocabulary.
* Ids follow T5: ``<pad>`` = 0 (also the decoder start token), ``</s>`` = 1, ``<unk>`` = 2, then the
  target tags ``<2xx>`` and the sentinels ``<extra_id_N>`` as single, never-split pieces.
* In transformers 5.x ``T5Tokenizer(vocab_file=...)`` silently ignores the file, so the SentencePiece
  model is read with protobuf and passed as ``vocab`` (pieces and scores) plus its normaliser;
  ``save_pretrained`` then writes a ``tokenizer.json`` that ``AutoTokenizer.from_pretrained`` (and
  the Hub, after ``push_to_hub``) loads with identical ids.
* The result is cached in ``output_dir``: the same sampled corpus and parameters reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import datasets
import numpy as np
import sentencepiece as spm
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Tokenizer
from transformers.convert_slow_tokenizer import import_protobuf

from ..mixture import temperature
from .columns import column_list
from .meta import task_meta

__all__ = ["train_tokenizer", "sentinel_tokens", "sample_tokenizer_corpus"]

_STAMP = "hf_ptjf_tokenizer.json"  # records the cache key of what is in output_dir
SPM_FILE = "spm.model"  # kept for inspection; HF loads tokenizer.json


def sentinel_tokens(n: int = 100) -> list[str]:
    """``<extra_id_0>`` ... ``<extra_id_{n-1}>``."""
    return [f"<extra_id_{i}>" for i in range(n)]


def _task_sentences(dsd: datasets.DatasetDict) -> list[str]:
    train = dsd["train"] if "train" in dsd else dsd["sample"]  # a streamed task: its first rows
    cols = [c for c in ("source", "target", "text") if c in train.column_names]
    if not cols:
        raise ValueError(f"a task's train split needs `source`/`target` or `text` columns, got {train.column_names}.")
    return [s for c in cols for s in column_list(train, c)]


def sample_tokenizer_corpus(
    corpora: Mapping[str, datasets.DatasetDict], *, tau: float = 3.33, max_sentences: int = 200_000, seed: int = 0
) -> list[str]:
    """Sentences to train the tokenizer on: task i gives ``rate_i * N``, ``rate = temperature(sizes, tau)``.

    ``N = min(max_sentences, total)``; a task asked for more sentences than it has is sampled with
    replacement (upsampling a small language is the point of tau > 1).
    """
    if not corpora:
        raise ValueError("`corpora` is empty: pass the output of hf_ptjf.data.load_tasks.")
    if max_sentences <= 0:
        raise ValueError(f"`max_sentences` must be > 0, got {max_sentences}.")
    pools = {name: _task_sentences(dsd) for name, dsd in corpora.items()}
    empty = [n for n, p in pools.items() if not p]
    if empty:
        raise ValueError(f"tasks {empty} have empty training splits; remove them or check their data.")
    sizes = np.array([len(p) for p in pools.values()], np.float64)
    rates = temperature(sizes, tau)
    total = int(min(max_sentences, sizes.sum()))
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for pool, rate in zip(pools.values(), rates):
        n = max(1, int(round(rate * total)))
        idx = rng.choice(len(pool), size=n, replace=n > len(pool))
        out.extend(pool[i] for i in idx)
    rng.shuffle(out)
    return out


def _default_extra_tokens(corpora: Mapping[str, datasets.DatasetDict]) -> list[str]:
    tags = [task_meta(name, dsd)["tag"] for name, dsd in corpora.items()]
    return sorted({t for t in tags if t})


def language_codes(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The language codes of a multilingual tokenizer that has them (mBART-50, NLLB, M2M100), else ``[]``."""
    for attr in ("lang_code_to_id", "lang_token_to_id", "lang_code_to_token"):
        mapping = getattr(tokenizer, attr, None)
        if mapping:
            codes = list(mapping)
            return [c.strip("_") for c in codes] if attr == "lang_token_to_id" else codes  # M2M100: __fr__ -> fr
    extra = getattr(tokenizer, "extra_special_tokens", None)  # NLLB (transformers 5): the codes are its extra specials
    if hasattr(tokenizer, "src_lang") and isinstance(extra, list):
        return [str(t) for t in extra]
    return []


def language_code_id(tokenizer: PreTrainedTokenizerBase, code: str) -> int:
    """The token id of language ``code`` (what generation forces as the first token of a translation)."""
    if hasattr(tokenizer, "get_lang_id"):  # M2M100
        return int(tokenizer.get_lang_id(code))
    return int(tokenizer.convert_tokens_to_ids(code))


def add_language_tags(tokenizer: PreTrainedTokenizerBase, corpora: Mapping[str, datasets.DatasetDict]) -> list[str]:
    """Add the ``<2xx>`` tag of every translation task that ``tokenizer`` (a pretrained model's) lacks, as special
    tokens (never split); returns the tokens added, in order, for the model to give them rows
    (:func:`hf_ptjf.modeling.add_token_rows`)."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in _default_extra_tokens(corpora) if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return missing


def train_tokenizer(
    corpora: Mapping[str, datasets.DatasetDict],
    *,
    vocab_size: int = 8000,
    tau: float = 3.33,
    max_sentences: int = 200_000,
    extra_tokens: Sequence[str] | None = None,
    num_sentinels: int = 100,
    output_dir: str | os.PathLike,
    seed: int = 0,
    character_coverage: float = 1.0,
) -> PreTrainedTokenizerBase:
    """Train (or reuse from ``output_dir``) a unigram SentencePiece tokenizer and return it as a T5 tokenizer.

    Args:
        corpora: ``{task: DatasetDict}`` from :func:`hf_ptjf.data.load_tasks`; only ``train`` splits are read.
        vocab_size: total vocabulary including special tokens (paper: 64k; small default for CPU).
            SentencePiece may stop short of it on a tiny corpus.
        tau: temperature over tasks for sampling the training corpus.
        max_sentences: size of the sampled corpus.
        extra_tokens: single-piece tokens; default: the ``<2xx>`` tag of every translation task.
        num_sentinels: ``<extra_id_N>`` sentinels for span corruption (T5: 100).
        output_dir: where the tokenizer is saved (``tokenizer.json``, ``tokenizer_config.json``, ``spm.model``).
        seed: seeds the corpus sample.
        character_coverage: SentencePiece's share of characters covered by the vocabulary (rest: ``<unk>``).
            1.0 by default: with 0.9995 a low-resource script (Devanagari at 1,000 pairs) loses common
            characters to ``<unk>``; lower it only for corpora with thousands of rare characters (CJK).
    """
    extra = list(dict.fromkeys(extra_tokens if extra_tokens is not None else _default_extra_tokens(corpora)))
    specials = extra + sentinel_tokens(num_sentinels)
    if vocab_size < len(specials) + 100:
        raise ValueError(
            f"`vocab_size`={vocab_size} leaves no room for text pieces next to {len(specials)} special tokens; "
            f"use at least {len(specials) + 100}."
        )
    sentences = sample_tokenizer_corpus(corpora, tau=tau, max_sentences=max_sentences, seed=seed)
    params = {
        "vocab_size": vocab_size,
        "specials": specials,
        "character_coverage": character_coverage,
        "model_type": "unigram",
        "spm": spm.__version__,
        "format": 1,
    }
    key = _corpus_key(sentences, params)
    out = Path(output_dir)
    stamp = out / _STAMP
    if stamp.is_file() and (out / "tokenizer.json").is_file() and json.loads(stamp.read_text()).get("key") == key:
        return AutoTokenizer.from_pretrained(str(out))

    out.mkdir(parents=True, exist_ok=True)
    _train_sentencepiece(sentences, specials, vocab_size, character_coverage, out / SPM_FILE)
    tok = tokenizer_from_spm(out / SPM_FILE, specials)
    tok.save_pretrained(str(out))
    stamp.write_text(json.dumps({"key": key, "params": params, "num_sentences": len(sentences)}, indent=1))
    # hand back what is on disk, so the caller's ids are the ones every later load gets
    return AutoTokenizer.from_pretrained(str(out))


def _train_sentencepiece(sentences: list[str], specials: list[str], vocab_size: int, character_coverage: float,
                         model_file: Path) -> None:
    """Train the unigram SentencePiece model (T5 ids: pad 0, eos 1, unk 2; ``specials`` never split) into
    ``model_file``."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_prefix=prefix,
            model_type="unigram",
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            pad_piece="<pad>",
            eos_piece="</s>",
            unk_piece="<unk>",
            user_defined_symbols=specials,
            input_sentence_size=len(sentences),
            shuffle_input_sentence=True,
            hard_vocab_limit=False,  # tiny corpora: fewer pieces instead of an error
            num_threads=max(1, min(os.cpu_count() or 1, 8)),
            minloglevel=2,
        )
        shutil.copyfile(prefix + ".model", model_file)


def tokenizer_from_spm(model_file: str | os.PathLike, special_tokens: Sequence[str]) -> T5Tokenizer:
    """Wrap a SentencePiece model (T5 ids: pad 0, eos 1, unk 2) as a ``T5Tokenizer``.

    ``special_tokens`` (tags and sentinels, already pieces of the model) become special tokens:
    never split, and dropped by ``decode(..., skip_special_tokens=True)``.
    """
    try:
        proto = import_protobuf().ModelProto()
    except ImportError as e:  # pragma: no cover - protobuf is a dependency
        raise ImportError("reading a SentencePiece model needs protobuf: pip install 'protobuf>=4'.") from e
    proto.ParseFromString(Path(model_file).read_bytes())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    pieces = {p for p, _ in vocab}
    missing = [t for t in special_tokens if t not in pieces]
    if missing:
        raise ValueError(f"special tokens {missing[:5]} are not pieces of {model_file}; retrain the tokenizer.")
    if [p for p, _ in vocab[:3]] != ["<pad>", "</s>", "<unk>"]:
        raise ValueError(f"{model_file} must have T5 ids <pad>=0, </s>=1, <unk>=2; retrain it with train_tokenizer.")
    return T5Tokenizer(
        vocab=vocab,
        _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap or None,
        extra_ids=0,  # sentinels are already in the vocabulary
        additional_special_tokens=list(special_tokens),
    )


def _corpus_key(sentences: list[str], params: dict) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for s in sentences:
        h.update(s.encode())
        h.update(b"\n")
    return h.hexdigest()[:20]
