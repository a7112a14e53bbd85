"""A recipe's data, built the same way by every tool: corpora, tokenizer, tokenized splits, collator."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

from datasets import DatasetDict
from transformers import AutoTokenizer

from ..checks import did_you_mean
from ..recipe import RecipeConfig, RecipeError
from .cache import resolve_cache_dir, stable_hash
from .collators import CausalLMCollator, Seq2SeqCollator, SpanCorruptionCollator
from .loaders import load_tasks
from .meta import task_meta
from .preprocess import task_rows, tokenize_tasks, tokenizer_fingerprint
from .sizes import TaskSizes, dataset_sizes, file_identity
from .spec import TaskSpec
from .stream import TaskStream
from .streamed_tasks import StreamedTaskDict
from .tokenizer import add_language_tags, language_code_id, language_codes, train_tokenizer


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
    lang_codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # task -> (source, target) language codes
    streams: dict[str, Any] = field(default_factory=dict)  # streamed task -> its TaskStream (no tokenized train)
    sizes: Any = None  # TaskSizes: every task's size per unit (rates use the mixture's size_unit)

    def generation_kwargs(self, task: str) -> dict[str, Any]:
        """What ``generate`` needs for ``task``: a tokenizer with language codes forces the target code first."""
        if task not in self.lang_codes:
            return {}

        return {"forced_bos_token_id": language_code_id(self.tokenizer, self.lang_codes[task][1])}

    def train_sizes(self) -> dict[str, int]:
        """Training examples per task, as the sampler counts them (LM tasks: packed chunks)."""
        return {name: int(n) for name, n in self.sizes.of("examples").items()}

    def train_data(self, task: str) -> Any:
        """What a task trains on: its tokenized training split, or its stream."""
        return self.streams[task] if task in self.streams else self.tokenized[task]["train"]


def model_is_causal(cfg: RecipeConfig) -> bool:
    """Does the recipe train a decoder-only model (``model.family: llama``, or a causal-LM checkpoint)?"""
    return cfg.model.causal


def load_recipe_corpora(cfg: RecipeConfig) -> dict[str, Any]:
    """The recipe's tasks as text corpora (held-out splits, cleaning, subsampling from ``cfg.data``)."""

    d = cfg.data
    corpora = load_tasks(cfg.tasks, cache_dir=d.cache_dir, num_dev=d.num_dev, num_test=d.num_test, seed=d.seed)
    for name, dsd in corpora.items():
        if "train" in dsd and len(dsd["train"]) == 0:
            raise RecipeError(
                f"task `{name}` (in `tasks`) has no training examples after filtering; give it data, relax its "
                "filters (e.g. `max_length_ratio: null`), or remove it from `tasks`."
            )
    return corpora


def train_recipe_tokenizer(cfg: RecipeConfig, corpora: dict[str, Any], output_dir: str | Path) -> Any:
    """SentencePiece trained on a tau-sampled corpus of the recipe's tasks, with its ``tokenizer`` settings."""

    t = cfg.tokenizer
    return train_tokenizer(corpora, vocab_size=t.vocab_size, tau=t.tau, max_sentences=t.max_sentences,
                           output_dir=str(output_dir), seed=cfg.data.seed)


def recipe_tokenizer_cache(cfg: RecipeConfig) -> Path:
    """Where the recipe's own tokenizer is trained: the data cache, keyed by what it is trained from (the runner
    copies it into the run directory only once the run may write there)."""

    record = cfg.to_dict()  # (the tasks as written: a default added to TaskSpec later keeps the cache)
    key = stable_hash({"tokenizer": record["tokenizer"], "tasks": record["tasks"], "data": record["data"]})
    return resolve_cache_dir(cfg.data.cache_dir) / "tokenizers" / key


def _checked_language_codes(specs: list[TaskSpec], tokenizer: Any, cfg: RecipeConfig) -> dict[str, tuple[str, str]]:
    """The tasks' language codes, each one the tokenizer knows (a did-you-mean otherwise)."""

    coded = [(i, s) for i, s in enumerate(specs) if s.lang_code]
    if not coded:
        return {}
    known = language_codes(tokenizer)
    for i, spec in coded:
        for field_name in ("src_lang_code", "lang_code"):
            code = getattr(spec, field_name)
            if not known:
                raise RecipeError(f"`tasks.{i}.{field_name}` (task `{spec.name}`): tokenizer.path {cfg.tokenizer.path} "
                                  "has no language codes (it is not an mBART-50 / NLLB / M2M100-style tokenizer); "
                                  "drop lang_code / src_lang_code to mark the target language with a <2xx> tag.")
            if code not in known:
                # the same language first (fr_FR -> fr_XX, not tr_TR), then the closest spelling
                same = [k for k in known if k.replace("-", "_").split("_")[0].lower() ==
                        code.replace("-", "_").split("_")[0].lower()]
                hint = f" Did you mean `{same[0]}`?" if len(same) == 1 else did_you_mean(code, same or known) or ""
                raise RecipeError(f"`tasks.{i}.{field_name}` (task `{spec.name}`): {code!r} is not a language code of "
                                  f"tokenizer.path {cfg.tokenizer.path}.{hint} Its codes include "
                                  f"{', '.join(known[:8])}, ...")
    return {s.name: (s.src_lang_code, s.lang_code) for _, s in coded}


def prepare_recipe_data(
    cfg: RecipeConfig, tokenizer_dir: str | Path, main_process_first: ContextManager | None = None
) -> RecipeData:
    """Corpora, the tokenizer (``tokenizer.path``, or SentencePiece trained into ``tokenizer_dir``), tokenized
    splits and the collator. ``main_process_first``: under several processes, the main one builds the caches."""

    specs = list(cfg.tasks)
    types = {s.type for s in specs}
    if len(types) > 1:
        raise RecipeError(f"a recipe trains one kind of task, got {sorted(types)}; split it into two recipes.")
    d = cfg.data
    causal = model_is_causal(cfg)
    with main_process_first or contextlib.nullcontext():
        corpora = load_recipe_corpora(cfg)
        tokenizer, added, lang_codes = _recipe_tokenizer(cfg, corpora, tokenizer_dir)
        if causal and lang_codes:
            raise RecipeError(f"`tasks` (task `{next(iter(lang_codes))}`): `lang_code` is the convention of encoder-"
                              "decoder checkpoints (mBART-50, NLLB, M2M100); a decoder-only model reads <2xx> tags: "
                              "drop `lang_code` / `src_lang_code`.")
        start = time.time()
        logger.info("tokenizing %d tasks (cached after the first run)", len(corpora))
        loaded = {n: DatasetDict({k: v for k, v in dsd.items() if k != "sample"}) for n, dsd in corpora.items()}
        tokenized = tokenize_tasks(loaded, tokenizer, max_source_length=d.max_source_length,
                                   max_target_length=d.max_target_length, causal=causal, lang_codes=lang_codes)
        logger.info("tokenized (%.1f s)", time.time() - start)
        streams = {n: _task_stream(cfg, dsd, tokenizer, causal, lang_codes.get(n)) for n, dsd in corpora.items()
                   if isinstance(dsd, StreamedTaskDict)}
        sizes = _task_sizes(cfg, specs, corpora, tokenized, streams, tokenizer, causal, lang_codes)
    task_type = types.pop()
    return RecipeData(specs, task_type, corpora, tokenizer, tokenized, _collator(cfg, tokenizer, task_type, causal),
                      causal, added, lang_codes, streams, sizes)


def _recipe_tokenizer(cfg: RecipeConfig, corpora: dict[str, Any],
                      tokenizer_dir: str | Path) -> tuple[Any, list[str], dict[str, tuple[str, str]]]:
    """``(tokenizer, language tags added to it, each task's language codes)``: ``tokenizer.path`` (with the tags it
    lacks added), or SentencePiece trained on the recipe's tasks into ``tokenizer_dir``."""


    if not cfg.tokenizer.path:
        start = time.time()
        logger.info("training the SentencePiece tokenizer (%d pieces, tau %g) into %s", cfg.tokenizer.vocab_size,
                    cfg.tokenizer.tau, tokenizer_dir)
        tokenizer = train_recipe_tokenizer(cfg, corpora, tokenizer_dir)
        logger.info("tokenizer trained (%.1f s)", time.time() - start)
        return tokenizer, [], {}
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer.path)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # Llama-style tokenizers have none
        logger.warning("tokenizer.path %s has no pad token: padding with its eos token %s (padding never "
                       "carries loss)", cfg.tokenizer.path, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    lang_codes = _checked_language_codes(cfg.tasks, tokenizer, cfg)
    added = add_language_tags(tokenizer, {n: c for n, c in corpora.items() if n not in lang_codes})
    if added:
        logger.warning("added the language tags %s to tokenizer.path %s; the model's embeddings get rows for "
                       "them (the mean of its trained rows) when it loads", ", ".join(added), cfg.tokenizer.path)
    return tokenizer, added, lang_codes


def _collator(cfg: RecipeConfig, tokenizer: Any, task_type: str, causal: bool) -> Any:
    """Packed next-token rows (decoder-only), span corruption (lm on an encoder-decoder) or padded pairs."""

    if causal:
        return CausalLMCollator(tokenizer, per_document=cfg.data.packed_attention == "document")
    if task_type == "lm":
        return SpanCorruptionCollator(tokenizer, seed=cfg.seed)
    return Seq2SeqCollator(tokenizer, label_pad_token_id=-100)


def _task_stream(cfg: RecipeConfig, dsd: Any, tokenizer: Any, causal: bool, codes: tuple[str, str] | None) -> Any:
    """A streamed task's training stream: its windows cleaned, then tokenized by the map-style path's function."""

    raw = dsd.stream
    d = cfg.data
    rows = task_rows(task_meta(raw.spec.name, dsd), tokenizer, "train", max_source_length=d.max_source_length,
                     max_target_length=d.max_target_length, causal=causal, codes=codes)
    declared = {k: float(v) for k, v in raw.spec.size.items()} if isinstance(raw.spec.size, dict) else {}
    return TaskStream.from_iterable(raw.spec.name, raw.train, transform=raw.transform(rows), window=d.stream_window,
                                    seed=cfg.seed, size=declared, shard_names=raw.files or None)


def _task_sizes(cfg: RecipeConfig, specs: list[TaskSpec], corpora: dict[str, Any], tokenized: dict[str, Any],
                streams: dict[str, Any], tokenizer: Any, causal: bool, lang_codes: dict[str, Any]) -> Any:
    """Every task's sizes: map-style tasks counted from their rows and text, streamed ones declared or counted."""

    counters: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    declared: dict[str, dict[str, float]] = {}
    tok = tokenizer_fingerprint(tokenizer)
    for spec in specs:
        name = spec.name
        if name in streams:
            declared[name] = dict(streams[name].size)
            stream = streams[name]
            counters[name] = stream.count_sizes if spec.size == "count" else None
            files = corpora[name].stream.files or _saved_dataset_files(spec.path)
            # what the rows depend on: the files, the task, the data settings, the tokenizer and the model kind
            keys[name] = {"files": file_identity(files) if files else None, "spec": spec.cache_fields(),
                          "data": cfg.to_dict()["data"], "tokenizer": tok, "causal": causal,
                          "codes": lang_codes.get(name)}
        else:
            train = tokenized[name]["train"]
            counters[name] = lambda train=train: dataset_sizes(train)
            keys[name] = {"rows": train._fingerprint}
            if isinstance(spec.size, dict):
                declared[name] = {k: float(v) for k, v in spec.size.items()}
    return TaskSizes(counters, declared, keys, cache_dir=_sizes_cache(cfg))


def _saved_dataset_files(path: str | None) -> list[str]:
    """The files of a ``save_to_disk`` directory (a ``source: hf`` stream's content), else none."""
    return sorted(str(p) for p in Path(path).rglob("*") if p.is_file()) if path and Path(path).is_dir() else []


def _sizes_cache(cfg: RecipeConfig) -> Any:

    return resolve_cache_dir(cfg.data.cache_dir)
