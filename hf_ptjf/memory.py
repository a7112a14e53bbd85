"""Memory planner: will a recipe's model fit the GPUs of an accelerate config under DeepSpeed ZeRO-3?

``hf-ptjf plan recipes/configs/X.yaml --accelerate-config accelerate_configs/gpu8_zero3_bf16.yaml`` (also
``hf-ptjf-plan``, :mod:`hf_ptjf.cli.plan`). Nothing is allocated: the model is built on the meta device.

* Model states (params, grads, optimizer states) come from DeepSpeed's own estimator,
  ``deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs`` (pure arithmetic, no GPU needed), for
  the three ZeRO-3 placements: no offload, optimizer offload, optimizer + parameter offload.
* Activations are a rough estimate, see :func:`activation_bytes` (only with a micro-batch size).

The public entry point is the pure function :func:`plan_memory` (-> :class:`MemoryPlan`, :func:`format_plan`);
:func:`read_accelerate_config` reads what it needs from an accelerate config. (Named ``memory``, not ``plan``:
:func:`hf_ptjf.mixture.plan` is the plan of a mixture.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml
from torch import nn
from transformers import PretrainedConfig, T5Config

from .checks import is_integer, size_in_bytes
from .errors import UserError
from .modeling import ModelArguments, build_config, build_meta_model, count_parameters, is_causal
from .recipe import load_recipe

__all__ = [
    "GIB",
    "AccelerateSetup",
    "MemoryPlan",
    "PhasePlan",
    "ZeroEstimate",
    "activation_bytes",
    "format_plan",
    "model_param_counts",
    "plan_cpu_zero3_phases",
    "plan_memory",
    "plan_recipe_phases",
    "read_accelerate_config",
]

GIB = 2**30
# bytes kept per attention score of a T5 (see activation_bytes); a decoder-only model's are in _causal_activation_bytes
_SCORE_BYTES = {"eager": 5, "sdpa": 2}
# (offload_optimizer, offload_param) placements DeepSpeed's estimator covers, cheapest on GPU last.
_PLACEMENTS = ((False, False), (True, False), (True, True))


@dataclass(frozen=True)
class ZeroEstimate:
    """DeepSpeed's ZeRO-3 model-states estimate for one placement."""

    offload_optimizer: bool = field(metadata={"help": "Optimizer states + fp32 master weights on CPU."})
    offload_param: bool = field(metadata={"help": "Parameters on CPU too (fetched per layer)."})
    gpu_bytes: int = field(metadata={"help": "Model states per GPU (DeepSpeed estimator)."})
    cpu_bytes: int = field(metadata={"help": "Host memory per node (DeepSpeed estimator, incl. its buffer factor)."})

    @property
    def name(self) -> str:
        """Short label of the placement."""
        if self.offload_param:
            return "offload optimizer+params"
        return "offload optimizer" if self.offload_optimizer else "no offload"


@dataclass
class MemoryPlan:
    """Result of :func:`plan_memory`: counts, DeepSpeed's estimates, activations and warnings."""

    total_params: int = field(metadata={"help": "Distinct parameters (tied weights once)."})
    largest_layer_params: int = field(metadata={"help": "Most parameters held directly by one module."})
    num_gpus_per_node: int = field(metadata={"help": "GPUs (processes) per node."})
    num_nodes: int = field(metadata={"help": "Nodes."})
    gpu_memory_gib: float = field(metadata={"help": "Memory of one GPU, GiB."})
    estimates: list[ZeroEstimate] = field(metadata={"help": "One per ZeRO-3 placement."})
    selected: ZeroEstimate = field(metadata={"help": "The placement of the accelerate/DeepSpeed config."})
    activation_bytes: int | None = field(default=None, metadata={"help": "Per-GPU activations, if estimated."})
    activation_note: str = field(default="", metadata={"help": "Inputs of the activation estimate."})
    cpu_memory_gib: float | None = field(default=None, metadata={"help": "Host memory per node, GiB, if known."})
    warnings: list[str] = field(default_factory=list, metadata={"help": "Human-readable problems found."})

    @property
    def gpu_total_bytes(self) -> int:
        """Per-GPU need of the selected placement: model states + activations (when estimated)."""
        return self.selected.gpu_bytes + (self.activation_bytes or 0)

    @property
    def fits(self) -> bool:
        """Whether the selected placement fits the GPU (and host, when ``cpu_memory_gib`` is known)."""
        gpu_ok = self.gpu_total_bytes <= self.gpu_memory_gib * GIB
        cpu_ok = self.cpu_memory_gib is None or self.selected.cpu_bytes <= self.cpu_memory_gib * GIB
        return gpu_ok and cpu_ok


def model_param_counts(model: nn.Module) -> tuple[int, int]:
    """``(total_params, largest_layer_params)`` as DeepSpeed's ``model_to_params`` defines them.

    DeepSpeed de-duplicates shared tensors by ``data_ptr()``, which is 0 for every meta tensor, so this counts
    by identity instead (same numbers on real tensors; a ZeRO-3 partitioned parameter by its full size).
    """
    total = count_parameters(model)  # parameters() already yields a tied tensor once
    largest = max((_size(m.parameters(recurse=False)) for m in model.modules()), default=0)
    return total, largest


def _size(params: Iterable[nn.Parameter]) -> int:
    # ZeRO-3 partitioned parameters are empty locally; DeepSpeed keeps the full size in `ds_numel`.
    return sum(int(getattr(p, "ds_numel", p.numel())) for p in params)


def activation_bytes(
    config: T5Config,
    micro_batch_size: int,
    source_length: int,
    target_length: int,
    *,
    gradient_checkpointing: bool = False,
    attn_implementation: str = "sdpa",
) -> int:
    """Rough per-GPU activation memory of one bf16 training micro-batch of a T5 (a decoder-only model: see
    :func:`_causal_activation_bytes`, over ``source_length + target_length`` tokens).

    Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", sec. 4) count
    34·sbh + 5·a·s²·b bytes per GPT layer (2-byte activations, 1-byte dropout masks). Redone for T5 with
    b micro-batch, s source / t target length, h=d_model, i=num_heads·d_kv, f=d_ff, a=heads, V=vocab:

    * self-attention block over n tokens (n=s or t):  5·bnh + 8·bni + k·a·b·n²
    * cross-attention block (decoder):                5·bth + 4·bti + 4·bsi + k·a·b·t·s
    * feed-forward block over n tokens:               5·bnh + c·bnf,  c = 9 gated (mT5), 5 otherwise
      (T5 has a dropout inside the FF block, so the activation's output is not kept but its mask is)
    * LM head + loss:                                 4·b·t·V  (bf16 logits + log-softmax output)

    encoder layer = self-attn(s) + FF(s); decoder layer = self-attn(t) + cross-attn + FF(t).
    With HF gradient checkpointing (per T5Block) only each block's input is kept (2·bsh per encoder layer,
    2·bth per decoder layer) plus one layer being recomputed.

    k is the bytes kept per attention score: 5 for ``eager`` (softmax output 2 + dropout mask 1 + dropout
    output 2) and 2 for ``sdpa`` (transformers' default; the fused kernel keeps no score matrix, but T5's
    relative position bias is passed as a bf16 additive mask that autograd keeps for every layer).
    Eager RMSNorm's fp32 upcasts are not counted: treat the result as +-30%, good for orders of magnitude.
    """
    if attn_implementation not in _SCORE_BYTES:
        raise UserError(f"attn_implementation must be one of {sorted(_SCORE_BYTES)}, got {attn_implementation!r}.")
    if is_causal(config):
        return _causal_activation_bytes(config, micro_batch_size, source_length + target_length,
                                        gradient_checkpointing, attn_implementation)
    return _seq2seq_activation_bytes(config, micro_batch_size, source_length, target_length, gradient_checkpointing,
                                     _SCORE_BYTES[attn_implementation])


def _seq2seq_activation_bytes(config: T5Config, micro_batch_size: int, source_length: int, target_length: int,
                              gradient_checkpointing: bool, k: int) -> int:
    """:func:`activation_bytes` of a T5, ``k`` bytes kept per attention score."""
    b, s, t = int(micro_batch_size), int(source_length), int(target_length)
    if min(b, s, t) <= 0:
        raise UserError(
            f"micro_batch_size, source_length and target_length must be positive, got {b}, {s}, {t}; "
            "fix --micro-batch-size / --source-length / --target-length."
        )
    h, f, a, vocab = config.d_model, config.d_ff, config.num_heads, config.vocab_size
    i = config.num_heads * config.d_kv
    c_ff = 9 if getattr(config, "is_gated_act", False) else 5

    def self_attn(n: int) -> int:
        return 5 * b * n * h + 8 * b * n * i + k * a * b * n * n

    def ff(n: int) -> int:
        return 5 * b * n * h + c_ff * b * n * f

    enc_layer = self_attn(s) + ff(s)
    dec_layer = self_attn(t) + (5 * b * t * h + 4 * b * t * i + 4 * b * s * i + k * a * b * t * s) + ff(t)
    head = 4 * b * t * vocab
    n_enc, n_dec = config.num_layers, config.num_decoder_layers
    if gradient_checkpointing:
        return 2 * b * s * h * n_enc + 2 * b * t * h * n_dec + max(enc_layer, dec_layer) + head
    return enc_layer * n_enc + dec_layer * n_dec + head


def _causal_activation_bytes(config: PretrainedConfig, micro_batch_size: int, length: int,
                             gradient_checkpointing: bool, attn_implementation: str) -> int:
    """The same count for a decoder-only (Llama-style) layer over n = prompt + target tokens: no dropout, grouped
    K/V (kv = key/value heads x head size), SwiGLU (gate, up, their product and the SiLU output kept).

    * attention block: 4·bnh (input, norm output) + 2·bn(i + 2·kv) (q, k, v) + 2·bni (context) + k·a·b·n²
      (k = 4 for eager: the bf16 scores and softmax output; 0 for sdpa: the fused causal kernel keeps only O(n)
      statistics and Llama passes no additive bias)
    * MLP block: 4·bnh + 8·bnf;  LM head + loss: 4·b·n·V
    """
    b, n = int(micro_batch_size), int(length)
    if min(b, n) <= 0:
        raise UserError(f"micro_batch_size and the sequence length (source + target) must be positive, got {b}, {n}; "
                         "fix --micro-batch-size / --source-length / --target-length.")
    h, f, a, vocab = config.hidden_size, config.intermediate_size, config.num_attention_heads, config.vocab_size
    head_dim = getattr(config, "head_dim", None) or h // a
    i, kv = a * head_dim, (getattr(config, "num_key_value_heads", None) or a) * head_dim
    k = {"eager": 4, "sdpa": 0}[attn_implementation]
    layer = 4 * b * n * h + 2 * b * n * (i + 2 * kv) + 2 * b * n * i + k * a * b * n * n + 4 * b * n * h + 8 * b * n * f
    head = 4 * b * n * vocab
    layers = config.num_hidden_layers
    if gradient_checkpointing:
        return 2 * b * n * h * layers + layer + head
    return layer * layers + head


def _zero3_estimate(total: int, largest: int, gpus: int, nodes: int, off_opt: bool, off_param: bool,
                    zero_init: bool, buffer_factor: float) -> ZeroEstimate:
    # Imported lazily: deepspeed's import is slow and logs its accelerator choice.
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
        total_params=total,
        largest_layer_params=largest,
        num_gpus_per_node=gpus,
        num_nodes=nodes,
        cpu_offload=off_opt,
        cpu_offload_params=off_param,
        zero_init=zero_init,
        additional_buffer_factor=buffer_factor,
    )
    return ZeroEstimate(offload_optimizer=off_opt, offload_param=off_param, gpu_bytes=gpu, cpu_bytes=cpu)


def _as_config(model: PretrainedConfig | ModelArguments, vocab_size: int | None) -> PretrainedConfig:
    if isinstance(model, PretrainedConfig):
        return model
    if isinstance(model, ModelArguments):
        if model.name_or_path is not None:
            raise UserError(
                "plan_memory needs sizes, not model.name_or_path; pass the checkpoint's config "
                "(transformers.AutoConfig.from_pretrained) instead of ModelArguments."
            )
        return build_config(model, vocab_size=vocab_size)
    raise UserError(f"plan_memory expects a model config or ModelArguments, got {type(model)!r}.")


def plan_memory(
    config: PretrainedConfig | ModelArguments,
    num_gpus_per_node: int = 1,
    num_nodes: int = 1,
    gpu_memory_gib: float = 80.0,
    *,
    offload_optimizer: bool = False,
    offload_param: bool = False,
    vocab_size: int | None = None,
    tie_word_embeddings: bool | None = None,
    micro_batch_size: int | None = None,
    source_length: int = 512,
    target_length: int = 512,
    gradient_checkpointing: bool = False,
    attn_implementation: str = "sdpa",
    cpu_memory_gib: float | None = None,
    zero_init: bool = True,
    additional_buffer_factor: float = 1.5,
) -> MemoryPlan:
    """Plan ZeRO-3 memory for a model given by a config or by :class:`ModelArguments` (+ ``vocab_size``).

    ``offload_*`` select the placement the warnings are about; all three placements are estimated.
    ``zero_init=True`` matches HF (``from_pretrained``/``from_config`` build under ``deepspeed.zero.Init``).
    Activations are estimated only when ``micro_batch_size`` is given (see :func:`activation_bytes`).
    """
    for name, value in (("num_gpus_per_node", num_gpus_per_node), ("num_nodes", num_nodes)):
        if not is_integer(value, 1):
            raise UserError(f"{name} must be a positive integer, got {value!r}.")
    if not gpu_memory_gib > 0:
        raise UserError(f"gpu_memory_gib must be positive, got {gpu_memory_gib!r}; fix --gpu-memory-gib.")
    cfg = _as_config(config, vocab_size)
    if tie_word_embeddings is None and isinstance(config, ModelArguments):
        tie_word_embeddings = config.tie_word_embeddings
    total, largest = model_param_counts(build_meta_model(cfg, tie_word_embeddings=tie_word_embeddings))

    warnings: list[str] = []
    if offload_param and not offload_optimizer:
        warnings.append(
            "offload_param without offload_optimizer is not a placement DeepSpeed's estimator covers; "
            "planning it as optimizer+param offload."
        )
        offload_optimizer = True
    estimates = [
        _zero3_estimate(total, largest, num_gpus_per_node, num_nodes, o, p, zero_init, additional_buffer_factor)
        for o, p in _PLACEMENTS
    ]
    wanted = (offload_optimizer, offload_param)
    selected = next(e for e in estimates if (e.offload_optimizer, e.offload_param) == wanted)

    act, note = None, ""
    if micro_batch_size is not None:
        act = activation_bytes(cfg, micro_batch_size, source_length, target_length,
                               gradient_checkpointing=gradient_checkpointing, attn_implementation=attn_implementation)
        note = (f"micro-batch {micro_batch_size}, source {source_length}, target {target_length}, "
                f"{attn_implementation} attention, gradient checkpointing {'on' if gradient_checkpointing else 'off'}")
    plan = MemoryPlan(total, largest, num_gpus_per_node, num_nodes, float(gpu_memory_gib), estimates, selected,
                      act, note, cpu_memory_gib, warnings)
    warnings.extend(_fit_warnings(plan))
    return plan


def _fit_warnings(plan: MemoryPlan) -> list[str]:
    """``DOES NOT FIT`` lines for the selected placement: per GPU (with a placement that fits, if any) and per node."""
    out = []
    selected, act, budget = plan.selected, plan.activation_bytes or 0, plan.gpu_memory_gib * GIB
    if plan.gpu_total_bytes > budget:
        fitting = [e.name for e in plan.estimates if e.gpu_bytes + act <= budget]
        hint = f"a placement that fits: {fitting[0]}" if fitting else "no ZeRO-3 placement fits"
        out.append(
            f"DOES NOT FIT: {selected.name} needs {plan.gpu_total_bytes / GIB:.1f} GiB per GPU "
            f"(model states {selected.gpu_bytes / GIB:.1f} + activations {act / GIB:.1f}) but a GPU has "
            f"{plan.gpu_memory_gib:g} GiB; {hint}. Otherwise add GPUs, enable gradient checkpointing, lower the "
            "micro-batch or sequence lengths."
        )
    if plan.cpu_memory_gib is not None and selected.cpu_bytes > plan.cpu_memory_gib * GIB:
        out.append(
            f"DOES NOT FIT: {selected.name} needs {selected.cpu_bytes / GIB:.1f} GiB of host memory per node but "
            f"a node has {plan.cpu_memory_gib:g} GiB; use more nodes or less offload."
        )
    return out


def format_plan(plan: MemoryPlan) -> str:
    """Human-readable report of a :class:`MemoryPlan`."""
    gpus = plan.num_gpus_per_node * plan.num_nodes
    lines = [
        f"parameters: {plan.total_params / 1e9:.3f}B total, largest layer {plan.largest_layer_params / 1e6:.1f}M",
        f"hardware: {plan.num_nodes} node(s) x {plan.num_gpus_per_node} GPU(s) = {gpus} GPU(s) "
        f"of {plan.gpu_memory_gib:g} GiB",
        "ZeRO-3 model states (DeepSpeed estimator, zero.Init):",
        f"  {'placement':<26}{'per GPU':>10}{'CPU/node':>11}",
    ]
    for e in plan.estimates:
        mark = "  <- selected" if e == plan.selected else ""
        lines.append(f"  {e.name:<26}{e.gpu_bytes / GIB:>8.2f}GiB{e.cpu_bytes / GIB:>8.2f}GiB{mark}")
    if plan.activation_bytes is None:
        lines.append("activations: not estimated (pass --micro-batch-size)")
    else:
        lines.append(f"activations per GPU: ~{plan.activation_bytes / GIB:.2f} GiB ({plan.activation_note})")
    lines.append(f"selected total per GPU: {plan.gpu_total_bytes / GIB:.2f} GiB of {plan.gpu_memory_gib:g} GiB "
                 f"-> {'fits' if plan.fits else 'DOES NOT FIT'}")
    lines += [f"WARNING: {w}" for w in plan.warnings]
    return "\n".join(lines)


@dataclass
class AccelerateSetup:
    """What the planner needs from an accelerate config (and its DeepSpeed JSON)."""

    distributed_type: str = field(metadata={"help": "accelerate's distributed_type, e.g. DEEPSPEED."})
    num_processes: int = field(metadata={"help": "Processes (GPUs) over all machines."})
    num_machines: int = field(metadata={"help": "Nodes."})
    zero_stage: int | None = field(default=None, metadata={"help": "ZeRO stage, when DeepSpeed is used."})
    offload_optimizer_device: str = field(default="none", metadata={"help": "none, cpu or nvme."})
    offload_param_device: str = field(default="none", metadata={"help": "none, cpu or nvme."})
    deepspeed_config_file: str | None = field(default=None, metadata={"help": "Resolved DeepSpeed JSON path."})

    @property
    def num_gpus_per_node(self) -> int:
        """Processes per machine."""
        return self.num_processes // self.num_machines

    @property
    def offload_optimizer(self) -> bool:
        """Optimizer states leave the GPU (cpu or nvme)."""
        return self.offload_optimizer_device in ("cpu", "nvme")

    @property
    def offload_param(self) -> bool:
        """Parameters leave the GPU (cpu or nvme)."""
        return self.offload_param_device in ("cpu", "nvme")


def _resolve(path: str, base: Path) -> Path:
    # accelerate resolves deepspeed_config_file against the launch directory; the configs here are written
    # relative to the repository root, so also try the YAML's folder and its parent.
    for candidate in (Path(path), base / path, base.parent / path):
        if candidate.is_file():
            return candidate
    raise UserError(f"deepspeed_config_file {path!r} not found (looked in ., {base}, {base.parent}); fix the path.")


def read_accelerate_config(path: str | Path) -> AccelerateSetup:
    """Parse an accelerate YAML (and the DeepSpeed JSON it points to) into an :class:`AccelerateSetup`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"accelerate config {str(path)!r} does not exist; fix --accelerate-config.")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise UserError(f"accelerate config {str(path)!r} must be a YAML mapping.")
    dist = str(cfg.get("distributed_type", "NO"))
    nproc, nmach = int(cfg.get("num_processes", 1) or 1), int(cfg.get("num_machines", 1) or 1)
    if nproc <= 0 or nmach <= 0 or nproc % nmach:
        raise UserError(
            f"{path}: num_processes={nproc} must be a positive multiple of num_machines={nmach} "
            "(it counts processes over all machines)."
        )
    setup = AccelerateSetup(distributed_type=dist, num_processes=nproc, num_machines=nmach)
    ds = cfg.get("deepspeed_config") or {}
    if dist == "DEEPSPEED":
        ds_file = ds.get("deepspeed_config_file")
        if ds_file:
            resolved = _resolve(ds_file, path.parent)
            setup.deepspeed_config_file = str(resolved)
            zero = json.loads(resolved.read_text()).get("zero_optimization", {})
            setup.zero_stage = zero.get("stage")
            setup.offload_optimizer_device = str((zero.get("offload_optimizer") or {}).get("device", "none"))
            setup.offload_param_device = str((zero.get("offload_param") or {}).get("device", "none"))
        else:  # accelerate's own deepspeed_config keys
            setup.zero_stage = ds.get("zero_stage")
            setup.offload_optimizer_device = str(ds.get("offload_optimizer_device", "none"))
            setup.offload_param_device = str(ds.get("offload_param_device", "none"))
    return setup


# ------------------------------------------------------------------ per process and phase, ZeRO-3 on CPU (issue 27)
# DeepSpeed's defaults where a JSON leaves a bucket out (elements)
_DS_DEFAULTS = {"reduce_bucket_size": 5e8, "stage3_prefetch_bucket_size": 5e7, "sub_group_size": 1e9,
                "stage3_max_live_parameters": 1e9}
# python + torch + transformers + deepspeed + the recipe's tokenized data before the first model: 571 MiB per rank in
# both 0.5B rehearsals and the CI-sized ones (docs/scale.md)
BASE_PROCESS_BYTES = int(0.56 * GIB)
PHASES = ("load", "load_pinned", "train", "evaluate", "save", "push")


@dataclass
class PhasePlan:
    """Predicted peak RSS of each process in one phase of a stage, and the terms it adds up."""

    phase: str = field(metadata={"help": "load (from scratch), load_pinned, train, evaluate, save or push."})
    rank0_bytes: int = field(metadata={"help": "The main process: it reads, writes and pushes the shards."})
    other_bytes: int = field(metadata={"help": "Every other process."})
    terms: dict[str, int] = field(default_factory=dict, metadata={"help": "What the prediction adds up, bytes."})


def plan_cpu_zero3_phases(config: PretrainedConfig, num_processes: int, *, micro_batch_size: int, source_length: int,
                          target_length: int, max_shard_bytes: int, zero: dict | None = None,
                          tie_word_embeddings: bool | None = None, bytes_per_param: int = 4,
                          base_bytes: int = BASE_PROCESS_BYTES) -> list[PhasePlan]:
    """Peak RSS per process and phase of a stage under ZeRO-3 over ``num_processes`` CPU processes (fp32).

    Per process, with P parameters, n processes and 4-byte elements: the parameter partition 4P/n while loading;
    in training also DeepSpeed's fp32 master partition, the gradient partition and Adam's two moments (5 x 4P/n in
    all), the reduce and prefetch buckets of ``zero`` (the JSON's ``zero_optimization``), one optimizer sub-group
    flattened, the largest module gathered and its full gradient, the parameters ZeRO-3 keeps gathered (up to
    ``stage3_max_live_parameters``; also while generating) and the activations (the bf16 estimate of
    :func:`activation_bytes` doubled for fp32). Loading a pinned sha adds, on the main process, one shard (read by
    safetensors) and the parameter being copied, and on every process the previous stage's model states, which
    DeepSpeed 0.19 keeps allocated until the new stage's engine starts (measured, docs/scale.md); the consolidated
    save adds one shard and one parameter. ``base_bytes``: the process before any model exists (interpreter,
    libraries, the tokenized data), measured on this machine."""
    zero = {**_DS_DEFAULTS, **(zero or {})}
    total, largest = model_param_counts(build_meta_model(config, tie_word_embeddings=tie_word_embeddings))
    meta = build_meta_model(config, tie_word_embeddings=tie_word_embeddings)
    biggest_param = max(int(p.numel()) for p in meta.parameters())
    e, n = bytes_per_param, num_processes
    part = e * total // n
    module, param = e * largest, e * biggest_param
    states = 5 * part
    act = 2 * activation_bytes(config, micro_batch_size, source_length, target_length)
    buckets = e * int(zero["reduce_bucket_size"] + zero["stage3_prefetch_bucket_size"])
    subgroup = e * int(min(zero["sub_group_size"], total / n))
    live = e * int(min(zero["stage3_max_live_parameters"], total))
    shard = min(max_shard_bytes, e * total)

    def plan(name: str, common: dict[str, int], main_only: dict[str, int]) -> PhasePlan:
        terms = {"base": base_bytes, **common}
        other = sum(terms.values())
        terms.update(main_only)
        return PhasePlan(name, sum(terms.values()), other, terms)

    return [
        plan("load", {"param partition": part, "one module built whole": module}, {}),
        plan("load_pinned", {"previous stage's model states": states, "param partition": part,
                             "one module built whole": module, "one param gathered": param}, {"one shard read": shard}),
        plan("train", {"model states (5 x 4P/n)": states, "buckets": buckets, "optimizer sub-group": subgroup,
                       "live gathered params": live, "module + its gradient gathered": 2 * module,
                       "activations (fp32)": act}, {}),
        plan("evaluate", {"model states (5 x 4P/n)": states, "live gathered params": live,
                          "module gathered (generate)": 2 * module}, {}),
        plan("save", {"model states (5 x 4P/n)": states, "one param gathered": param}, {"one shard copied": shard}),
        plan("push", {"model states (5 x 4P/n)": states}, {}),
    ]


def plan_recipe_phases(recipe: str | Path, overrides: Iterable[str], accelerate_config: str | Path) -> dict[str, dict]:
    """:func:`plan_cpu_zero3_phases` for a recipe and an accelerate config: ``{phase: {rank0_mib, rank1_mib,
    terms_mib}}`` (the vocabulary is the recipe tokenizer's ``vocab_size``; lengths and batch are the recipe's)."""
    cfg = load_recipe(recipe, list(overrides))
    setup = read_accelerate_config(accelerate_config)
    zero = json.loads(Path(setup.deepspeed_config_file).read_text()).get("zero_optimization", {}) \
        if setup.deepspeed_config_file else {}
    config = build_config(cfg.model, vocab_size=cfg.model.vocab_size or cfg.tokenizer.vocab_size)
    training = cfg.training_for(cfg.stages[0])
    plans = plan_cpu_zero3_phases(
        config, setup.num_processes, micro_batch_size=int(training["per_device_train_batch_size"]),
        source_length=cfg.data.max_source_length, target_length=cfg.data.max_target_length,
        max_shard_bytes=size_in_bytes(cfg.max_shard_size), zero=zero, tie_word_embeddings=cfg.model.tie_word_embeddings)
    mib = 2**20
    return {p.phase: {"rank0_mib": round(p.rank0_bytes / mib), "rank1_mib": round(p.other_bytes / mib),
                      "terms_mib": {k: round(v / mib) for k, v in p.terms.items()}} for p in plans}
