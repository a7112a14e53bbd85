"""``ModelArguments``: the recipe's ``model:`` section, read and validated once (torch-free).

``model.family`` says which architecture sizes build: ``t5`` (a pre-LN, RMSNorm encoder-decoder, T5 / mT5) or
``llama`` (a decoder-only causal LM). A checkpoint (``name_or_path``) is whatever its config says. Building the model
is :mod:`hf_ptjf.modeling`'s; this module only says what the recipe asks for, so that the recipe layer can hold it
without importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .checks import did_you_mean, is_integer, is_number
from .written import WrittenMapping

__all__ = ["FAMILIES", "SIZE_FIELDS", "ModelArguments"]

FAMILIES = ("t5", "llama")  # what `model.family` builds from sizes: encoder-decoder, decoder-only
# sizes that only one family has; a non-default value in the other family is refused, not ignored
T5_ONLY = ("num_decoder_layers", "d_kv", "relative_attention_num_buckets", "feed_forward_proj")
LLAMA_ONLY = ("num_kv_heads", "max_position_embeddings", "rope_theta")
# Fields describing the architecture; ignored (with a warning) when ``name_or_path`` is set.
SIZE_FIELDS = (
    "num_layers",
    "num_decoder_layers",
    "d_model",
    "d_ff",
    "num_heads",
    "d_kv",
    "feed_forward_proj",
    "tie_word_embeddings",
    "vocab_size",
    "relative_attention_num_buckets",
    "family",
    "num_kv_heads",
    "max_position_embeddings",
    "rope_theta",
)
_POSITIVE = ("num_layers", "num_decoder_layers", "d_model", "d_ff", "num_heads", "d_kv", "vocab_size", "num_kv_heads",
             "max_position_embeddings", "relative_attention_num_buckets")


@dataclass
class ModelArguments(WrittenMapping):
    """The recipe's ``model:`` section: a checkpoint to load, or the family and sizes of a model built from scratch."""

    name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub id or local path of a seq2seq or causal-LM checkpoint. When set, the size fields are "
                  "ignored."},
    )
    family: str = field(
        default="t5",
        metadata={"help": "What sizes build: 't5' (encoder-decoder) or 'llama' (decoder-only: RMSNorm, RoPE, SwiGLU)."},
    )
    revision: str | None = field(
        default=None, metadata={"help": "Hub revision (commit sha) to pin `name_or_path` to, for reproducibility."}
    )
    num_layers: int = field(default=3, metadata={"help": "Number of encoder layers."})
    num_decoder_layers: int | None = field(
        default=None, metadata={"help": "Number of decoder layers (default: `num_layers`)."}
    )
    d_model: int = field(default=512, metadata={"help": "Hidden size."})
    d_ff: int = field(default=2048, metadata={"help": "Feed-forward inner size."})
    num_heads: int = field(default=8, metadata={"help": "Attention heads."})
    d_kv: int | None = field(default=None, metadata={"help": "Size of one head (default: d_model // num_heads)."})
    dropout_rate: float = field(default=0.1, metadata={"help": "Dropout probability, in [0, 1)."})
    feed_forward_proj: str = field(
        default="relu", metadata={"help": "FF activation: 'relu' (T5 v1.0) or 'gated-gelu' (T5 v1.1 / mT5)."}
    )
    tie_word_embeddings: bool = field(
        default=True,
        metadata={"help": "Share input embedding and LM head (T5 v1.0). mT5 / T5 v1.1: False (separate lm_head)."},
    )
    vocab_size: int | None = field(
        default=None, metadata={"help": "Embedding rows (default: the tokenizer's size, len(tokenizer))."}
    )
    relative_attention_num_buckets: int = field(
        default=32, metadata={"help": "Buckets of T5's relative position bias."}
    )
    num_kv_heads: int | None = field(
        default=None, metadata={"help": "llama: key/value heads (grouped-query attention; default: num_heads)."}
    )
    max_position_embeddings: int = field(
        default=2048, metadata={"help": "llama: the longest sequence (RoPE positions); longer inputs are refused."}
    )
    rope_theta: float = field(default=10000.0, metadata={"help": "llama: RoPE base frequency."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modeling code from `name_or_path` (only for trusted repos)."}
    )

    def __post_init__(self) -> None:
        self._check_family()
        for name in _POSITIVE:
            value = getattr(self, name)
            if value is not None and not is_integer(value, minimum=1):
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}; fix it in the recipe.")
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
            raise ValueError(f"model.num_heads={self.num_heads} is not a multiple of model.num_kv_heads="
                             f"{self.num_kv_heads}; grouped-query attention shares each key/value head among a whole "
                             "number of query heads.")
        if self.d_kv is None and self.d_model % self.num_heads:
            raise ValueError(
                f"model.d_model={self.d_model} is not divisible by model.num_heads={self.num_heads}; "
                "change one of them or set model.d_kv explicitly."
            )
        if not is_number(self.dropout_rate, 0.0, 1.0):
            raise ValueError(f"model.dropout_rate must be in [0, 1), got {self.dropout_rate!r}.")
        if not is_number(self.rope_theta, 0.0, open_low=True):
            raise ValueError(f"model.rope_theta must be a number > 0, got {self.rope_theta!r}.")
        for flag in ("tie_word_embeddings", "trust_remote_code"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"model.{flag} must be true or false, got {getattr(self, flag)!r}.")
        self._check_feed_forward_proj()
        if self.revision is not None and self.name_or_path is None:
            raise ValueError("model.revision is only used with model.name_or_path; set both or drop revision.")

    def _check_family(self) -> None:
        """A known family, and no size of the other family (it would be ignored, not used)."""
        if self.family not in FAMILIES:
            raise ValueError(f"model.family must be one of {', '.join(FAMILIES)}, got {self.family!r}."
                             f"{did_you_mean(str(self.family), FAMILIES)}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        other = T5_ONLY if self.family == "llama" else LLAMA_ONLY
        for name in other:
            if getattr(self, name) != defaults[name] and self.name_or_path is None:
                raise ValueError(f"model.{name} is a size of the {'t5' if self.family == 'llama' else 'llama'} family, "
                                 f"but model.family is {self.family!r}; remove it or change model.family.")

    def _check_feed_forward_proj(self) -> None:
        # transformers' activation registry is the list of names; it loads torch, so only when a model is checked
        from transformers.activations import ACT2FN

        parts = str(self.feed_forward_proj).split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or parts[-1] not in ACT2FN:
            raise ValueError(
                f"model.feed_forward_proj={self.feed_forward_proj!r} is not valid; use an activation like 'relu' "
                "or 'gelu', optionally gated: 'gated-gelu' (mT5)."
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | "ModelArguments") -> "ModelArguments":
        """Build from a recipe's ``model:`` mapping (a ``ModelArguments`` is returned as it is); unknown keys raise
        ValueError with a did-you-mean hint."""
        if isinstance(d, ModelArguments):
            return d
        if not isinstance(d, Mapping):
            raise ValueError(f"The recipe's `model:` section must be a mapping of ModelArguments fields, got {d!r}.")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in known:
                hint = did_you_mean(key, known) or f" Known fields: {', '.join(known)}."
                raise ValueError(f"Unknown model argument {key!r} in the recipe's `model:` section.{hint}")
        args = cls(**dict(d))
        args.remember_written(d)
        return args

    @property
    def causal(self) -> bool:
        """Decoder-only (a causal LM)? For a checkpoint, what its config says (read, not loaded)."""
        if self.name_or_path is None:
            return self.family == "llama"
        from transformers import AutoConfig  # (reads the checkpoint's config.json; loads torch)

        config = AutoConfig.from_pretrained(self.name_or_path, revision=self.revision,
                                            trust_remote_code=self.trust_remote_code)
        return not getattr(config, "is_encoder_decoder", False)

    @property
    def resolved_d_kv(self) -> int:
        """Head size: ``d_kv`` or ``d_model // num_heads``."""
        return self.d_kv if self.d_kv is not None else self.d_model // self.num_heads
