"""LoRA stages (the `peft` library) through the same recipe, stages, Hub handoff and reports."""

from __future__ import annotations

import json

import pytest
import yaml

from hf_ptjf.recipe import load_recipe
from hf_ptjf.runner import run_recipe

from .fixtures.recipe_runs import error_line, run_cli, write_recipe
from .distributed import ROOT

TINY = ROOT / "tests" / "recipes" / "tiny_ptjf.yaml"
BASE = yaml.safe_load(TINY.read_text())


def lora_recipe(tmp_path, stages, **top) -> "Path":
    raw = {k: v for k, v in BASE.items() if k not in ("method", "method_args")}
    raw.update({"stages": stages, "hub": {"mode": "local"}, "output_dir": str(tmp_path / "run"), **top})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


PRETRAIN = {"name": "pretrain", "max_steps": 16, "mixture": {"tasks": ["en-fr"]}}
JOINT = {"name": "joint", "max_steps": 8, "mixture": {"strategy": "static", "weights": {"en-fr": 0.5, "en-ro": 0.5}}}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tokenizer):
    tmp = tmp_path_factory.mktemp("lora")
    stages = [PRETRAIN, {**JOINT, "peft": {"r": 4, "alpha": 8, "target_modules": ["q", "v"]}},
              {**JOINT, "name": "more", "max_steps": 4, "peft": {"r": 4, "alpha": 8, "target_modules": ["q", "v"],
                                                                 "continue_adapter": True, "merge": True}}]
    cfg = load_recipe(lora_recipe(tmp, stages), [f"tokenizer.path={tokenizer}", "eval.bleu=false"])
    return cfg, run_recipe(cfg), tmp


def test_a_lora_stage_trains_only_its_adapter_and_pushes_it(lora_run):
    cfg, results, _ = lora_run
    pre, joint, more = results["stages"]
    assert pre["trainable_parameters"] == pre["parameters"] and not pre["adapter"]
    assert 0 < joint["trainable_parameters"] < pre["parameters"] / 10 and joint["adapter"]
    assert joint["parameters"] == pre["parameters"] + joint["trainable_parameters"]  # base (frozen) + adapter
    files = set(json.loads(json.dumps(joint["files_sha256"])))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    adapter = json.loads((cfg_output(joint) / "adapter_config.json").read_text())
    # the base is pinned: stage 1's repo at the sha it was pushed at
    assert (adapter["base_model_name_or_path"], adapter["revision"]) == (pre["hub_repo"], pre["hub_sha"])
    card = (cfg_output(joint) / "README.md").read_text()  # the model card pins it too
    assert f"base_model: {pre['hub_repo']}" in card and f"base_model_revision: {pre['hub_sha']}" in card
    # continue_adapter keeps training the same adapter (fresh optimizer); merge: true saves full weights
    assert more["trainable_parameters"] == joint["trainable_parameters"] and not more["adapter"]
    assert "model.safetensors" in more["files_sha256"] and "adapter_config.json" not in more["files_sha256"]


def cfg_output(stage):
    from pathlib import Path

    return Path(stage["output_dir"])


def test_the_adapter_reloaded_at_its_sha_gives_the_in_memory_eval_loss(lora_run, tokenizer):
    """Base at its pinned sha + adapter at its sha, evaluated the way the stage was: the same loss (1e-6)."""
    from peft import PeftModel

    from hf_ptjf.data.prepare import prepare_recipe_data
    from hf_ptjf.hub import HubServer, use_endpoint
    from hf_ptjf.modeling import ModelArguments, build_model
    from hf_ptjf.runner import RecipeRunner
    from hf_ptjf.runner.evaluation import eval_sets
    from hf_ptjf.train import MixtureTrainer

    cfg, results, tmp = lora_run
    joint = results["stages"][1]
    with HubServer(tmp / "run" / "hub") as server, use_endpoint(server.url, cache_dir=tmp / "hf_cache"):
        adapter = json.loads((cfg_output(joint) / "adapter_config.json").read_text())
        base = build_model(ModelArguments(name_or_path=adapter["base_model_name_or_path"], revision=adapter["revision"]))
        model = PeftModel.from_pretrained(base, joint["hub_repo"], revision=joint["hub_sha"])
    data = prepare_recipe_data(cfg, tmp / "unused")
    args = RecipeRunner(cfg).training_arguments(1, cfg.stages[1])
    args.output_dir = str(tmp / "eval")
    trainer = MixtureTrainer(model=model, args=args, eval_dataset=eval_sets(data, "validation", cfg.eval.loss_examples),
                             data_collator=data.collator, processing_class=data.tokenizer)
    reloaded = trainer.evaluate()
    for task in ("en-fr", "en-ro"):
        assert reloaded[f"eval_{task}_loss"] == pytest.approx(joint["metrics"][f"eval_{task}_loss"], abs=1e-6)


# ------------------------------------------------------------------ bad input
def fails(args, *expected):
    code, err = run_cli([str(a) for a in args])
    assert code == 2, err
    line = error_line(err)
    for text in expected:
        assert text in line, (text, line)


@pytest.mark.parametrize("stages, expected", [
    ([PRETRAIN, {**JOINT, "peft": {"target_modules": ["query"]}}],
     ["`stages.1.peft.target_modules`", "['query'] match no module", "its linear layers are named", "q, v, wi, wo",
      "all-linear"]),
    ([{**PRETRAIN, "peft": {"r": 4}}],
     ["`stages.0.peft`", "random weights that are never saved", "initialise it from an earlier stage"]),
    ([PRETRAIN, {**JOINT, "peft": {"continue_adapter": True}}],
     ["`stages.1.peft.continue_adapter`", "`pretrain`, whose output is not an adapter"]),
    ([PRETRAIN, {**JOINT, "peft": {}}, {**JOINT, "name": "more", "peft": {}}],
     ["`stages.2.peft`", "new adapter on `joint`'s adapter merged into its base", "peft.merge: true",
      "continue_adapter: true"]),
    ([PRETRAIN, {**JOINT, "peft": {"r": 0}}], ["`stages.1.peft`", "r must be an integer >= 1"]),
    ([PRETRAIN, {**JOINT, "peft": {"rank": 4}}], ["unknown key `stages.1.peft.rank`", "Allowed: r, alpha"]),
])
def test_bad_lora_stages_are_one_line_before_the_first_step(tmp_path, tokenizer, stages, expected):
    fails([lora_recipe(tmp_path, stages), f"tokenizer.path={tokenizer}"], *expected)
    assert not list((tmp_path / "run").rglob("checkpoint-*"))


def test_an_adapter_whose_base_is_gone_is_refused(tmp_path, lora_run, tokenizer):
    import shutil

    _, results, _ = lora_run
    adapter = tmp_path / "adapter"
    shutil.copytree(results["stages"][1]["output_dir"], adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config.update(base_model_name_or_path=str(tmp_path / "deleted-base"), revision=None)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    stages = [{**JOINT, "name": "finetune", "init": {"path": str(adapter)}}]
    fails([lora_recipe(tmp_path, stages, hub={"mode": "none"}), f"tokenizer.path={tokenizer}"],
          "`stages.0.init.path`", "is a LoRA adapter whose base model", "deleted-base", "cannot be found", "peft.merge: true")


@pytest.mark.slow
def test_lora_under_deepspeed_is_refused_before_any_work(tmp_path, tokenizer):
    from .distributed import accelerate_launch

    recipe = lora_recipe(tmp_path, [PRETRAIN, {**JOINT, "peft": {"r": 4}}])
    proc = accelerate_launch("cpu_zero3_2proc.yaml", ROOT / "recipes" / "run.py", str(recipe),
                             f"tokenizer.path={tokenizer}", timeout=300, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: `stages.1.peft`: LoRA stages do not run under DeepSpeed")
    assert not list((tmp_path / "run").rglob("checkpoint-*"))


@pytest.mark.slow
def test_a_merged_adapter_is_the_base_of_the_next_stages_new_adapter(tmp_path, tokenizer):
    lora = {"r": 4, "alpha": 8, "target_modules": ["q", "v"]}
    stages = [PRETRAIN, {**JOINT, "peft": {**lora, "merge": True}}, {**JOINT, "name": "more", "max_steps": 4, "peft": lora}]
    results = run_recipe(load_recipe(lora_recipe(tmp_path, stages), [f"tokenizer.path={tokenizer}", "eval.bleu=false"]))
    _, joint, more = results["stages"]
    assert not joint["adapter"] and "model.safetensors" in joint["files_sha256"]  # merged weights
    assert more["adapter"] and more["trainable_parameters"] == joint["trainable_parameters"]  # a new adapter
    adapter = json.loads((cfg_output(more) / "adapter_config.json").read_text())
    assert (adapter["base_model_name_or_path"], adapter["revision"]) == (joint["hub_repo"], joint["hub_sha"])


def test_a_new_adapter_is_drawn_from_the_seed_not_from_the_rng_earlier_stages_left(tokenizer):
    """A rerun that skips finished stages reaches a LoRA stage with another global RNG state than the uninterrupted
    run: the adapter's initial weights must not depend on it."""
    import torch

    from hf_ptjf.modeling import ModelArguments
    from hf_ptjf.recipe import StageSpec
    from hf_ptjf.recipe.config import PeftSpec
    from hf_ptjf.runner.handoff import new_adapter

    from .toy import tiny_t5

    stage = StageSpec(name="joint", max_steps=4, peft=PeftSpec(r=4, alpha=8, target_modules=["q", "v"]))
    weights = []
    for leftover in (1, 2):
        base = tiny_t5()
        torch.manual_seed(leftover)  # what earlier stages left in the global RNG
        model = new_adapter(base, stage, 1, ModelArguments(name_or_path="base"), seed=0)
        weights.append({k: v.clone() for k, v in model.state_dict().items() if "lora_A" in k})
    assert weights[0] and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
