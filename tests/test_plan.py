"""hf_ptjf.memory (and `hf-ptjf plan`): counts on the meta device, DeepSpeed's estimator, fit warnings, accelerate config parsing, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs, model_to_params

from hf_ptjf.modeling import ModelArguments, build_config, build_model
from hf_ptjf.cli.plan import load_model_args, main
from hf_ptjf.memory import (
    GIB,
    activation_bytes,
    format_plan,
    model_param_counts,
    plan_memory,
    read_accelerate_config,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "accelerate_configs"
MT5_XXL = dict(d_model=4096, d_ff=10240, feed_forward_proj="gated-gelu", num_heads=64, d_kv=64, num_layers=24,
               vocab_size=250112, tie_word_embeddings=False)


def test_mt5_xxl_plan_counts():
    plan = plan_memory(ModelArguments(**MT5_XXL), num_gpus_per_node=8)
    assert plan.total_params == pytest.approx(12.9e9, rel=0.01)
    assert plan.largest_layer_params == 250112 * 4096  # the embedding (and the untied head)


@pytest.mark.parametrize("gpus, nodes", [(1, 1), (8, 1), (8, 4)])
def test_numbers_equal_deepspeed_estimator(gpus, nodes):
    plan = plan_memory(ModelArguments(**MT5_XXL), gpus, nodes)
    assert len(plan.estimates) == 3
    for est in plan.estimates:
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            total_params=plan.total_params, largest_layer_params=plan.largest_layer_params,
            num_gpus_per_node=gpus, num_nodes=nodes, cpu_offload=est.offload_optimizer,
            cpu_offload_params=est.offload_param, zero_init=True, additional_buffer_factor=1.5)
        assert (est.cpu_bytes, est.gpu_bytes) == (cpu, gpu)


def test_meta_counts_equal_deepspeed_model_to_params_on_a_real_model():
    args = ModelArguments(num_layers=2, d_model=32, d_ff=64, num_heads=4, vocab_size=100, tie_word_embeddings=False)
    real = build_model(args)
    assert model_param_counts(real) == model_to_params(real)
    plan = plan_memory(args)
    assert (plan.total_params, plan.largest_layer_params) == model_to_params(real)


def test_warns_when_it_does_not_fit():
    plan = plan_memory(ModelArguments(**MT5_XXL), num_gpus_per_node=1, gpu_memory_gib=16)
    assert not plan.fits
    assert any("DOES NOT FIT" in w for w in plan.warnings)
    assert "DOES NOT FIT" in format_plan(plan)
    ok = plan_memory(ModelArguments(**MT5_XXL), num_gpus_per_node=8, gpu_memory_gib=80)
    assert ok.fits and not ok.warnings
    offload = plan_memory(ModelArguments(**MT5_XXL), 8, 1, 40, offload_optimizer=True)
    assert offload.selected.offload_optimizer and offload.selected.gpu_bytes < ok.selected.gpu_bytes


def test_activations_count_against_the_gpu():
    args = ModelArguments(**MT5_XXL)
    big = plan_memory(args, 8, 1, 40, micro_batch_size=64, source_length=1024, target_length=1024)
    assert big.activation_bytes > 40 * GIB and not big.fits


def test_activation_estimate_properties():
    cfg = build_config(ModelArguments(**MT5_XXL))
    one = activation_bytes(cfg, 1, 512, 128)
    assert activation_bytes(cfg, 4, 512, 128) == 4 * one
    assert activation_bytes(cfg, 1, 512, 128, gradient_checkpointing=True) < one / 4
    assert activation_bytes(cfg, 1, 512, 128, attn_implementation="eager") > one
    with pytest.raises(ValueError, match="micro_batch_size"):
        activation_bytes(cfg, 0, 512, 128)


def test_plan_needs_a_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        plan_memory(ModelArguments(d_model=64, num_heads=4))


def test_read_accelerate_configs():
    off = read_accelerate_config(CONFIGS / "gpu8_zero3_offload_bf16.yaml")
    assert (off.num_gpus_per_node, off.num_machines, off.zero_stage) == (8, 1, 3)
    assert off.offload_optimizer and not off.offload_param
    plain = read_accelerate_config(CONFIGS / "gpu8_zero3_bf16.yaml")
    assert plain.num_gpus_per_node == 8 and not plain.offload_optimizer
    assert read_accelerate_config(CONFIGS / "gpu1_zero3_bf16.yaml").num_gpus_per_node == 1
    cpu = read_accelerate_config(CONFIGS / "cpu_zero3_2proc.yaml")
    assert (cpu.num_processes, cpu.zero_stage, cpu.distributed_type) == (2, 3, "DEEPSPEED")
    assert read_accelerate_config(CONFIGS / "cpu_single.yaml").num_processes == 1


def test_config_files_are_documented_and_consistent():
    yamls = sorted(CONFIGS.glob("*.yaml"))
    assert {p.stem for p in yamls} >= {"cpu_single", "cpu_ddp2", "cpu_zero3_2proc", "gpu1_zero3_bf16",
                                        "gpu8_zero3_bf16", "gpu8_zero3_offload_bf16"}
    for p in yamls:
        text = p.read_text()
        assert text.startswith("# ") and "accelerate launch --config_file accelerate_configs/" + p.name in text
        yaml.safe_load(text)
    for p in CONFIGS.glob("*.json"):
        ds = json.loads(p.read_text())
        zero = ds["zero_optimization"]
        assert ds["train_batch_size"] == "auto" and ds["gradient_accumulation_steps"] == "auto"
        if p.name == "ds_zero3_cpu_ram_fp32.json":  # (issue 27) RAM-sized buckets; the runner writes the shards
            assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is False
            assert ds["bf16"]["enabled"] is False and zero["reduce_bucket_size"] * 4 <= 2**27
            continue
        assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
        if "cpu" in p.name:
            assert ds["bf16"]["enabled"] is False and not any("bucket" in k for k in zero)
        else:
            assert ds["bf16"]["enabled"] is True


def test_cli(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": {k: v for k, v in MT5_XXL.items() if k != "vocab_size"},
                                      "training": {"ignored": True}}))
    rc = main([str(recipe), "--accelerate-config", str(CONFIGS / "gpu8_zero3_offload_bf16.yaml"),
               "--vocab-size", "250112", "--micro-batch-size", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "12.921B" in out and "8 GPU(s)" in out and "offload optimizer " in out
    assert "<- selected" in out.split("offload optimizer ")[1].splitlines()[0]
    rc = main([str(recipe), "--accelerate-config", str(CONFIGS / "gpu1_zero3_bf16.yaml"), "--vocab-size",
               "250112", "--gpu-memory-gib", "16", "--strict"])
    assert rc == 1 and "DOES NOT FIT" in capsys.readouterr().out
    # bad input: one error line and exit 2, also with options between the recipe and its overrides
    assert main([str(recipe), "--strict", "model.num_layers=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--vocab-size" in err and "Traceback" not in err


def test_recipe_read_like_the_runner_reads_it(tmp_path, capsys):
    """`5e-2` is a float (YAML 1.1 would make it a string) and key=value overrides work as in recipes/run.py."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {num_layers: 1, d_model: 64, d_ff: 128, num_heads: 2, dropout_rate: 5e-2, vocab_size: 500}\n")
    margs = load_model_args(recipe, ["model.num_layers=3"])
    assert margs.dropout_rate == 0.05 and isinstance(margs.dropout_rate, float) and margs.num_layers == 3
    assert main([str(recipe)]) == 0
    one = capsys.readouterr().out
    assert main([str(recipe), "model.num_layers=3"]) == 0
    assert capsys.readouterr().out != one
