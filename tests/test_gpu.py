"""bench/gpu_throughput.py: FLOP formula (checked against torch's FLOP counter), config filling; GPU smoke run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hf_ptjf.modeling import ModelArguments, build_config, build_model

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_throughput", REPO / "bench" / "gpu_throughput.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("ffp, tied", [("gated-gelu", False), ("relu", True)])
def test_train_flops_match_torch_flop_counter(ffp, tied):
    args = ModelArguments(num_layers=2, num_decoder_layers=3, d_model=32, d_ff=48, num_heads=4, d_kv=6,
                          vocab_size=50, feed_forward_proj=ffp, tie_word_embeddings=tied, dropout_rate=0.0)
    model = build_model(args)
    model.set_attn_implementation("eager")  # score matmuls show up as plain bmm for the counter
    b, s, t = 3, 7, 5
    x, y = torch.randint(2, 50, (b, s)), torch.randint(2, 50, (b, t))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=x, labels=y).loss.backward()
    assert counter.get_total_flops() == bench.t5_train_flops(model.config, b, s, t)


def test_weight_flops_follow_6nd_per_stack():
    cfg = build_config(ModelArguments(**bench.BENCH_MODEL))
    s = t = 256
    h, i, f = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff
    n_enc = cfg.num_layers * (4 * h * i + 3 * h * f)
    n_dec = cfg.num_decoder_layers * (8 * h * i + 3 * h * f) + h * cfg.vocab_size
    attention = 3 * 4 * i * (cfg.num_layers * s * s + cfg.num_decoder_layers * (t * t + t * s))
    assert bench.t5_train_flops(cfg, 1, s, t) == 6 * (n_enc * s + n_dec * t) + attention


def test_bench_model_is_about_1b():
    from hf_ptjf.modeling import count_parameters

    assert 0.9e9 < count_parameters(build_config(ModelArguments(**bench.BENCH_MODEL))) < 1.2e9


def test_mfu_and_fill_auto():
    assert bench.mfu(50.0, 100.0) == 0.5
    with pytest.raises(ValueError, match="peak"):
        bench.mfu(1.0, 0.0)
    ds = json.loads((REPO / "accelerate_configs" / "ds_zero3_bf16.json").read_text())
    filled = bench.fill_auto(ds, micro_batch_size=4, world_size=8, hidden_size=2048, gradient_accumulation_steps=2)
    assert filled["train_batch_size"] == 64 and "_comment" not in filled
    assert filled["zero_optimization"]["reduce_bucket_size"] == 2048 * 2048
    assert ds["train_batch_size"] == "auto"  # input untouched


def test_all_deepspeed_jsons_parse_once_filled():
    from deepspeed.runtime.config import DeepSpeedConfig

    for path in (REPO / "accelerate_configs").glob("*.json"):
        cfg = bench.fill_auto(json.loads(path.read_text()), micro_batch_size=2, world_size=1, hidden_size=64)
        parsed = DeepSpeedConfig(cfg)
        assert parsed.zero_optimization_stage == 3
        # Every config gathers the 16-bit weights for Trainer.save_model, except the RAM-sized one: a gather holds
        # the whole model on rank 0, so under it the runner writes the shards itself (hf_ptjf.shards; test_plan).
        gathers = path.name != "ds_zero3_cpu_ram_fp32.json"
        assert parsed.zero_config.gather_16bit_weights_on_model_save is gathers, path.name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bench_runs_briefly_on_gpu(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_throughput.py"), "--quick", "--output-json", str(out),
         "--output-dir", str(tmp_path / "ckpt")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["tokens_per_s"] > 0 and 0 < res["mfu"] < 1
    assert res["loss_before_boundary"] == res["loss_after_boundary"]
    assert res["boundary_save_s"] > 0 and res["boundary_reload_s"] > 0
