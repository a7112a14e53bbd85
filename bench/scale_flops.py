"""FLOPs per optimizer step of a recipe's model, counted, and the step time they imply at a published MFU (issue 27).

    python bench/scale_flops.py recipes/configs/llama2_13b_lm.yaml recipes/configs/mt5_xxl_13b.yaml

FLOPs of one training micro-batch (the recipe's ``per_device_train_batch_size`` and sequence lengths) come from
llm-foundry's MFU formula (:func:`formula_flops`: 6 per weight per token, plus attention), the definition its
published MFU uses; the formula is first checked against ``torch.utils.flop_counter.FlopCounterMode`` on small real
models of both families (counting a 13B model on the meta device fails: transformers' mask code calls ``.item()``).
A step is ``micro-batch FLOPs x gradient_accumulation_steps x GPUs``. Activation-checkpointing recompute is not
counted (model FLOPs, not hardware FLOPs).

The expected step time is an extrapolation: ``step FLOPs / (GPUs x peak bf16 FLOP/s x MFU)`` with the MFU that
llm-foundry publishes for its 13B model at sequence length 2048 on 8 GPUs (scripts/train/benchmarking/README.md:
39.79% on H100 80GB, 59.57% on A100 80GB; FSDP full sharding, not DeepSpeed ZeRO-3, and another model code).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from hf_ptjf.modeling import build_config, build_meta_model, count_parameters, is_causal  # noqa: E402
from hf_ptjf.recipe import load_recipe  # noqa: E402

PEAK_BF16 = {"H100 80GB (SXM)": 989e12, "A100 80GB": 312e12}  # dense bf16 FLOP/s, as llm-foundry counts them
MFU = {"H100 80GB (SXM)": 0.3979, "A100 80GB": 0.5957}  # llm-foundry, 13B, seq 2048, 8 GPUs, bf16


def formula_flops(config, b: int, source: int, target: int) -> int:
    """Training FLOPs (forward + backward = 3 x forward) of one micro-batch, llm-foundry's way: 2 per parameter per
    token for every matmul weight (embedding lookups are free, the LM head is not), plus 2 x 2 x width x n x m per
    attention (scores and mixing) for n queries over m keys. Decoder-only: ``source`` tokens per row."""
    model = build_meta_model(config)
    d_attn = getattr(config, "num_heads", None) and config.num_heads * config.d_kv
    embed = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}

    def weights(prefix: str, cross_kv: bool | None = None) -> int:
        """Matmul weights under ``prefix``; ``cross_kv``: only (True) / none of (False) the cross-attention keys and
        values, which project the encoder's tokens, not the decoder's."""
        return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix) and id(p) not in embed
                   and p.dim() > 1 and (cross_kv is None or cross_kv == bool(re.search(r"EncDecAttention\.[kv]\.", n))))

    if is_causal(config):
        d = config.num_attention_heads * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        head = config.hidden_size * config.vocab_size  # (counted once, tied to the embedding or not)
        forward = 2 * b * source * (weights("model.") + head) + 4 * b * config.num_hidden_layers * d * source**2
    else:
        head = config.d_model * config.vocab_size
        forward = 2 * b * (source * (weights("encoder.") + weights("decoder.", cross_kv=True))
                           + target * (weights("decoder.", cross_kv=False) + head))
        forward += 4 * b * config.num_layers * d_attn * source**2  # encoder self-attention
        forward += 4 * b * config.num_decoder_layers * d_attn * (target**2 + target * source)  # decoder self + cross
    return 3 * forward


def _batch(config, b: int, source: int, target: int, device: str) -> dict:
    vocab = config.vocab_size
    with torch.device(device):
        if is_causal(config):
            ids = torch.randint(0, vocab, (b, source))
            return {"input_ids": ids, "labels": ids}
        return {"input_ids": torch.randint(0, vocab, (b, source)), "labels": torch.randint(0, vocab, (b, target))}


def counted_flops(config, b: int, source: int, target: int) -> int:
    """FLOPs of one real forward + backward counted by ``FlopCounterMode`` (a model small enough to build)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    model = (AutoModelForCausalLM if is_causal(config) else AutoModelForSeq2SeqLM).from_config(config)
    counter = FlopCounterMode(display=False)
    with counter:
        model(**_batch(config, b, source, target, "cpu")).loss.backward()
    return counter.get_total_flops()


def recipe_flops(recipe: str, overrides: list[str] | None = None) -> dict:
    """A recipe's model, micro-batch and the formula's FLOPs for one micro-batch."""
    cfg = load_recipe(recipe, overrides or [])
    config = build_config(cfg.model, vocab_size=cfg.model.vocab_size or cfg.tokenizer.vocab_size)
    training = cfg.training_for(cfg.stages[0])
    b = int(training["per_device_train_batch_size"])
    source, target = cfg.data.max_source_length, cfg.data.max_target_length
    tokens = b * source if is_causal(config) else b * (source + target)
    return {"recipe": recipe, "config": config, "parameters": count_parameters(config), "micro_batch": b,
            "source": source, "target": target, "tokens": tokens, "flops": formula_flops(config, b, source, target),
            "grad_accum": int(training.get("gradient_accumulation_steps", 1))}


def check_formula() -> None:
    """The formula against FlopCounterMode on small real models of both families (printed)."""
    from hf_ptjf.modeling import ModelArguments

    for args, source, target in ((ModelArguments(family="llama", num_layers=2, d_model=256, d_ff=688, num_heads=4), 128, 0),
                                 (ModelArguments(num_layers=2, d_model=256, d_ff=512, num_heads=4,
                                                 feed_forward_proj="gated-gelu", tie_word_embeddings=False), 96, 32)):
        config = build_config(args, vocab_size=2000)
        got, want = counted_flops(config, 2, source, target), formula_flops(config, 2, source, target)
        print(f"check {args.family}: FlopCounterMode {got / 1e9:.2f} GFLOP, formula {want / 1e9:.2f} GFLOP "
              f"({100 * (want - got) / got:+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    check_formula()
    for recipe in args.recipes:
        m = recipe_flops(recipe)
        step = m["flops"] * m["grad_accum"] * args.gpus
        per_token = m["flops"] / m["tokens"]
        print(f"{Path(recipe).name}: {m['parameters'] / 1e9:.2f}B parameters; micro-batch {m['micro_batch']} "
              f"({m['tokens']:,} tokens): {m['flops'] / 1e12:,.1f} TFLOP (fwd+bwd, the formula checked above), {per_token / 1e9:.1f} "
              f"GFLOP/token = {per_token / m['parameters']:.1f} x parameters")
        print(f"  one step = {m['grad_accum']} micro-batches x {args.gpus} GPUs = {step / 1e15:,.1f} PFLOP")
        for gpu, peak in PEAK_BF16.items():
            seconds = step / (args.gpus * peak * MFU[gpu])
            print(f"  {args.gpus} x {gpu} at MFU {MFU[gpu]:.1%} (llm-foundry 13B): {seconds:.1f} s per step "
                  "(extrapolated)")


if __name__ == "__main__":
    main()
