"""Recipe configs: method shorthands, overrides, and clear errors (no training here)."""

import re
from pathlib import Path

import pytest
import yaml

from hf_ptjf.recipe import RecipeError, apply_overrides, expand_method, load_recipe, parse_recipe

TINY = Path(__file__).parent / "recipes" / "tiny_ptjf.yaml"
QUICKSTART = Path(__file__).parents[1] / "recipes" / "configs" / "quickstart.yaml"


def raw(**changes):
    data = yaml.safe_load(TINY.read_text())
    data.update(changes)
    return data


def stages(method, **method_args):
    args = {"total_steps": 100, "first_stage_steps": 60, "high_resource": ["en-fr"],
            "mixture": {"strategy": "static", "weights": {"en-fr": 0.7, "en-ro": 0.3}}, **method_args}
    return parse_recipe(raw(method=method, method_args=args)).stages


def test_ptjf_pretrains_on_high_resource_then_joint_on_all():
    s = stages("ptjf")
    assert [(x.name, x.max_steps, x.init) for x in s] == [("pretrain", 60, "scratch"), ("joint", 40, "previous")]
    assert s[0].mixture.tasks == ["en-fr"] and s[0].mixture.strategy == "proportional"
    assert s[1].mixture.tasks is None and s[1].mixture.weight_list(["en-fr", "en-ro"]) == [0.7, 0.3]


def test_scalarization_is_one_stage_of_all_steps():
    s = stages("scalarization")
    assert [(x.name, x.max_steps, x.init) for x in s] == [("scalarization", 100, "scratch")]


def test_restart_repeats_the_same_mixture_after_a_reset():
    s = stages("restart")
    assert [(x.name, x.max_steps, x.init) for x in s] == [("scalarization", 60, "scratch"), ("restart", 40, "previous")]
    assert s[0].mixture == s[1].mixture


def test_transfer_finetunes_on_low_resource_only():
    s = stages("transfer")
    assert [(x.name, x.max_steps) for x in s] == [("pretrain", 60), ("transfer", 40)]
    assert s[1].mixture.tasks == ["en-ro"] and s[1].mixture.weights == {"en-ro": 0.3}


@pytest.mark.parametrize("method", ["ptjf", "restart", "transfer", "scalarization"])
def test_methods_compare_at_equal_total_steps(method):
    assert sum(x.max_steps for x in stages(method)) == 100


def test_pass_through_training_arguments_and_overrides():
    cfg = load_recipe(TINY, ["learning_rate=3e-4", "method_args.total_steps=50", "model.d_model=48"])
    assert cfg.training["learning_rate"] == 3e-4
    assert sum(s.max_steps for s in cfg.stages) == 50 and cfg.model.d_model == 48
    explicit = {"stages": [{"name": "a", "max_steps": 5}, {"name": "b", "max_steps": 5}]}
    assert apply_overrides(explicit, ["stages.b.max_steps=9", "stages.0.max_steps=7"])["stages"] == [
        {"name": "a", "max_steps": 7}, {"name": "b", "max_steps": 9}]


def test_mixture_training_argument_fields_pass_through_to_each_stage():
    from hf_ptjf.runner import RecipeRunner

    cfg = load_recipe(TINY, ["label_smoothing_in_eval=false", "label_smoothing_factor=0.1"])
    for i, stage in enumerate(cfg.stages):
        args = RecipeRunner(cfg).training_arguments(i, stage)
        assert args.label_smoothing_in_eval is False and args.label_smoothing_factor == 0.1


def test_shipped_configs_parse(tmp_path):
    from hf_ptjf.sweep import load_sweep

    paths = sorted((Path(__file__).parents[1] / "recipes" / "configs").glob("*.yaml"))
    assert paths
    for path in paths:
        if "recipe" in yaml.safe_load(path.read_text()):  # a sweep over a base recipe
            load_sweep(path)
        elif path.stem.startswith("repro_base"):  # a sweep's base recipe: the sweep sets dir and method
            load_recipe(path, [f"output_dir={tmp_path / path.stem}", "method=scalarization",
                               "method_args={total_steps: 10}"])
        else:
            load_recipe(path)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"learning_rat": 1e-3}, "Did you mean `learning_rate`"),
        ({"tokeniser": {}}, "Did you mean `tokenizer`"),
        ({"method_args": {"total_steps": 10, "first_stage_steps": 5, "high_resource": ["en-frr"]}},
         "unknown task `en-frr`"),
        ({"method_args": {"total_steps": 10, "first_stage_steps": 10, "high_resource": ["en-fr"]}},
         "first_stage_steps < method_args.total_steps"),
        ({"method": "ptfj"}, "Did you mean `ptjf`"),
        ({"method_args": {"total_steps": 10, "first_stage_steps": 5, "high_resource": ["en-fr"],
                          "mixture": {"strategy": "temperature", "tau": 0}}}, "tau must be > 0"),
        ({"method_args": {"total_steps": 10, "mixture": {"strategy": "static", "weights": [1, 2, 3]}},
          "method": "scalarization"}, "3 entries for 2 tasks"),
        ({"max_steps": 10}, "set per stage by the runner"),
        ({"tasks": []}, "`tasks` is empty"),
    ],
)
def test_config_errors_name_the_field_and_the_fix(change, needle):
    data = raw()
    if "method_args" in change:
        data["method_args"] = {}
    data.update(change)
    with pytest.raises(RecipeError, match=needle):
        parse_recipe(data)


def test_stage_errors():
    base = raw()
    del base["method"], base["method_args"]
    with pytest.raises(RecipeError, match="max_steps must be a positive integer"):
        parse_recipe({**base, "stages": [{"name": "a", "max_steps": 0}]})
    with pytest.raises(RecipeError, match="runs at the same time or later"):
        parse_recipe({**base, "stages": [{"name": "a", "max_steps": 5, "init": "b"}, {"name": "b", "max_steps": 5}]})
    with pytest.raises(RecipeError, match="first stage has no previous stage"):
        parse_recipe({**base, "stages": [{"name": "a", "max_steps": 5, "init": "previous"}]})
    with pytest.raises(RecipeError, match="either `method`"):
        parse_recipe({**raw(), "stages": [{"name": "a", "max_steps": 5}]})
    with pytest.raises(RecipeError, match="unknown key `stages.0.mixtrue`"):
        parse_recipe({**base, "stages": [{"name": "a", "max_steps": 5, "mixtrue": {}}]})
    with pytest.raises(RecipeError, match="optimizer must be one of"):
        parse_recipe({**base, "stages": [{"name": "a", "max_steps": 5, "optimizer": "sgd"}]})
    with pytest.raises(RecipeError, match="not found"):
        load_recipe("does/not/exist.yaml")


def test_stage_overrides_of_a_method_recipe_apply_to_its_expanded_stages():
    """The README's and --help's own example: `stages.joint.max_steps=200` on a `method: ptjf` recipe."""
    cfg = load_recipe(QUICKSTART, ["stages.joint.max_steps=200", "learning_rate=1e-3", "stages.0.optimizer=adafactor"])
    assert cfg.method == "ptjf" and [(s.name, s.max_steps) for s in cfg.stages] == [("pretrain", 560), ("joint", 200)]
    assert cfg.stages[0].optimizer == "adafactor" and cfg.stages[1].optimizer == "adamw"
    assert cfg.training["learning_rate"] == 1e-3
    # method_args overrides still apply before the expansion
    cfg = load_recipe(QUICKSTART, ["method_args.total_steps=1000", "stages.joint.lr_scheduler=linear"])
    assert [s.max_steps for s in cfg.stages] == [560, 440] and cfg.stages[1].lr_scheduler == "linear"
    with pytest.raises(RecipeError, match="no list item named `jiont`"):
        load_recipe(QUICKSTART, ["stages.jiont.max_steps=5"])


@pytest.mark.parametrize("field, override", [
    ("`stages.0`: max_steps", "stages.0.max_steps=true"),
    ("method_args.first_stage_steps", "method_args.first_stage_steps=true"),
    ("method_args.total_steps", "method_args.total_steps=true"),
    ("`train_size`", "tasks.0.train_size=true"),
    ("`seed`", "tasks.0.seed=true"),
    ("`seed`", "tasks.0.seed=abc"),
    ("model.num_layers", "model.num_layers=true"),
    ("model.dropout_rate", "model.dropout_rate=false"),
    ("num_dev", "data.num_dev=true"),
    ("vocab_size", "tokenizer.vocab_size=true"),
    ("num_beams", "eval.num_beams=true"),
    ("max_retries", "hub.max_retries=true"),
    ("r must be", "stages.1.peft={r: true}"),
    ("`seed`", "seed=true"),
])
def test_a_boolean_is_not_an_integer_anywhere(field, override):
    """`max_steps: true` once trained one step (a bool is an int in Python); every integer field refuses booleans."""
    data = raw()
    if override.startswith("stages."):  # the expanded stages, edited
        data["stages"] = expand_method(data.pop("method"), data.pop("method_args"), ["en-fr", "en-ro"])
    with pytest.raises(RecipeError, match=re.escape(field)):
        parse_recipe(apply_overrides(data, [override]))


def test_a_recipe_is_parsed_once_into_typed_tasks_and_model():
    from hf_ptjf.data.spec import TaskSpec
    from hf_ptjf.model_spec import ModelArguments

    cfg = load_recipe(TINY, ["tasks.0.tgt_versions=Segond"])
    assert all(isinstance(t, TaskSpec) for t in cfg.tasks) and isinstance(cfg.model, ModelArguments)
    assert cfg.tasks[0].tgt_versions == ["Segond"] and cfg.model.d_model == 32 and cfg.model.family == "t5"
    record = cfg.to_dict()  # what a run records: the tasks and the model section as written
    assert record["tasks"][0]["tgt_versions"] == "Segond" and "family" not in record["model"]
    with pytest.warns(DeprecationWarning, match=r"read `\.name`"):
        assert cfg.tasks[0]["name"] == "en-fr"
    with pytest.warns(DeprecationWarning, match=r"read `\.trust_remote_code`"):
        assert cfg.model.get("trust_remote_code") is False


@pytest.mark.parametrize("override, message", [
    ("model.family=lama", "`model`: model.family must be one of t5, llama, got 'lama'. Did you mean `llama`?"),
    ("model.d_modle=8", "`model`: Unknown model argument 'd_modle' in the recipe's `model:` section. Did you mean"),
])
def test_the_model_section_is_checked_when_the_recipe_is_read(override, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_recipe(TINY, [override])


def test_a_stages_optimizer_and_schedule_map_to_the_trainer_in_one_place():
    from hf_ptjf.recipe.training import stage_optimization_arguments

    assert stage_optimization_arguments("adafactor", {"beta1": 0.9}, "constant") == {
        "optim": "adafactor", "lr_scheduler_type": "constant_with_warmup", "optimizer_args": {"beta1": 0.9}}
    stage = load_recipe(TINY, ["method_args.stage={optimizer_args: {beta2: 0.95}, lr_scheduler: warmup_then_rsqrt}"]
                        ).stages[1]
    assert stage.optimization_arguments() == {"optim": "adamw_torch", "lr_scheduler_type": "warmup_then_rsqrt",
                                              "optimizer_args": {"beta2": 0.95}}
    with pytest.raises(RecipeError, match=r"unknown key `stages.0.optimizer_args.beta3` for optimizer `adamw`\. Did "
                                          r"you mean `beta2`\? Allowed: beta1, beta2, epsilon\."):
        load_recipe(TINY, ["method_args.stage={optimizer_args: {beta3: 0.9}}"])


# ---------------------------------------------------------------------- stage resets
def test_a_stage_reset_is_parsed_with_the_stage_and_left_out_of_the_record_when_default():
    from hf_ptjf.recipe import load_recipe
    from hf_ptjf.recipe.config import StageReset

    tiny = "tests/fixtures/tiny_recipe.yaml"
    plain = load_recipe(tiny)
    assert all(s.reset == StageReset() and s.reset.is_default for s in plain.stages)
    assert all("reset" not in s for s in plain.to_dict()["stages"])  # recorded recipes stay byte for byte
    ablation = load_recipe(tiny, ["method_args.reset={optimizer: keep, lr_schedule: continue}"])
    assert ablation.stages[0].reset.is_default
    assert ablation.stages[1].reset == StageReset("keep", "continue")
    assert ablation.to_dict()["stages"][1]["reset"] == {"optimizer": "keep", "lr_schedule": "continue"}
    assert load_recipe(tiny, ["stages.joint.reset.lr_schedule=anneal"]).stages[1].reset.lr_schedule == "anneal"


@pytest.mark.parametrize("override, message", [
    ("stages.joint.reset.optimizer=kep", "`stages.1.reset`: optimizer must be one of fresh, keep, got 'kep'. Did you "
                                         "mean `keep`?"),
    ("stages.joint.reset.lr_schedule=contine", "lr_schedule must be one of fresh, continue, anneal, got 'contine'. "
                                               "Did you mean `continue`?"),
    ("method_args.reset={optimiser: keep}", "`method_args.reset` (expanded into stage `joint`): unknown key "
                                            "`stages.1.reset.optimiser`. Did you mean `optimizer`?"),
    ("method_args.reset=keep", "`method_args.reset` must be a mapping"),
    ("stages.joint.reset=keep", "`stages.1.reset` must be a mapping"),
])
def test_a_bad_stage_reset_is_refused_with_a_did_you_mean(override, message):
    from hf_ptjf.recipe import RecipeError, load_recipe

    with pytest.raises(RecipeError) as e:
        load_recipe("tests/fixtures/tiny_recipe.yaml", [override])
    assert message in str(e.value)


def test_method_args_reset_needs_a_second_stage():
    from hf_ptjf.recipe import RecipeError, load_recipe

    with pytest.raises(RecipeError, match="method `scalarization` has one stage, so nothing to reset"):
        load_recipe("tests/fixtures/tiny_recipe.yaml", ["method=scalarization", "method_args.first_stage_steps=null",
                                                        "method_args.high_resource=null",
                                                        "method_args.reset={optimizer: keep}"])
