"""Model construction: from sizes (from scratch) or from a checkpoint, encoder-decoder or decoder-only.

``model.family`` says which architecture sizes build: ``t5`` (a pre-LN, RMSNorm encoder-decoder, T5 / mT5) or
``llama`` (a decoder-only causal LM: pre-norm RMSNorm, RoPE, SwiGLU, the architecture of Llama, Qwen, Gemma).
A checkpoint (``name_or_path``) is whatever its config says: any ``AutoModelForSeq2SeqLM`` or
``AutoModelForCausalLM``, safetensors only.

* :class:`ModelArguments` (from :mod:`hf_ptjf.model_spec`): the recipe's ``model:`` section (sizes, or
  ``name_or_path``), validated when the recipe is read; ``.causal``.
* :func:`build_config` / :func:`build_model`: a ``T5Config`` / ``LlamaConfig`` and its model.
* :func:`build_meta_model` / :func:`count_parameters`: shape-only models for planning, no memory.
* :func:`check_vocab`: refuse a tokenizer that does not match a checkpoint's embedding table.

transformers 5 quirk handled here: ``T5Config`` forces ``tie_word_embeddings=True`` (the flag only
controls the ``d_model**-0.5`` decoder-output scaling now), so a from-scratch model is always tied.
Untied models (T5 v1.1 / mT5) get their own ``lm_head`` weight in :func:`build_model`; checkpoints with
distinct ``shared``/``lm_head`` tensors stay untied when reloaded (transformers only ties equal tensors).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import nn
from transformers.integrations.deepspeed import deepspeed_config, is_deepspeed_zero3_enabled
from transformers.utils import cached_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    GenerationConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from .model_spec import SIZE_FIELDS, ModelArguments
from .shards import INDEX_NAME, WEIGHTS_NAME, load_sharded

__all__ = [
    "ModelArguments",  # (defined in hf_ptjf.model_spec, torch-free)
    "build_config",
    "build_meta_model",
    "build_model",
    "check_vocab",
    "count_parameters",
    "is_causal",
    "parameter_numel",
    "token_rows",
]

logger = logging.getLogger(__name__)


def build_config(
    args: ModelArguments,
    *,
    vocab_size: int | None = None,
    pad_token_id: int = 0,
    eos_token_id: int = 1,
    decoder_start_token_id: int = 0,
) -> T5Config | LlamaConfig:
    """A from-scratch config for ``args``: a ``T5Config``, or a ``LlamaConfig`` for ``family: llama``.

    ``vocab_size`` wins over ``args.vocab_size``; one of them must be given. ``config.tie_word_embeddings`` of a
    T5Config reads True whatever ``args`` says (transformers 5 forces it); the untying happens in :func:`build_model`.
    """
    vocab = vocab_size if vocab_size is not None else args.vocab_size
    if vocab is None or vocab <= 0:
        raise ValueError(
            f"vocab_size must be a positive integer, got {vocab!r}; set model.vocab_size in the recipe "
            "or pass a tokenizer / --vocab-size."
        )
    if args.family == "llama":
        return LlamaConfig(
            vocab_size=int(vocab),
            hidden_size=args.d_model,
            intermediate_size=args.d_ff,
            num_hidden_layers=args.num_layers,
            num_attention_heads=args.num_heads,
            num_key_value_heads=args.num_kv_heads or args.num_heads,
            max_position_embeddings=args.max_position_embeddings,
            rope_parameters={"rope_type": "default", "rope_theta": float(args.rope_theta)},
            attention_dropout=args.dropout_rate,
            hidden_act="silu",  # SwiGLU
            tie_word_embeddings=args.tie_word_embeddings,
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
            bos_token_id=None,  # prompts start with the task tag, not a BOS token
            use_cache=False,  # see build_model
        )
    return T5Config(
        vocab_size=int(vocab),
        d_model=args.d_model,
        d_kv=args.resolved_d_kv,
        d_ff=args.d_ff,
        num_layers=args.num_layers,
        num_decoder_layers=args.num_decoder_layers,
        num_heads=args.num_heads,
        relative_attention_num_buckets=args.relative_attention_num_buckets,
        dropout_rate=args.dropout_rate,
        feed_forward_proj=args.feed_forward_proj,
        # In transformers 5 this only selects the decoder-output scaling (True: T5 v1.0, False: v1.1/mT5).
        tie_word_embeddings=args.tie_word_embeddings,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        decoder_start_token_id=decoder_start_token_id,
        is_encoder_decoder=True,
    )


def is_causal(model_or_config: Any) -> bool:
    """A decoder-only (causal) model or config, as opposed to an encoder-decoder."""
    config = getattr(model_or_config, "config", model_or_config)
    return not getattr(config, "is_encoder_decoder", False)


def _auto_class(config: PretrainedConfig) -> Any:
    return AutoModelForCausalLM if is_causal(config) else AutoModelForSeq2SeqLM


def _wants_untied(config: T5Config) -> bool:
    # transformers 5 pops `tie_word_embeddings` and records its old meaning as `scale_decoder_outputs`.
    return getattr(config, "scale_decoder_outputs", True) is False


def _zero3_init_context() -> contextlib.AbstractContextManager:
    """``deepspeed.zero.Init`` when the HF DeepSpeed ZeRO-3 config is active, so a new weight is partitioned too."""
    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.Init(config_dict_or_path=deepspeed_config())


def _untie_lm_head(model: PreTrainedModel) -> None:
    """Give ``model.lm_head`` its own weight (mT5 / T5 v1.1) and drop it from the tie mapping.

    The instance-level ``_tied_weights_keys`` keeps a later ``tie_weights()`` from re-tying it; the
    encoder/decoder token embeddings stay tied to ``shared``.
    """
    if model.lm_head.weight is not model.shared.weight:
        return
    config = model.config
    ref = model.shared.weight
    device = torch.device("meta") if ref.is_meta else ref.device
    with _zero3_init_context():
        head = nn.Linear(config.d_model, config.vocab_size, bias=False, device=device, dtype=ref.dtype)
    # T5X / mT5 initialise the separate head with fan-in scaling. HF uses std 1.0 for an untied head
    # and applies no d_model**-0.5 output scaling then, so the first logits would have a spread of
    # ~sqrt(d_model) (a first loss of ~24 on a tiny model, far worse at 4096).
    std = config.initializer_factor * config.d_model**-0.5
    if not head.weight.is_meta:
        if hasattr(head.weight, "ds_id"):  # ZeRO-3 partitioned: initialise the full tensor once, on rank 0
            import deepspeed

            with deepspeed.zero.GatheredParameters(head.weight, modifier_rank=0):
                nn.init.normal_(head.weight, mean=0.0, std=std)
        else:
            nn.init.normal_(head.weight, mean=0.0, std=std)
    model.lm_head = head
    model._tied_weights_keys = {k: v for k, v in type(model)._tied_weights_keys.items() if k != "lm_head.weight"}
    model.all_tied_weights_keys.pop("lm_head.weight", None)


def _checkpoint_has(args: ModelArguments, key: str) -> str | None:
    """Path of the safetensors file of checkpoint ``args.name_or_path`` holding ``key`` (header read only)."""
    kw = dict(revision=args.revision, _raise_exceptions_for_missing_entries=False)
    index = cached_file(args.name_or_path, "model.safetensors.index.json", **kw)
    if index is not None:
        shard = json.loads(Path(index).read_text())["weight_map"].get(key)
        path = cached_file(args.name_or_path, shard, **kw) if shard else None
    else:
        path = cached_file(args.name_or_path, "model.safetensors", **kw)
    if path is None:
        return None
    with safe_open(path, framework="pt") as f:
        return path if key in f.keys() else None


def _checkpoint_files(args: ModelArguments) -> list[str]:
    """The safetensors files of checkpoint ``args`` (a folder, or a Hub repo at its revision), in index order."""
    kw = dict(revision=args.revision, _raise_exceptions_for_missing_entries=False)
    index = cached_file(args.name_or_path, INDEX_NAME, **kw)
    if index is not None:
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        return [cached_file(args.name_or_path, shard, revision=args.revision) for shard in shards]
    path = cached_file(args.name_or_path, WEIGHTS_NAME, **kw)
    if path is None:
        raise OSError(f"{args.name_or_path} has no {WEIGHTS_NAME} nor {INDEX_NAME}")
    return [path]


def _from_pretrained_zero3(args: ModelArguments, config: PretrainedConfig) -> PreTrainedModel:
    """A checkpoint loaded under ZeRO-3 one shard at a time (:func:`hf_ptjf.shards.load_sharded`): the model is
    built partitioned (``zero.Init``), rank 0 reads one safetensors shard at a time and each parameter is
    gathered, filled and re-partitioned. ``from_pretrained`` instead reads every shard into one state dict on rank
    0 (the whole model on one process). An untied checkpoint (mT5) gets its own head before loading."""
    files = _checkpoint_files(args)
    model = _auto_class(config).from_config(config, trust_remote_code=args.trust_remote_code)
    if hasattr(model, "lm_head") and hasattr(model, "shared") and model.lm_head.weight is model.shared.weight \
            and _checkpoint_has(args, "lm_head.weight"):
        _untie_lm_head(model)  # (transformers 5 ties every T5 built from a config)
    missing = load_sharded(model, files)
    if missing:
        logger.warning("%s: no weights in the checkpoint for %s; they keep their initialisation",
                       args.name_or_path, ", ".join(sorted(missing)[:10]))
    with contextlib.suppress(OSError):
        model.generation_config = GenerationConfig.from_pretrained(args.name_or_path, revision=args.revision)
    model.config._name_or_path = args.name_or_path
    model.eval()  # (as from_pretrained leaves it; the Trainer switches to train mode)
    return model


def _tokenizer_ids(tokenizer: Any) -> dict[str, int]:
    pad = getattr(tokenizer, "pad_token_id", None)
    eos = getattr(tokenizer, "eos_token_id", None)
    ids = {"pad_token_id": 0 if pad is None else int(pad), "eos_token_id": 1 if eos is None else int(eos)}
    ids["decoder_start_token_id"] = ids["pad_token_id"]  # T5 convention: decoding starts from <pad>
    return ids


def add_token_rows(model: PreTrainedModel, tokenizer: Any, new_tokens: Sequence[str]) -> None:
    """Rows for ``new_tokens`` (just added to ``tokenizer``, e.g. language tags a pretrained checkpoint lacks): the
    embedding table (and an untied LM head) grow to ``len(tokenizer)`` if needed, and each new token's row starts
    at the mean of the rows the checkpoint trained, not at random."""
    ids = [i for i in tokenizer.convert_tokens_to_ids(list(new_tokens)) if i is not None]
    if not ids:
        return
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    trained = min(ids)  # the rows before the first added token are the checkpoint's own
    tables = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not tables[0]:
        tables.append(head.weight)
    gathered = contextlib.nullcontext()
    if any(hasattr(w, "ds_id") for w in tables):  # ZeRO-3: change the full tensors once, on rank 0
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(tables, modifier_rank=0)
    with gathered, torch.no_grad():
        for w in tables:
            w[ids] = w[:trained].mean(dim=0).to(w.dtype)


def build_model(args: ModelArguments, tokenizer: Any | None = None, new_tokens: Sequence[str] = ()) -> PreTrainedModel:
    """Load ``args.name_or_path`` (safetensors only, pinned to ``args.revision``) or build a T5 from scratch.

    From scratch, the vocabulary is ``args.vocab_size`` or ``len(tokenizer)`` and the special-token ids come
    from the tokenizer. With a tokenizer, :func:`check_vocab` guards against a mismatched tokenizer.
    ``new_tokens``: tokens the recipe added to a checkpoint's tokenizer (its language tags), given rows by
    :func:`add_token_rows` when the loaded model does not have them yet.
    """
    if args.name_or_path is not None:
        defaults = ModelArguments()
        ignored = [f for f in SIZE_FIELDS if getattr(args, f) != getattr(defaults, f)]
        if ignored:
            logger.warning("model.name_or_path is set, so these model fields are ignored: %s", ", ".join(ignored))
        config = AutoConfig.from_pretrained(args.name_or_path, revision=args.revision,
                                            trust_remote_code=args.trust_remote_code)
        if is_deepspeed_zero3_enabled():
            model = _from_pretrained_zero3(args, config)
        else:
            model = _auto_class(config).from_pretrained(
                args.name_or_path,
                revision=args.revision,
                use_safetensors=True,
                trust_remote_code=args.trust_remote_code,
            )
    else:
        vocab = args.vocab_size if args.vocab_size is not None else (len(tokenizer) if tokenizer is not None else None)
        if vocab is None:
            raise ValueError("model.vocab_size is not set and no tokenizer was given; set one of them.")
        ids = _tokenizer_ids(tokenizer) if tokenizer is not None else {}
        config = build_config(args, vocab_size=vocab, **ids)
        # from_config (not the class constructor) so that an active HF ZeRO-3 config builds under zero.Init.
        model = _auto_class(config).from_config(config)
        if not args.tie_word_embeddings and not is_causal(config):
            _untie_lm_head(model)  # (LlamaConfig honours tie_word_embeddings itself)
    if is_causal(model.config):
        # No KV cache in forward passes outside generate() (which turns it on itself): with one, transformers
        # ignores the per-document position ids of packed rows and lets documents attend to each other.
        model.config.use_cache = False
        if model.generation_config is not None:
            model.generation_config.use_cache = True
    if tokenizer is not None:
        # rows for tokens the recipe added to a checkpoint's tokenizer, once: a checkpoint this recipe already
        # trained (a later stage's init) lists them in its config and keeps its trained rows
        done = set(getattr(model.config, "hf_ptjf_added_tokens", None) or [])
        todo = [t for t in new_tokens if t not in done] if args.name_or_path is not None else []
        if todo:
            add_token_rows(model, tokenizer, todo)
            model.config.hf_ptjf_added_tokens = sorted(done | set(todo))
        check_vocab(model, tokenizer)
    return model


def build_meta_model(config: PretrainedConfig, *, tie_word_embeddings: bool | None = None) -> PreTrainedModel:
    """A seq2seq or causal LM for ``config`` whose tensors live on the meta device: shapes only, no memory, fast.

    ``tie_word_embeddings=False`` gives the LM head its own weight; None infers it from a T5Config built by
    :func:`build_config` (pass it explicitly for configs read from checkpoints, e.g. mT5's).
    """
    with torch.device("meta"):
        model = T5ForConditionalGeneration(config) if type(config) is T5Config else _auto_class(config).from_config(config)
    untied = _wants_untied(config) if tie_word_embeddings is None else not tie_word_embeddings
    if untied and hasattr(model, "lm_head") and hasattr(model, "shared"):
        _untie_lm_head(model)
    return model


def parameter_numel(p: torch.Tensor) -> int:
    """Elements of a parameter: its full size also when ZeRO-3 partitioned it (empty locally; DeepSpeed keeps the
    full size in ``ds_numel``)."""
    return int(getattr(p, "ds_numel", p.numel()))


_numel = parameter_numel  # (the name runner/loop.py and analysis/plan.py import; use parameter_numel)


def count_parameters(config_or_model: PretrainedConfig | nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once) of a model, or of a config via a meta model."""
    model = build_meta_model(config_or_model) if isinstance(config_or_model, PretrainedConfig) else config_or_model
    if not isinstance(model, nn.Module):
        raise ValueError(f"count_parameters expects a model config or a torch.nn.Module, got {type(config_or_model)!r}.")
    return sum(parameter_numel(p) for p in model.parameters())  # parameters() already de-duplicates shared tensors


def token_rows(tokenizer: Any) -> int:
    """Embedding rows a tokenizer's ids need: ``len(tokenizer)``, or more for an M2M100-style tokenizer whose language
    codes (and "made-up" padding words) come after its vocabulary and are not counted by ``len``."""
    n = len(tokenizer)
    codes = getattr(tokenizer, "lang_token_to_id", None)
    if codes and hasattr(tokenizer, "get_lang_id"):
        n = max(n, max(codes.values()) + 1 + int(getattr(tokenizer, "num_madeup_words", 0)))
    return n


def check_vocab(model: nn.Module, tokenizer: Any, *, pad_to_multiple_of: int = 128) -> None:
    """Raise ValueError unless ``len(tokenizer)`` fits ``model``'s embedding table.

    The table may be larger only by padding up to a multiple of ``pad_to_multiple_of`` (T5: 32100 tokens ->
    32128 rows; mT5: 250100 -> 250112); any other difference means the wrong tokenizer.
    """
    n_tok = token_rows(tokenizer)
    n_emb = int(model.get_input_embeddings().num_embeddings)
    padded = math.ceil(n_tok / pad_to_multiple_of) * pad_to_multiple_of
    if not n_tok <= n_emb <= padded:
        name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        raise ValueError(
            f"tokenizer has {n_tok} tokens but model {name} has {n_emb} embeddings; "
            "use the tokenizer the model was trained with."
        )
