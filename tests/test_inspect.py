"""Applicability report: constructed cases, the calibration against measured sweeps, recipes, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_ptjf.analysis.inspect import (
    ALL_HR,
    HELPS,
    NO_HR,
    STATIC,
    applicability_report,
    format_report,
    main,
    recipe_report,
    verdict_for,
)
from hf_ptjf.mixture import temperature
from hf_ptjf.recipe import RecipeError, load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_lr_overfitting_at_the_planned_rate_but_not_at_a_lower_static_rate():
    r = applicability_report(["en-fr", "en-ro"], [100_000, 500], [3_000_000, 15_000], [0.7, 0.3], budget=64_000)
    assert r.hr_min_size == 3_200  # ceil(budget / overfit_passes)
    assert r.high_resource == ["en-fr"] and r.low_resource == ["en-ro"]
    lr = r.rows[1]
    assert lr.expected_examples == pytest.approx(19_200) and lr.expected_epochs == pytest.approx(38.4)
    assert lr.overfit_risk and r.overfit_risk == ["en-ro"]
    (numbers,) = r.low_resource_numbers
    assert numbers.safe_static_rate == pytest.approx(20 * 500 / 64_000)  # r* = T x D / B
    assert numbers.hr_share_at_safe_rate == pytest.approx(1 - 20 * 500 / 64_000)
    assert r.kind == STATIC and not r.ptjf_expected_to_help
    assert "planned rates overfit en-ro (38.4 passes)" in r.verdict and "en-ro 0.156" in r.verdict
    text = format_report(r)
    assert "OVERFIT?" in text and "Verdict: a static rate of about r should do as well" in text


def test_a_task_that_overfits_at_every_useful_static_rate_is_where_ptjf_helps():
    r = applicability_report(["en-fr", "en-ro"], [1_000_000, 50], [1, 1], [0.7, 0.3], budget=64_000)
    assert r.kind == HELPS and r.ptjf_expected_to_help
    assert r.low_resource_numbers[0].safe_static_rate == pytest.approx(20 * 50 / 64_000)
    assert "en-ro reaches 20 passes at a static rate of 0.016" in r.verdict and "Pre-train on en-fr" in r.verdict
    # the threshold is a setting: with r_min below r*, a static rate is expected to do as well
    assert applicability_report(["en-fr", "en-ro"], [1_000_000, 50], [1, 1], [0.7, 0.3], budget=64_000,
                                min_static_rate=0.01).kind == STATIC


def test_all_high_resource_is_not_expected_to_help():
    r = applicability_report(["en-fr", "en-es"], [100_000, 90_000], [1, 1], [0.5, 0.5], budget=64_000)
    assert not r.ptjf_expected_to_help and "all tasks are high-resource" in r.verdict and r.kind == ALL_HR
    assert not r.overfit_risk


def test_no_high_resource_task_is_not_expected_to_help():
    r = applicability_report(["a", "b"], [500, 300], [1, 1], [0.5, 0.5], budget=64_000)
    assert not r.ptjf_expected_to_help and "no high-resource task" in r.verdict and r.kind == NO_HR
    # an explicit threshold overrides the budget-derived one
    r = applicability_report(["a", "b"], [500, 300], [1, 1], [0.5, 0.5], budget=64_000, hr_min_size=400)
    assert r.high_resource == ["a"] and r.kind == STATIC


def test_report_input_errors():
    with pytest.raises(ValueError, match="`rates` has 1 entries"):
        applicability_report(["a", "b"], [1, 2], [1, 1], [1.0], budget=10)
    with pytest.raises(ValueError, match="overfit_passes"):
        applicability_report(["a"], [1], [1], [1.0], budget=10, overfit_passes=0)
    with pytest.raises(ValueError, match="min_static_rate"):
        verdict_for({"a": 1}, 10, min_static_rate=1.5)


# Every sweep recorded in docs/reproduction.md (training sizes of the Bible tasks as loaded by
# repro_base_cpu.yaml; batch 32, one process), and the paper's WMT runs (Table 1 sizes, Table 4 steps,
# batch 1024). The measured outcome of each is in docs/inspect-calibration.md.
FR, ES = 30_276, 30_284
CALIBRATION = [
    # (case, sizes, budget, expected verdict, measured outcome)
    ("C1 Fr/Es N=400", {"en-fr": FR, "en-es": ES}, 400 * 32, ALL_HR, "no gain"),
    ("C1 Fr/Es N=2000", {"en-fr": FR, "en-es": ES}, 2000 * 32, ALL_HR, "no gain"),
    ("C2 Fr/Ro150 N=400", {"en-fr": FR, "en-ro": 150}, 400 * 32, STATIC, "static best by 0.33"),
    ("C2 Fr/Ro150 N=1000", {"en-fr": FR, "en-ro": 150}, 1000 * 32, STATIC, "static best by 0.22"),
    ("C2 Fr/Ro300 N=2000", {"en-fr": FR, "en-ro": 300}, 2000 * 32, STATIC, "static best by 0.067"),
    ("C2 Fr/Ro150 N=2000", {"en-fr": FR, "en-ro": 150}, 2000 * 32, STATIC, "static best by 0.119"),
    ("C2 Fr/Hi300 N=2000", {"en-fr": FR, "en-hi": 300}, 2000 * 32, STATIC, "static best by 0.104"),
    ("C2 Fr/Ro300 N=4000", {"en-fr": FR, "en-ro": 300}, 4000 * 32, STATIC, "static 0.1 best by 0.094, 2 seeds"),
    ("C2 Fr/Hi300 N=4000", {"en-fr": FR, "en-hi": 300}, 4000 * 32, STATIC, "static 0.1 best by 0.154, 2 seeds"),
    ("C2 Fr/Ro300 N=6000", {"en-fr": FR, "en-ro": 300}, 6000 * 32, STATIC, "static 0.1 ahead by 0.049, 1 seed"),
    ("paper Fr/Ro", {"en-fr": 40_853_298, "en-ro": 610_320}, 450_000 * 1024, HELPS, "PTJF front dominates"),
    ("paper Fr/Hi", {"en-fr": 40_853_298, "en-hi": 313_748}, 350_000 * 1024, HELPS, "PTJF front dominates"),
    ("paper Fr/Zh", {"en-fr": 40_853_298, "en-zh": 25_986_436}, 600_000 * 1024, STATIC, "no gain"),
]


@pytest.mark.parametrize("case,sizes,budget,expected,measured", CALIBRATION, ids=[c[0] for c in CALIBRATION])
def test_verdicts_agree_with_every_measured_sweep(case, sizes, budget, expected, measured):
    kind, verdict, numbers, _ = verdict_for(sizes, budget)
    assert kind == expected, (case, measured, verdict)


def _task(name):
    """A task spec that parses (sizes are given to the report, so its file is never read)."""
    return {"name": name, "source": "json", "path": f"{name}.jsonl", "lang": "xx"}


def _config(stages, **top):
    return parse_recipe({"output_dir": "unused", "tasks": [_task("en-fr"), _task("en-ro")], "stages": stages, **top})


RECIPE_STAGES = [
    {"name": "pretrain", "mixture": {"tasks": ["en-fr"]}, "max_steps": 1500},
    {"name": "joint", "mixture": {"tasks": ["en-fr", "en-ro"], "strategy": "static", "weights": [0.7, 0.3]},
     "max_steps": 500},
]


def test_recipe_report_per_stage_budgets_and_verdict():
    sizes, tokens = {"en-fr": 120_000, "en-ro": 300}, {"en-fr": 6_000_000, "en-ro": 15_000}
    cfg = _config(RECIPE_STAGES, per_device_train_batch_size=32, gradient_accumulation_steps=1)
    rep = recipe_report(cfg, sizes, tokens)
    assert [s.budget for s in rep.stages] == [48_000, 16_000] and rep.budget == 64_000
    assert rep.high_resource == ["en-fr"] and rep.low_resource == ["en-ro"] and rep.kind == STATIC
    assert rep.stages[1].rows[1].expected_epochs == pytest.approx(16.0)
    assert rep.low_resource_numbers[0].planned_passes == pytest.approx(16.0)
    doubled = recipe_report(cfg, sizes, tokens, num_processes=2)
    assert doubled.budget == 128_000
    text = format_report(rep)
    assert text.count("stage ") >= 2 and text.strip().splitlines()[-1].startswith("Verdict:")
    assert "en-ro: 300 examples, 16.0 planned passes" in text


def test_inspect_budgets_and_rates_are_the_runners():
    """Defaults a recipe leaves out (batch size 32, strategy temperature) are the runner's, not inspect's own."""
    from hf_ptjf.runner import RecipeRunner

    sizes, tokens = {"en-fr": 100_000, "en-ro": 1_000}, {"en-fr": 1, "en-ro": 1}
    cfg = _config([{"name": "joint", "mixture": {"tau": 3.33}, "max_steps": 100}])  # no batch size, no strategy
    rep = recipe_report(cfg, sizes, tokens)
    assert rep.budget == 100 * 32
    assert [r.rate for r in rep.stages[0].rows] == pytest.approx(temperature([100_000, 1_000], 3.33).tolist())
    args = RecipeRunner.training_arguments(_Stub(cfg), 0, cfg.stages[0])
    assert rep.budget == args.max_steps * args.total_train_batch_size
    # weights without a strategy mean static sampling for everyone (the runner used to ignore them)
    static = _config([{"name": "joint", "mixture": {"weights": {"en-ro": 1.0, "en-fr": 3.0}}, "max_steps": 10}])
    assert static.stage_rates(static.stages[0], sizes) == pytest.approx({"en-fr": 0.75, "en-ro": 0.25})


class _Stub:
    """Just enough of a RecipeRunner for ``training_arguments`` (no process state, no data)."""

    def __init__(self, cfg):
        from hf_ptjf.runner.records import RunDirectory

        self.cfg, self.run_dir = cfg, RunDirectory(cfg.output_dir)


def test_recipe_mixture_strategies_and_errors():
    sizes, tokens = {"a": 100_000, "b": 1_000}, {"a": 1, "b": 1}

    def cfg(mixture, steps=100):
        return parse_recipe({"output_dir": "o", "tasks": [_task("a"), _task("b")],
                             "stages": [{"name": "s", "max_steps": steps, "mixture": mixture}],
                             "per_device_train_batch_size": 10})

    temp = recipe_report(cfg({"tasks": ["a", "b"], "strategy": "temperature", "tau": 100.0}), sizes, tokens)
    assert temp.stages[0].rows[1].rate == pytest.approx(0.5, abs=0.05)
    uni = recipe_report(cfg({"tasks": ["a", "b"], "strategy": "unimax", "max_epochs": 0.1}), sizes, tokens)
    assert uni.stages[0].rows[1].expected_epochs <= 0.1 + 1e-9
    by_name = recipe_report(cfg({"strategy": "static", "weights": {"b": 1.0}}), sizes, tokens)  # no tasks: all
    assert [r.rate for r in by_name.stages[0].rows] == [0.0, 1.0]
    single = recipe_report(cfg({"tasks": ["a", "b"]}, steps=100_000), sizes, tokens, hr_min_size=10_000)
    assert single.kind == HELPS and any("single-stage" in n for n in single.notes)
    with pytest.raises(RecipeError, match="Did you mean `weights`"):
        cfg({"tasks": ["a"], "weight": [1]})
    with pytest.raises(RecipeError, match="unknown task `c`"):
        cfg({"tasks": ["c"]})
    with pytest.raises(RecipeError, match="max_steps"):
        parse_recipe({"output_dir": "o", "tasks": [_task("a")], "stages": [{"name": "s", "mixture": {}}]})


def _write_recipe(tmp_path):
    hr = tmp_path / "hr.jsonl"
    hr.write_text("".join(json.dumps({"source": f"hello {i}", "target": f"bonjour {i}"}) + "\n" for i in range(3000)))
    lr = tmp_path / "lr.jsonl"
    lr.write_text("".join(json.dumps({"source": f"good day {i}", "target": f"salut {i}"}) + "\n" for i in range(120)))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""
output_dir: ignored
tasks:
  - {{name: en-fr, source: json, path: {hr}}}
  - {{name: en-ro, source: json, path: {lr}}}
data: {{cache_dir: {tmp_path / "cache"}, num_dev: 10, num_test: 10}}
per_device_train_batch_size: 8
stages:
  - {{name: pretrain, mixture: {{tasks: [en-fr]}}, max_steps: 100}}
  - {{name: joint, mixture: {{tasks: [en-fr, en-ro], strategy: static, weights: [0.5, 0.5]}}, max_steps: 600}}
"""
    )
    return recipe


def test_cli_main(tmp_path, capsys):
    recipe = _write_recipe(tmp_path)
    assert main([str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "stage pretrain" in out and "stage joint" in out and "en-ro" in out
    assert "OVERFIT?" in out  # 2,400 examples over 100 training rows
    assert out.strip().splitlines()[-1].startswith(
        "Verdict: a static rate of about r should do as well as PTJF: the planned rates overfit en-ro (24.0 passes)"
    )
    # the same overrides as the runner take
    assert main([str(recipe), "stages.joint.max_steps=7200"]) == 0  # B = 58,400: en-ro r* = 0.034 >= r_min 0.029
    assert "none needs less than 0.029" in capsys.readouterr().out.strip().splitlines()[-1]
    # a higher r_min (the option between the recipe and its overrides) makes it a PTJF case
    assert main([str(recipe), "--min-static-rate", "0.035", "stages.joint.max_steps=7200"]) == 0
    assert "Verdict: PTJF is expected to help" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "error:" in capsys.readouterr().err


def test_quickstart_is_not_judged_a_ptjf_case(capsys):
    """Its low-resource tasks are planned for 0.73 and 1.19 passes: nothing overfits, static sampling does as well."""
    assert main([str(ROOT / "recipes" / "configs" / "quickstart.yaml")]) == 0
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert verdict.startswith("Verdict: static sampling should do as well as PTJF: nothing overfits")


def test_cli_module_entry_point(tmp_path):
    recipe = _write_recipe(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "hf_ptjf.analysis.inspect", str(recipe), "--num-processes", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "budget 1,600 examples" in proc.stdout and "Verdict:" in proc.stdout


def test_shipped_configs_read_the_same_in_inspect_and_runner():
    cfg = load_recipe(ROOT / "recipes" / "configs" / "quickstart.yaml")
    assert [cfg.stage_budget(s) for s in cfg.stages] == [560 * 32, 240 * 32]


@pytest.mark.slow
def test_lm_tasks_are_sized_in_the_packed_rows_the_run_samples(tmp_path, capsys):
    """An lm task is sampled as packed rows: inspect sizes it with the runner's own data (not in documents)."""
    from hf_ptjf.analysis.inspect import main
    from hf_ptjf.data.prepare import prepare_recipe_data, recipe_tokenizer_cache

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "lm_scalarization_cpu.yaml"
    overrides = [f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}", "tasks.lm-en.versions=[WEB]",
                 "tasks.lm-en.train_size=1500", "tasks.lm-hi.train_size=300", "data.num_dev=40", "data.num_test=8",
                 "tokenizer.vocab_size=1000", "tokenizer.max_sentences=4000"]
    assert main([str(recipe), *overrides]) == 0
    out = capsys.readouterr().out
    cfg = load_recipe(recipe, overrides)
    sizes = prepare_recipe_data(cfg, recipe_tokenizer_cache(cfg)).train_sizes()
    assert "lm tasks in packed rows" in out
    for task, size in sizes.items():
        row = next(line for line in out.splitlines() if line.startswith(task + " "))
        assert row.split()[1] == f"{size:,}", row
    assert sizes["lm-tl"] < 200  # fewer rows than its 200 verses: several verses pack into one row
