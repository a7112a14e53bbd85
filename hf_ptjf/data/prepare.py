"""A recipe's data, built the same way by every tool: corpora, tokenizer, tokenized splits, collator."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

from .loaders import load_tasks
from .spec import TaskSpec

if TYPE_CHECKING:  # the recipe package imports nothing from data; this keeps the annotation only
    from ..recipe import RecipeConfig

__all__ = ["RecipeData", "load_recipe_corpora", "model_is_causal", "prepare_recipe_data", "recipe_tokenizer_cache", "train_recipe_tokenizer"]

logger = logging.getLogger(__name__)


@dataclass
class RecipeData:
    """Everything a run trains and evaluates on."""

    specs: list[TaskSpec]
    task_type: str  # "translation" | "lm"
    corpora: dict[str, Any]  # task -> DatasetDict of text (train / validation / test)
    tokenizer: Any
    tokenized: dict[str, Any]  # task -> DatasetDict of token ids
    collator: Any
    causal: bool = False  # for a decoder-only model (prompted translation, packed next-token LM)
    added_tokens: list[str] = field(default_factory=list)  # language tags added to a pretrained model's tokenizer

    def train_sizes(self) -> dict[str, int]:
        """Training examples per task, as the sampler counts them (LM tasks: packed chunks)."""
        return {name: len(dsd["train"]) for name, dsd in self.tokenized.items()}


def model_is_causal(cfg: RecipeConfig) -> bool:
    """Does the recipe train a decoder-only model (``model.family: llama``, or a causal-LM checkpoint)?"""
    from ..modeling import ModelArguments

    return ModelArguments.from_dict(cfg.model).causal


def _specs(cfg: RecipeConfig) -> list[TaskSpec]:
    return [TaskSpec.from_dict(t) for t in cfg.tasks]  # valid: parse_recipe checked every task spec


def load_recipe_corpora(cfg: RecipeConfig) -> dict[str, Any]:
    """The recipe's tasks as text corpora (held-out splits, cleaning, subsampling from ``cfg.data``)."""
    from ..recipe import RecipeError

    d = cfg.data
    corpora = load_tasks(_specs(cfg), cache_dir=d.cache_dir, num_dev=d.num_dev, num_test=d.num_test, seed=d.seed)
    for name, dsd in corpora.items():
        if len(dsd["train"]) == 0:
            raise RecipeError(
                f"task `{name}` (in `tasks`) has no training examples after filtering; give it data, relax its "
                "filters (e.g. `max_length_ratio: null`), or remove it from `tasks`."
            )
    return corpora


def train_recipe_tokenizer(cfg: RecipeConfig, corpora: dict[str, Any], output_dir: str | Path) -> Any:
    """SentencePiece trained on a tau-sampled corpus of the recipe's tasks, with its ``tokenizer`` settings."""
    from .tokenizer import train_tokenizer

    t = cfg.tokenizer
    return train_tokenizer(corpora, vocab_size=t.vocab_size, tau=t.tau, max_sentences=t.max_sentences,
                           output_dir=str(output_dir), seed=cfg.data.seed)


def recipe_tokenizer_cache(cfg: RecipeConfig) -> Path:
    """Where the recipe's own tokenizer is trained: the data cache, keyed by what it is trained from (the runner
    copies it into the run directory only once the run may write there)."""
    from .cache import resolve_cache_dir, stable_hash

    key = stable_hash({"tokenizer": cfg.to_dict()["tokenizer"], "tasks": cfg.tasks, "data": cfg.to_dict()["data"]})
    return resolve_cache_dir(cfg.data.cache_dir) / "tokenizers" / key


def prepare_recipe_data(
    cfg: RecipeConfig, tokenizer_dir: str | Path, main_process_first: ContextManager | None = None
) -> RecipeData:
    """Corpora, the tokenizer (``tokenizer.path``, or SentencePiece trained into ``tokenizer_dir``), tokenized
    splits and the collator. ``main_process_first``: under several processes, the main one builds the caches."""
    from transformers import AutoTokenizer

    from ..recipe import RecipeError
    from .collators import CausalLMCollator, Seq2SeqCollator, SpanCorruptionCollator
    from .preprocess import tokenize_tasks
    from .tokenizer import add_language_tags

    specs = _specs(cfg)
    types = {s.type for s in specs}
    if len(types) > 1:
        raise RecipeError(f"a recipe trains one kind of task, got {sorted(types)}; split it into two recipes.")
    d = cfg.data
    with main_process_first or contextlib.nullcontext():
        corpora = load_recipe_corpora(cfg)
        added: list[str] = []
        if cfg.tokenizer.path:
            tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer.path)
            if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # Llama-style tokenizers have none
                logger.warning("tokenizer.path %s has no pad token: padding with its eos token %s (padding never "
                               "carries loss)", cfg.tokenizer.path, tokenizer.eos_token)
                tokenizer.pad_token = tokenizer.eos_token
            added = add_language_tags(tokenizer, corpora)
            if added:
                logger.warning("added the language tags %s to tokenizer.path %s; the model's embeddings get rows for "
                               "them (the mean of its trained rows) when it loads", ", ".join(added), cfg.tokenizer.path)
        else:
            start = time.time()
            logger.info("training the SentencePiece tokenizer (%d pieces, tau %g) into %s", cfg.tokenizer.vocab_size,
                        cfg.tokenizer.tau, tokenizer_dir)
            tokenizer = train_recipe_tokenizer(cfg, corpora, tokenizer_dir)
            logger.info("tokenizer trained (%.1f s)", time.time() - start)
        start = time.time()
        logger.info("tokenizing %d tasks (cached after the first run)", len(corpora))
        causal = model_is_causal(cfg)
        tokenized = tokenize_tasks(corpora, tokenizer, max_source_length=d.max_source_length,
                                   max_target_length=d.max_target_length, causal=causal)
        logger.info("tokenized (%.1f s)", time.time() - start)
    task_type = types.pop()
    if causal:
        collator = CausalLMCollator(tokenizer, per_document=d.packed_attention == "document")
    elif task_type == "lm":
        collator = SpanCorruptionCollator(tokenizer, seed=cfg.seed)
    else:
        collator = Seq2SeqCollator(tokenizer, label_pad_token_id=-100)
    return RecipeData(specs, task_type, corpora, tokenizer, tokenized, collator, causal, added)
