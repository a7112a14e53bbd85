"""The LM workload's recipes: mT5-XXL (12.9B) parses with the paper's settings and plans on 8 GPUs; the CPU LM
recipe runs end to end (tiny) and reports a validation loss per language."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hf_ptjf.modeling import ModelArguments, build_config, count_parameters
from hf_ptjf.cli.plan import main as plan_main
from hf_ptjf.memory import plan_memory
from hf_ptjf.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "configs"
ACCELERATE = REPO / "accelerate_configs"
MT5 = CONFIGS / "mt5_xxl_13b.yaml"


def test_mt5_xxl_recipe_has_the_papers_lm_settings():
    cfg = load_recipe(MT5)
    pretrain, joint = cfg.stages
    assert (cfg.method, pretrain.name, joint.name) == ("ptjf", "pretrain", "joint")
    assert pretrain.mixture.tasks == ["lm-en"] and joint.mixture.tasks is None  # then every language
    assert (joint.mixture.strategy, joint.mixture.tau) == ("temperature", 3.33)
    for stage in cfg.stages:
        assert stage.optimizer == "adafactor"
        assert stage.optimizer_args == {"beta1": 0.9, "factored": False, "multiply_by_parameter_scale": True}
    assert (pretrain.lr_scheduler, pretrain.training["lr_schedule_steps"]) == ("constant_then_rsqrt", 10_000)
    assert (joint.lr_scheduler, joint.training["lr_schedule_steps"]) == ("warmup_then_rsqrt", 10_000)
    t = cfg.training
    assert t["learning_rate"] == 0.01 and t["bf16"] is True and t["activation_checkpointing"] is True
    assert t["per_device_train_batch_size"] * t["gradient_accumulation_steps"] * 8 == 1024  # mT5's batch on 8 GPUs
    assert {s.type for s in cfg.tasks} == {"lm"} and cfg.eval.bleu is False
    margs = ModelArguments.from_dict(cfg.model)
    assert (margs.vocab_size, margs.d_model, margs.d_ff, margs.num_heads, margs.resolved_d_kv) == (250112, 4096, 10240, 64, 64)
    assert (margs.num_layers, margs.num_decoder_layers, margs.feed_forward_proj) == (24, 24, "gated-gelu")
    assert not margs.tie_word_embeddings
    # 12.9B parameters, counted on the meta device (modeling) and by the planner
    assert count_parameters(build_config(margs)) == pytest.approx(12.9e9, rel=0.01)
    assert plan_memory(margs, num_gpus_per_node=8).total_params == count_parameters(build_config(margs))


def test_mt5_xxl_stage_training_arguments():
    """What the runner hands the Trainer for each stage: hf_ptjf's Adafactor options and the rsqrt schedules."""
    from hf_ptjf.runner import RecipeRunner

    cfg = load_recipe(MT5, ["bf16=false"])  # bf16 needs a GPU to be checked by TrainingArguments
    runner = RecipeRunner(cfg)
    first, second = (runner.training_arguments(i, s) for i, s in enumerate(cfg.stages))
    for args in (first, second):
        assert args.optim == "adafactor" and args.learning_rate == 0.01 and args.activation_checkpointing
        assert args.optimizer_kwargs() == {"beta1": 0.9, "factored": False, "multiply_by_parameter_scale": True}
    assert (first.lr_scheduler_type, first.lr_schedule_pivot(first.max_steps)) == ("constant_then_rsqrt", 10_000)
    assert (second.lr_scheduler_type, second.lr_schedule_pivot(second.max_steps)) == ("warmup_then_rsqrt", 10_000)
    assert first.max_steps == second.max_steps == 250_000


def test_planner_on_the_mt5_recipe(capsys):
    common = ["--micro-batch-size", "4", "--source-length", "1024", "--target-length", "229",
              "--gradient-checkpointing", "--strict"]
    assert plan_main([str(MT5), "--accelerate-config", str(ACCELERATE / "gpu8_zero3_bf16.yaml"), *common]) == 0
    out = capsys.readouterr().out
    assert "12.921B" in out and "8 GPU(s)" in out and "-> fits" in out
    offload = ACCELERATE / "gpu8_zero3_offload_clientopt_bf16.yaml"
    assert plan_main([str(MT5), "--accelerate-config", str(offload), "--gpu-memory-gib", "40", *common]) == 0
    out = capsys.readouterr().out
    assert "<- selected" in out.split("offload optimizer ")[1].splitlines()[0] and "-> fits" in out


def test_lm_recipes_differ_only_in_method():
    cfgs = {m: load_recipe(CONFIGS / f"lm_{m}_cpu.yaml") for m in ("ptjf", "scalarization", "restart")}
    assert [len(c.stages) for c in cfgs.values()] == [2, 1, 2]
    for c in cfgs.values():
        assert (c.tasks, c.model, c.training) == (cfgs["ptjf"].tasks, cfgs["ptjf"].model, cfgs["ptjf"].training)
        assert c.stages[0].lr_scheduler == "constant_then_rsqrt" and c.stages[-1].optimizer == "adafactor"
        assert sum(s.max_steps for s in c.stages) == 300 and c.eval.bleu is False
    assert cfgs["ptjf"].stages[0].mixture.tasks == ["lm-en"]
    assert [s.lr_scheduler for s in cfgs["restart"].stages] == ["constant_then_rsqrt", "warmup_then_rsqrt"]


def tiny_lm_overrides(tmp_path) -> list[str]:
    """lm_ptjf_cpu.yaml at test size: 4 steps, small data and vocabulary (the model sizes are the caller's)."""
    return [
        f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}",
        "method_args.total_steps=4", "method_args.first_stage_steps=2", "logging_steps=1", "eval_steps=2",
        "tasks.lm-en.versions=[WEB]", "tasks.lm-en.train_size=1500", "tasks.lm-hi.train_size=300",
        "data.num_dev=40", "data.num_test=8", "eval.loss_examples=16", "tokenizer.vocab_size=1000",
        "tokenizer.max_sentences=4000", "per_device_train_batch_size=8", "per_device_eval_batch_size=16", "report_to=[]",
    ]


@pytest.mark.slow
def test_lm_cpu_recipe_end_to_end_reports_a_loss_per_language(tmp_path):
    from hf_ptjf.runner import run_recipe

    overrides = [*tiny_lm_overrides(tmp_path), "model.d_model=32", "model.d_ff=64", "model.num_heads=2",
                 "model.num_layers=1"]
    results = run_recipe(load_recipe(CONFIGS / "lm_ptjf_cpu.yaml", overrides))
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["complete"] and on_disk["total_steps"] == 4 and on_disk["tasks"] == results["tasks"]
    names = ["lm-en", "lm-hi", "lm-sw", "lm-tl"]
    assert list(results["tasks"]) == names
    for name in names:
        task = results["tasks"][name]
        assert math.isfinite(task["final_loss"]) and task["bleu"] is None
        evals = [h[f"eval_{name}_loss"] for h in results["history"] if f"eval_{name}_loss" in h]
        # per stage: the in-loop evaluation at step 2 is the stage's final one (the runner reuses it instead of
        # evaluating the same weights twice; the span-corruption noise of evaluation is fixed)
        assert len(evals) == 2 and evals[1] == task["final_loss"]
    pretrain, joint = results["stages"]
    assert pretrain["rates"] == {"lm-en": 1.0} and set(joint["rates"]) == set(names)
    assert joint["rates"]["lm-tl"] > 0.05  # tau 3.33 up-samples the smallest language
    report = (tmp_path / "run" / "report.md").read_text()
    assert all(f"| {n} |" in report for n in names)


LLAMA = CONFIGS / "llama2_13b_lm.yaml"


def test_llama2_13b_recipe_is_a_13b_decoder_only_ptjf_run():
    cfg = load_recipe(LLAMA)
    margs = ModelArguments.from_dict(cfg.model)
    assert margs.causal and margs.family == "llama" and not margs.tie_word_embeddings
    config = build_config(margs)
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (5120, 13824, 40)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (40, 40, 32000)
    assert count_parameters(config) == 13_015_864_320  # Llama-2-13B, counted on the meta device
    pretrain, joint = cfg.stages
    assert pretrain.mixture.tasks == ["lm-en"] and (joint.mixture.strategy, joint.mixture.tau) == ("temperature", 3.33)
    t = cfg.training
    assert t["bf16"] and t["activation_checkpointing"]
    assert t["per_device_train_batch_size"] * t["gradient_accumulation_steps"] * 8 * cfg.data.max_source_length == 2**22
    assert "--launch accelerate_configs/gpu8_zero3_bf16.yaml" in LLAMA.read_text()  # the 8-GPU launch line


def test_planner_on_the_llama_recipe(capsys):
    common = ["--micro-batch-size", "4", "--source-length", "4096", "--target-length", "0", "--gradient-checkpointing"]
    assert plan_main([str(LLAMA), "--accelerate-config", str(ACCELERATE / "gpu8_zero3_bf16.yaml"), *common,
                      "--strict"]) == 0
    out = capsys.readouterr().out
    assert "13.016B" in out and "8 GPU(s)" in out and "-> fits" in out
    # the decoder-only activation estimate: linear in the micro-batch, far smaller with checkpointing
    config = build_config(ModelArguments.from_dict(load_recipe(LLAMA).model))
    plan = plan_memory(config, 8, micro_batch_size=4, source_length=4096, target_length=0)
    checkpointed = plan_memory(config, 8, micro_batch_size=4, source_length=4096, target_length=0,
                               gradient_checkpointing=True)
    assert checkpointed.activation_bytes < plan.activation_bytes / 10
    assert plan_memory(config, 8, micro_batch_size=8, source_length=4096, target_length=0).activation_bytes == \
        2 * plan.activation_bytes
    assert not plan.fits  # 4 rows of 4,096 tokens without checkpointing do not fit in 80 GiB


@pytest.mark.slow
def test_lm_cpu_recipe_runs_with_a_decoder_only_model(tmp_path):
    """The same LM recipe with `model.family: llama`: next-token prediction on rows packed per language."""
    from hf_ptjf.runner import run_recipe

    overrides = [*tiny_lm_overrides(tmp_path), "model={family: llama, num_layers: 1, d_model: 32, d_ff: 64, "
                 "num_heads: 2, max_position_embeddings: 64}"]
    results = run_recipe(load_recipe(CONFIGS / "lm_ptjf_cpu.yaml", overrides))
    assert results["complete"] and list(results["tasks"]) == ["lm-en", "lm-hi", "lm-sw", "lm-tl"]
    for name, task in results["tasks"].items():
        assert math.isfinite(task["final_loss"]) and task["bleu"] is None
        # every row is packed to the 64-token length: 63 scored tokens a row (a map batch's tail row is shorter)
        assert 0.9 * 63 * task["examples_seen"] <= task["target_tokens_seen"] <= 63 * task["examples_seen"]
    config = json.loads((tmp_path / "run" / "stages" / "1-joint" / "final" / "config.json").read_text())
    assert config["model_type"] == "llama"
