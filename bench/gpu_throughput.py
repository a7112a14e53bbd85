"""Throughput (tokens/s) and MFU of a ~1B-parameter T5 under DeepSpeed ZeRO-3 bf16, plus one timed stage boundary.

Run on one GPU (either line; the first is the project's launch path, the second needs no launcher)::

    accelerate launch --config_file accelerate_configs/gpu1_zero3_bf16.yaml bench/gpu_throughput.py
    python bench/gpu_throughput.py --output-json runs/bench.json

How it measures
  * The DeepSpeed engine is built directly (``deepspeed.initialize``) from ``accelerate_configs/ds_zero3_bf16.json``
    (the JSON behind ``gpu1_zero3_bf16.yaml``) with its ``"auto"`` values filled here as the HF Trainer would
    (:func:`fill_auto`), so the timed loop has no Trainer / dataloader overhead. The model comes from
    ``hf_ptjf.modeling.build_model`` while an ``HfDeepSpeedConfig`` is alive, i.e. under ``deepspeed.zero.Init``
    exactly as in a Trainer run. Batches are synthetic random token ids (fixed shapes, no padding).
  * tokens/s counts source + target tokens of all ranks per second of optimizer steps (after warm-up).
  * MFU = model FLOPs/s per GPU / peak bf16 matmul FLOPs/s of *this* device, measured first in the same process
    with a large ``torch.matmul`` (:func:`measure_matmul_peak`); measured peak is below the datasheet number,
    so this MFU is higher than one against the datasheet. Model FLOPs are in :func:`t5_train_flops`.
  * Stage boundary (PTJF: pre-training -> joint fine-tuning): consolidate the ZeRO-3 shards into one bf16
    state dict and ``save_pretrained`` it (what the HF Trainer does with ``stage3_gather_16bit_weights_on_model_save``),
    drop the engine, reload the checkpoint with ``build_model(name_or_path=...)`` under zero.Init and build a new
    engine with a fresh optimizer; each part is timed and the loss on a fixed batch must match across the boundary.

``--quick`` uses a tiny model for smoke tests (``tests/test_gpu.py``); with ``DS_ACCELERATOR=cpu`` it even runs on CPU.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from hf_ptjf.modeling import ModelArguments, build_config, build_model, count_parameters  # noqa: E402

DEFAULT_DS_CONFIG = REPO / "accelerate_configs" / "ds_zero3_bf16.json"
# ~1.04B parameters: mT5-style (gated-GELU, untied head) but with T5's 32k vocabulary so the compute is not
# dominated by a 250k-row embedding that contributes almost no FLOPs.
BENCH_MODEL = dict(d_model=2048, d_ff=5120, num_heads=32, d_kv=64, num_layers=8, vocab_size=32128,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0)
QUICK_MODEL = dict(d_model=64, d_ff=128, num_heads=4, d_kv=16, num_layers=2, vocab_size=256,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0)


# ----------------------------------------------------------------------------------------------- pure helpers
def t5_forward_flops(config: Any, source_length: int, target_length: int) -> int:
    """Matmul FLOPs of one forward pass of one example through a T5 (2 FLOPs per multiply-add).

    With h=d_model, i=num_heads*d_kv, f=d_ff, g=3 if gated else 2, V=vocab, S/T source/target lengths,
    L_e/L_d encoder/decoder layers::

        2 * [ L_e*S*(4hi + g*h*f)                      encoder q,k,v,o + FF weights, on S tokens
            + L_d*T*(6hi + g*h*f) + L_d*S*2hi          decoder self-attn + cross q,o + FF on T; cross k,v on S
            + T*h*V ]                                  LM head
        + 4i * (L_e*S^2 + L_d*T^2 + L_d*T*S)           attention scores QK^T and probs@V (no causal discount:
                                                       the kernels compute the full masked matrix)

    Embedding lookups, norms, softmax and the loss are ignored (<1%).
    """
    h, f, vocab = config.d_model, config.d_ff, config.vocab_size
    i = config.num_heads * config.d_kv
    g = 3 if getattr(config, "is_gated_act", False) else 2
    s, t, le, ld = int(source_length), int(target_length), config.num_layers, config.num_decoder_layers
    weights = le * s * (4 * h * i + g * h * f) + ld * t * (6 * h * i + g * h * f) + ld * s * 2 * h * i + t * h * vocab
    scores = 4 * i * (le * s * s + ld * t * t + ld * t * s)
    return 2 * weights + scores


def t5_train_flops(config: Any, batch_size: int, source_length: int, target_length: int) -> int:
    """Model FLOPs of one training step (forward + backward = 3 x forward) for ``batch_size`` examples.

    Activation recomputation is not counted (model FLOPs, not hardware FLOPs). For comparison, the usual
    ``6 * N * tokens`` rule applied per stack is the weight part of this: ``6 * (N_enc*S + N_dec*T)``.
    """
    return 3 * batch_size * t5_forward_flops(config, source_length, target_length)


def mfu(model_flops_per_s: float, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation in [0, 1] (per device: pass per-GPU FLOPs/s)."""
    if peak_flops_per_s <= 0:
        raise ValueError(f"peak_flops_per_s must be positive, got {peak_flops_per_s!r}.")
    return model_flops_per_s / peak_flops_per_s


def fill_auto(ds_config: dict, *, micro_batch_size: int, world_size: int, hidden_size: int,
              gradient_accumulation_steps: int = 1, gradient_clipping: float = 1.0,
              learning_rate: float = 1e-4, weight_decay: float = 0.0) -> dict:
    """Copy of a DeepSpeed config with the ``"auto"`` values filled like HF's ``HfTrainerDeepSpeedConfig``
    (TrainingArguments defaults for the optimizer's betas / eps)."""
    cfg = copy.deepcopy(ds_config)
    cfg.pop("_comment", None)
    opt = cfg.get("optimizer", {}).get("params", {})
    for key, value in {"lr": learning_rate, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": weight_decay}.items():
        if opt.get(key) == "auto":
            opt[key] = value
    top = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "train_batch_size": micro_batch_size * gradient_accumulation_steps * world_size,
        "gradient_clipping": gradient_clipping,
    }
    for key, value in top.items():
        if cfg.get(key, "auto") == "auto":
            cfg[key] = value
    zero = cfg.get("zero_optimization", {})
    sized = {  # transformers.integrations.deepspeed.HfTrainerDeepSpeedConfig.trainer_config_finalize
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }
    for key, value in sized.items():
        if zero.get(key) == "auto":
            zero[key] = value
    leftover = [k for k, v in _walk(cfg) if v == "auto"]
    if leftover:
        raise ValueError(f"DeepSpeed config still has 'auto' values the bench cannot fill: {leftover}.")
    return cfg


def _walk(d: Any, prefix: str = ""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _walk(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip("."), d


# ---------------------------------------------------------------------------------------------- device helpers
def _sync() -> None:
    from deepspeed.accelerator import get_accelerator

    get_accelerator().synchronize()


def measure_matmul_peak(device: torch.device, n: int = 8192, iters: int = 50,
                        dtype: torch.dtype = torch.bfloat16) -> float:
    """Achieved FLOPs/s of a large square ``torch.matmul`` (the MFU denominator)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b)
    _sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        torch.matmul(a, b)
    _sync()
    return 2 * n**3 * iters / (time.perf_counter() - t0)


def _init_distributed() -> None:
    import deepspeed

    # Single-process runs without a launcher: give torch.distributed a one-rank world.
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29533"}.items():
        os.environ.setdefault(key, value)
    deepspeed.init_distributed()


def _engine(model_args: ModelArguments, ds_config: dict, lr: float):
    """Model under zero.Init (HfDeepSpeedConfig alive) + fresh AdamW -> DeepSpeed engine."""
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    keep_alive = HfDeepSpeedConfig(ds_config)  # transformers keeps a weakref; zero.Init only while it lives
    model = build_model(model_args)
    # The offload JSON declares its own (CPU) Adam; otherwise a fresh torch AdamW, as the HF Trainer would make.
    optimizer = None if "optimizer" in ds_config else torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, model_parameters=model.parameters(),
                                      config=ds_config)
    engine._bench_ds_ref = keep_alive
    return engine


def _batch(vocab: int, b: int, s: int, t: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(2, vocab, (b, s), generator=g).to(device),
        "labels": torch.randint(2, vocab, (b, t), generator=g).to(device),
    }


@torch.no_grad()
def _eval_loss(engine, batch) -> float:
    engine.eval()
    loss = engine(**batch).loss.float().item()
    engine.train()
    return loss


def run(ns: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the results dict (printed as JSON on rank 0 by :func:`main`)."""
    import deepspeed.comm as dist
    from deepspeed.accelerator import get_accelerator

    _init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    get_accelerator().set_device(local_rank)
    device = torch.device(get_accelerator().device_name(local_rank))

    peak = measure_matmul_peak(device, n=ns.matmul_size, iters=ns.matmul_iters)
    sizes = dict(QUICK_MODEL if ns.quick else BENCH_MODEL)
    model_args = ModelArguments(**sizes)
    config = build_config(model_args)
    ds_config = fill_auto(json.loads(Path(ns.ds_config).read_text()), micro_batch_size=ns.micro_batch_size,
                          world_size=world, hidden_size=config.d_model, learning_rate=ns.lr)

    b, s, t = ns.micro_batch_size, ns.source_length, ns.target_length
    engine = _engine(model_args, ds_config, ns.lr)
    steps_flops = t5_train_flops(engine.module.config, b, s, t)
    batches = [_batch(config.vocab_size, b, s, t, device, seed=rank * 1000 + k) for k in range(4)]

    def step(k: int) -> None:
        loss = engine(**batches[k % len(batches)]).loss
        engine.backward(loss)
        engine.step()

    for k in range(ns.warmup):
        step(k)
    _sync()
    t0 = time.perf_counter()
    for k in range(ns.steps):
        step(k)
    _sync()
    elapsed = time.perf_counter() - t0
    step_s = elapsed / ns.steps
    per_gpu_flops = steps_flops / step_s

    # ---- stage boundary: consolidated save -> reload with a fresh optimizer
    probe = _batch(config.vocab_size, b, s, t, device, seed=12345)
    loss_before = _eval_loss(engine, probe)
    out_dir = Path(ns.output_dir or tempfile.mkdtemp(prefix="ptjf_bench_"))
    _sync(); t0 = time.perf_counter()
    # Same call accelerate's get_state_dict makes for ZeRO-3; all ranks must join, rank 0 gets the tensors.
    state = engine._zero3_consolidated_16bit_state_dict()
    if rank == 0:
        engine.module.save_pretrained(out_dir, state_dict=state)
    dist.barrier(); save_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    engine.destroy()
    del engine, state
    gc.collect(); get_accelerator().empty_cache()
    engine = _engine(ModelArguments(name_or_path=str(out_dir)), ds_config, ns.lr)
    _sync(); reload_s = time.perf_counter() - t0
    loss_after = _eval_loss(engine, probe)
    t0 = time.perf_counter()
    step(0)
    _sync(); first_step_s = time.perf_counter() - t0

    return {
        "device": get_accelerator().device_name() + (f" {torch.cuda.get_device_name(device)}"
                                                     if torch.cuda.is_available() else ""),
        "world_size": world,
        "params": count_parameters(engine.module),
        "micro_batch_size": b, "source_length": s, "target_length": t,
        "step_s": step_s,
        "tokens_per_s": world * b * (s + t) / step_s,
        "target_tokens_per_s": world * b * t / step_s,
        "model_tflops_per_gpu": per_gpu_flops / 1e12,
        "matmul_peak_tflops": peak / 1e12,
        "mfu": mfu(per_gpu_flops, peak),
        "peak_mem_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if torch.cuda.is_available() else None,
        "boundary_save_s": save_s,
        "boundary_reload_s": reload_s,
        "boundary_first_step_s": first_step_s,
        "loss_before_boundary": loss_before,
        "loss_after_boundary": loss_after,
        "checkpoint": str(out_dir),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model and few steps (smoke test)")
    p.add_argument("--ds-config", default=str(DEFAULT_DS_CONFIG), help="DeepSpeed JSON ('auto' values filled)")
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--source-length", type=int, default=512)
    p.add_argument("--target-length", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--matmul-size", type=int, default=8192, help="n of the n x n bf16 matmul peak probe")
    p.add_argument("--matmul-iters", type=int, default=50)
    p.add_argument("--output-dir", help="where the stage-boundary checkpoint goes (default: a temp dir)")
    p.add_argument("--output-json", help="also write the results here")
    ns = p.parse_args(argv)
    if ns.quick:  # smoke-test sizes, whatever else was asked
        ns.micro_batch_size, ns.source_length, ns.target_length = 2, 32, 16
        ns.steps, ns.warmup, ns.matmul_size, ns.matmul_iters = 3, 1, 512, 5
    return ns


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: run and print one JSON line on rank 0."""
    ns = _parse(argv)
    results = run(ns)
    if int(os.environ.get("RANK", "0")) == 0:
        line = json.dumps(results)
        print("RESULT " + line, flush=True)
        if results.get("checkpoint") and results["loss_before_boundary"] != results["loss_after_boundary"]:
            print("WARNING: loss changed across the stage boundary", file=sys.stderr)
        if ns.output_json:
            Path(ns.output_json).parent.mkdir(parents=True, exist_ok=True)
            Path(ns.output_json).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
