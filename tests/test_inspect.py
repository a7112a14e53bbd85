"""Applicability report: constructed cases, recipe parsing, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hf_ptjf.inspect import applicability_report, format_report, main, recipe_report


def test_hr_plus_lr_is_expected_to_help():
    r = applicability_report(["en-fr", "en-ro"], [100_000, 500], [3_000_000, 15_000], [0.7, 0.3], budget=64_000)
    assert r.hr_min_size == 6_400  # ceil(budget / max_epochs_warn)
    assert r.high_resource == ["en-fr"] and r.low_resource == ["en-ro"]
    assert r.ptjf_expected_to_help and "expected to help" in r.verdict
    lr = r.rows[1]
    assert lr.expected_examples == pytest.approx(19_200) and lr.expected_epochs == pytest.approx(38.4)
    assert lr.overfit_risk and r.overfit_risk == ["en-ro"]
    text = format_report(r)
    assert "OVERFIT?" in text and "Verdict: PTJF is expected to help" in text


def test_all_high_resource_is_not_expected_to_help():
    r = applicability_report(["en-fr", "en-es"], [100_000, 90_000], [1, 1], [0.5, 0.5], budget=64_000)
    assert not r.ptjf_expected_to_help and "all tasks are high-resource" in r.verdict
    assert not r.overfit_risk


def test_no_high_resource_task_is_not_expected_to_help():
    r = applicability_report(["a", "b"], [500, 300], [1, 1], [0.5, 0.5], budget=64_000)
    assert not r.ptjf_expected_to_help and "no high-resource task" in r.verdict
    # an explicit threshold overrides the budget-derived one
    r = applicability_report(["a", "b"], [500, 300], [1, 1], [0.5, 0.5], budget=64_000, hr_min_size=400)
    assert r.ptjf_expected_to_help and r.high_resource == ["a"]


def test_report_input_errors():
    with pytest.raises(ValueError, match="`rates` has 1 entries"):
        applicability_report(["a", "b"], [1, 2], [1, 1], [1.0], budget=10)
    with pytest.raises(ValueError, match="max_epochs_warn"):
        applicability_report(["a"], [1], [1], [1.0], budget=10, max_epochs_warn=0)


RECIPE = {
    "per_device_train_batch_size": 32,
    "gradient_accumulation_steps": 1,
    "stages": [
        {"name": "pretrain", "mixture": {"tasks": ["en-fr"]}, "max_steps": 1500},
        {
            "name": "joint",
            "mixture": {"tasks": ["en-fr", "en-ro"], "strategy": "static", "weights": [0.7, 0.3]},
            "max_steps": 500,
        },
    ],
}


def test_recipe_report_per_stage_budgets_and_verdict():
    sizes, tokens = {"en-fr": 120_000, "en-ro": 300}, {"en-fr": 6_000_000, "en-ro": 15_000}
    rep = recipe_report(RECIPE, sizes, tokens)
    assert [s.budget for s in rep.stages] == [48_000, 16_000] and rep.budget == 64_000
    assert rep.high_resource == ["en-fr"] and rep.low_resource == ["en-ro"] and rep.ptjf_expected_to_help
    assert rep.stages[1].rows[1].expected_epochs == pytest.approx(16.0)
    assert any("en-ro" in n and "16.0 epochs" in n for n in rep.notes)
    doubled = recipe_report(RECIPE, sizes, tokens, num_processes=2)
    assert doubled.budget == 128_000
    text = format_report(rep)
    assert text.count("stage ") >= 2 and text.strip().splitlines()[-1].startswith("Verdict:")


def test_recipe_mixture_strategies_and_errors():
    sizes, tokens = {"a": 100_000, "b": 1_000}, {"a": 1, "b": 1}

    def stage(mixture):
        return {"stages": [{"name": "s", "max_steps": 100, "mixture": mixture}], "per_device_train_batch_size": 10}

    temp = recipe_report(stage({"tasks": ["a", "b"], "strategy": "temperature", "tau": 100.0}), sizes, tokens)
    assert temp.stages[0].rows[1].rate == pytest.approx(0.5, abs=0.05)
    uni = recipe_report(stage({"tasks": ["a", "b"], "strategy": "unimax", "max_epochs": 0.1}), sizes, tokens)
    assert uni.stages[0].rows[1].expected_epochs <= 0.1 + 1e-9
    by_name = recipe_report(stage({"strategy": "static", "weights": {"b": 1.0}}), sizes, tokens)  # no tasks: all
    assert [r.rate for r in by_name.stages[0].rows] == [0.0, 1.0]
    single = recipe_report(stage({"tasks": ["a", "b"]}), sizes, tokens, hr_min_size=10_000)
    assert any("single-stage" in n for n in single.notes)
    with pytest.raises(ValueError, match="Did you mean `weights`"):
        recipe_report(stage({"tasks": ["a"], "weight": [1]}), sizes, tokens)
    with pytest.raises(ValueError, match="not defined under `tasks`"):
        recipe_report(stage({"tasks": ["c"]}), sizes, tokens)
    with pytest.raises(ValueError, match="max_steps"):
        recipe_report({"stages": [{"name": "s", "mixture": {}}]}, sizes, tokens)


def _write_recipe(tmp_path):
    hr = tmp_path / "hr.jsonl"
    hr.write_text("".join(json.dumps({"source": f"hello {i}", "target": f"bonjour {i}"}) + "\n" for i in range(3000)))
    lr = tmp_path / "lr.jsonl"
    lr.write_text("".join(json.dumps({"source": f"hello {i}", "target": f"salut {i}"}) + "\n" for i in range(120)))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"""
output_dir: ignored
tasks:
  - {{name: en-fr, source: json, path: {hr}}}
  - {{name: en-ro, source: json, path: {lr}}}
per_device_train_batch_size: 8
stages:
  - {{name: pretrain, mixture: {{tasks: [en-fr]}}, max_steps: 100}}
  - {{name: joint, mixture: {{tasks: [en-fr, en-ro], strategy: static, weights: [0.5, 0.5]}}, max_steps: 500}}
"""
    )
    return recipe


def test_cli_main(tmp_path, capsys):
    recipe = _write_recipe(tmp_path)
    assert main([str(recipe), "--cache-dir", str(tmp_path / "cache"), "--num-dev", "10", "--num-test", "10"]) == 0
    out = capsys.readouterr().out
    assert "stage pretrain" in out and "stage joint" in out and "en-ro" in out
    assert "OVERFIT?" in out  # 2,000 examples over 100 training rows
    assert out.strip().splitlines()[-1] == (
        "Verdict: PTJF is expected to help: pre-train on the high-resource task(s) en-fr, "
        "then fine-tune jointly with the low-resource task(s) en-ro."
    )
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_module_entry_point(tmp_path):
    recipe = _write_recipe(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_ptjf.inspect",
            str(recipe),
            "--cache-dir",
            str(tmp_path / "c"),
            "--num-processes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "budget 1,600 examples" in proc.stdout and "Verdict:" in proc.stdout
