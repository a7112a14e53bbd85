"""The sweep machinery on a tiny grid (2 rates x 2 methods, a few steps, a ~10k-parameter model).

Covers trial expansion, the subprocess runner, skipping finished trials on rerun, the gathered table and
the report. Not the scientific result (see docs/reproduction.md).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import hf_ptjf.sweep as sw
from hf_ptjf.cli.sweep import main as sweep_main
from hf_ptjf.recipe import RecipeError
from hf_ptjf.runner.results import cumulative_counts
from hf_ptjf.sweep import running

BASE = {
    "tasks": [
        {"name": "en-fr", "source": "bible", "src_versions": ["WEB"], "tgt_versions": ["Segond"], "lang": "fr",
         "train_size": 200},
        {"name": "en-ro", "source": "bible", "src_versions": ["WEB"], "tgt_versions": ["Cornilescu"], "lang": "ro",
         "train_size": 100},
    ],
    "data": {"num_dev": 50, "num_test": 10, "max_source_length": 32, "max_target_length": 32},
    "tokenizer": {"vocab_size": 400, "max_sentences": 2000},
    "model": {"num_layers": 1, "d_model": 16, "d_ff": 32, "num_heads": 2, "dropout_rate": 0.0},
    "eval": {"loss_examples": 16, "bleu": False},
    "per_device_train_batch_size": 8,
    "report_to": [],
    "logging_steps": 2,
    "eval_steps": 2,
    "save_strategy": "no",
}


def write_sweep(tmp: Path, **kw) -> Path:
    (tmp / "base.yaml").write_text(yaml.safe_dump(BASE))
    cfg = {"recipe": "base.yaml", "output_dir": str(tmp / "sweep"), "hr_task": "en-fr", "lr_task": "en-ro",
           "methods": ["scalarization", "ptjf"], "rates": [0.2, 0.5], "seeds": [0], "total_steps": 6,
           "first_stage_steps": 4, "parallel": 2, "threads": 1, **kw}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ----------------------------------------------------------------------------------------- expansion
def test_expand_grid_shares_pretraining(tmp_path):
    cfg = sw.load_sweep(write_sweep(tmp_path, methods=["scalarization", "ptjf", "restart", "transfer"],
                                    seeds=[0, 1], lrs=[1e-3, 2e-3]))
    trials = sw.expand_trials(cfg)
    by_method: dict[str, list] = {}
    for t in trials:
        by_method.setdefault(t.method, []).append(t)
    assert len(by_method["pretrain"]) == 4  # one per (seed, lr)
    assert len(by_method["scalarization"]) == len(by_method["ptjf"]) == len(by_method["restart"]) == 8
    assert len(by_method["transfer"]) == 4  # rate-free: the low-resource task alone
    assert len({t.trial for t in trials}) == len(trials)
    assert trials[0].method == "pretrain"  # dependencies first
    pre = {t.trial: t for t in by_method["pretrain"]}
    for t in by_method["ptjf"] + by_method["transfer"]:
        dep = pre[t.depends_on]
        assert (dep.seed, dep.lr) == (t.seed, t.lr)
        (stage,) = t.recipe["stages"]
        assert stage["init"] == {"path": str(dep.out / "stages" / "0-pretrain" / "final")}
        assert stage["max_steps"] == 2 and t.total_steps == 6
    scal = next(t for t in by_method["scalarization"] if t.rate == 0.2)
    assert scal.recipe["method"] == "scalarization"
    assert scal.recipe["method_args"]["mixture"]["weights"] == {"en-fr": 0.8, "en-ro": 0.2}
    assert scal.recipe["tokenizer"]["path"] == str(cfg.out / "tokenizer")
    assert {t.recipe["learning_rate"] for t in by_method["restart"]} == {1e-3, 2e-3}
    assert {t.recipe["seed"] for t in by_method["restart"]} == {0, 1}


def test_method_variants_name_their_method_rates_and_mixture(tmp_path):
    """A `methods` entry may be a variant: a method at rates of its own, or with its own joint mixture (no rate axis),
    or with extra method_args. A plain name keeps the ids and recipes it always had."""
    plain = {t.trial: t.recipe for t in sw.expand_trials(sw.load_sweep(write_sweep(tmp_path)))}
    cfg = sw.load_sweep(write_sweep(tmp_path, methods=[
        {"name": "scalarization", "rates": [0.2]}, "ptjf",
        {"name": "ptjf-temp", "method": "ptjf", "mixture": {"strategy": "temperature", "tau": 3.33}},
        {"name": "restart-prop", "method": "restart", "mixture": {"strategy": "proportional"}}]))
    trials = {t.trial: t for t in sw.expand_trials(cfg)}
    assert sorted(trials) == sorted(["pretrain-n4-s0", "scalarization-r0.2-s0", "ptjf-n4-r0.2-s0", "ptjf-n4-r0.5-s0",
                                     "ptjf-temp-n4-s0", "restart-prop-n4-s0"])
    for tid in ("scalarization-r0.2-s0", "ptjf-n4-r0.2-s0", "pretrain-n4-s0"):
        assert trials[tid].recipe == plain[tid]
    temp = trials["ptjf-temp-n4-s0"]
    assert (temp.method, temp.label, temp.rate, temp.depends_on) == ("ptjf", "ptjf-temp", None, "pretrain-n4-s0")
    assert temp.recipe["stages"][0]["mixture"] == {"strategy": "temperature", "tau": 3.33}
    prop = trials["restart-prop-n4-s0"]
    assert prop.recipe["method"] == "restart" and prop.recipe["method_args"]["mixture"] == {"strategy": "proportional"}
    for bad, message in [({"name": "odm", "method": "ptfj"}, "Did you mean `ptjf`"), ({"name": "x", "rate": [0.1]}, "`rate`"),
                         ({"name": "ptjf", "rates": [1.5]}, "rates"), ({"method": "ptjf"}, "with a `name`")]:
        with pytest.raises(RecipeError, match=re.escape(message)):
            sw.expand_trials(sw.load_sweep(write_sweep(tmp_path, methods=["ptjf", bad])))
    with pytest.raises(RecipeError, match="names a method twice"):
        sw.load_sweep(write_sweep(tmp_path, methods=["ptjf", {"name": "ptjf", "rates": [0.2]}]))


def test_an_online_strategy_is_a_method_of_a_sweep_alone_and_as_the_joint_phase_of_ptjf(tmp_path):
    trials = {t.trial: t for t in sw.expand_trials(sw.load_sweep(write_sweep(tmp_path, methods=["odm", "ptjf-odm"])))}
    assert sorted(trials) == ["odm-s0", "pretrain-n4-s0", "ptjf-odm-n4-s0"]
    alone, joint = trials["odm-s0"], trials["ptjf-odm-n4-s0"]
    assert alone.recipe["method"] == "scalarization" and alone.depends_on is None
    assert alone.recipe["method_args"]["mixture"] == {"strategy": "odm"}
    assert joint.method == "ptjf" and joint.depends_on == "pretrain-n4-s0"
    assert joint.recipe["stages"][0]["mixture"]["strategy"] == "odm"


def test_trials_keep_the_base_recipes_method_args_and_read_floats_like_the_runner(tmp_path):
    """The LM recipes' per-stage optimizer and schedules (method_args.stage / first_stage / second_stage) reach
    every trial, through the recipe's own method expansion; `3e-4` in YAML is a float, as in the runner."""
    cfg = sw.load_sweep(write_sweep(tmp_path, methods=["scalarization", "ptjf", "restart", "transfer"]))
    base = (tmp_path / "base.yaml").read_text() + (
        "learning_rate: 3e-4\n"
        "method: ptjf\n"
        "method_args:\n"
        "  total_steps: 99\n"
        "  stage: {optimizer: adafactor, optimizer_args: {beta1: 0.9}}\n"
        "  first_stage: {lr_scheduler: constant_then_rsqrt}\n"
        "  second_stage: {lr_scheduler: warmup_then_rsqrt}\n"
    )
    (tmp_path / "base.yaml").write_text(base)
    from hf_ptjf.recipe import parse_recipe

    trials = sw.expand_trials(cfg)
    assert {type(t.recipe["learning_rate"]) for t in trials} == {float}
    assert {t.recipe["learning_rate"] for t in trials} == {3e-4}
    for t in trials:
        stages = parse_recipe(t.recipe).stages
        assert {s.optimizer for s in stages} == {"adafactor"}, t.trial
        assert {s.optimizer_args["beta1"] for s in stages} == {0.9}, t.trial
        first_of_method = t.method in ("pretrain", "scalarization", "restart")
        schedules = [s.lr_scheduler for s in stages]
        expected = ["constant_then_rsqrt"] if first_of_method else ["warmup_then_rsqrt"]
        if t.method == "restart":
            expected = ["constant_then_rsqrt", "warmup_then_rsqrt"]
        assert schedules == expected, t.trial
        assert sum(s.max_steps for s in stages) == (4 if t.method == "pretrain" else 2 if t.depends_on else 6)


def test_a_sweep_in_tokens_sets_the_trials_size_unit_and_counts_target_tokens_seen(tmp_path):
    cfg = sw.load_sweep(write_sweep(tmp_path, size_unit="tokens"))
    trials = sw.expand_trials(cfg)
    def mixed(ts):  # the stages that mix the two tasks at the trial's rate
        return [s["mixture"] for t in ts for s in t.recipe.get("stages", []) if "weights" in s.get("mixture", {})]

    assert mixed(trials) and all(m["size_unit"] == "tokens" for m in mixed(trials))
    (tmp_path / "d").mkdir()
    default = mixed(sw.expand_trials(sw.load_sweep(write_sweep(tmp_path / "d"))))
    assert default and all("size_unit" not in m for m in default)  # earlier sweeps' trials keep their recipes
    record = {"method": "scalarization", "rate": 0.1, "lr": None, "final": {}, "best": {}, "history": [],
              "examples_seen": {cfg.lr_task: 10}, "target_tokens_seen": {cfg.lr_task: 345}, "wall_time_s": 1}
    assert "| 345 |" in sw.summary_markdown(cfg, [record]) and "target tokens seen" in sw.summary_markdown(cfg, [record])


def test_expand_pretraining_lengths_fixed_finetune(tmp_path):
    cfg = sw.load_sweep(write_sweep(tmp_path, first_stage_steps=[2, 4], finetune_steps=3, total_steps=None,
                                    methods=["ptjf"], share_pretrain=False))
    trials = sw.expand_trials(cfg)
    assert {(t.first_stage_steps, t.total_steps, t.label) for t in trials} == {
        (2, 5, "ptjf@N1=2"), (4, 7, "ptjf@N1=4")}
    assert all(t.recipe["method_args"]["first_stage_steps"] == t.first_stage_steps for t in trials)


@pytest.mark.parametrize("bad, names", [
    ({"methods": ["ptfj"]}, "methods"), ({"rates": [1.5]}, "rates"), ({"rates": ["fast"]}, "rates"),
    ({"lr_task": "en-xx"}, "en-xx"), ({"first_stage_steps": 6}, "first_stage_steps"),
    ({"first_stage_steps": "long"}, "first_stage_steps"), ({"paralel": 2}, "paralel"),
    ({"size_unit": "bytes"}, "size_unit"), ({"total_steps": "fast"}, "`total_steps` (N) must be a positive integer"),
    ({"seeds": ["a"]}, "seeds=[0,1]"), ({"seeds": [True]}, "seeds=[0,1]"),
    # a boolean is not a count (Python's True is the integer 1): refused, not read as one step or process
    ({"total_steps": True}, "`total_steps` (N) must be a positive integer"),
    ({"parallel": True}, "`parallel` must be a positive integer"), ({"first_stage_steps": True}, "first_stage_steps"),
    ({"rates": [True]}, "rates")])
def test_bad_sweep_configs_refused(tmp_path, bad, names):
    with pytest.raises(RecipeError, match=re.escape(names)):
        sw.expand_trials(sw.load_sweep(write_sweep(tmp_path, **bad)))


def test_options_may_come_between_the_config_and_the_overrides(tmp_path, capsys):
    """The documented `sweep.py CONFIG --gather-only key=value` form (argparse refuses it unless intermixed)."""
    assert sweep_main([str(write_sweep(tmp_path)), "--list", "methods=[scalarization]", "rates=[0.2]"]) == 0
    assert capsys.readouterr().out.split()[0::3] == ["scalarization-r0.2-s0"]


def test_failed_pretraining_blocks_its_trials(tmp_path, monkeypatch):
    cfg = sw.load_sweep(write_sweep(tmp_path))
    trials = sw.expand_trials(cfg)

    def fake_launch(trial, cfg, device=None):  # pretraining fails, the rest "succeed" without writing results
        proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({int(trial.method == 'pretrain')})"])
        proc._ptjf_log, proc._ptjf_start = open(tmp_path / "log", "a"), 0.0
        return proc

    monkeypatch.setattr(running, "launch_trial", fake_launch)
    status = sw.run_trials(cfg, trials, poll_s=0.05)
    assert status["pretrain-n4-s0"] == "failed"
    assert status["ptjf-n4-r0.2-s0"] == status["ptjf-n4-r0.5-s0"] == "blocked"
    assert status["scalarization-r0.2-s0"] == "failed"  # exited 0 but no complete results.json


# ----------------------------------------------------------------------------------------- a real tiny sweep
@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    path = write_sweep(tmp, size_unit="characters")  # the summary and the efficiency figure count characters
    cfg = sw.load_sweep(path)
    first = sw.run_sweep(cfg)
    return path, cfg, first


def test_sweep_runs_every_trial(tiny_sweep):
    _, cfg, first = tiny_sweep
    assert first["status"] == {"pretrain-n4-s0": "done", "scalarization-r0.2-s0": "done", "scalarization-r0.5-s0": "done",
                               "ptjf-n4-r0.2-s0": "done", "ptjf-n4-r0.5-s0": "done"}
    for tid in first["status"]:
        trial = json.loads((cfg.out / "trials" / tid / "results.json").read_text())
        assert trial["complete"]
    # one shared tokenizer
    assert (cfg.out / "tokenizer" / "tokenizer_config.json").is_file()
    assert not (cfg.out / "trials" / "ptjf-n4-r0.2-s0" / "tokenizer").exists()


def test_table_has_config_and_metrics(tiny_sweep):
    _, cfg, _ = tiny_sweep
    rows = list(csv.DictReader(open(cfg.out / sw.RESULTS_CSV)))
    assert sorted(r["trial"] for r in rows) == ["ptjf-n4-r0.2-s0", "ptjf-n4-r0.5-s0", "scalarization-r0.2-s0",
                                                "scalarization-r0.5-s0"]
    for r in rows:
        for key in ("method", "rate", "seed", "total_steps", "final_en-fr", "final_en-ro", "best_en-ro",
                    "examples_seen_en-ro", "wall_time_s"):
            assert r[key] not in ("", None), (r["trial"], key)
        assert float(r["best_en-ro"]) <= float(r["final_en-ro"])
        assert r["total_steps"] == "6"
    data = json.loads((cfg.out / sw.RESULTS_JSON).read_text())
    assert data["sweep"]["rates"] == [0.2, 0.5]
    ptjf = next(t for t in data["trials"] if t["trial"] == "ptjf-n4-r0.5-s0")
    assert ptjf["pretrain"] == "pretrain-n4-s0" and ptjf["recipe"]["stages"][0]["name"] == "joint"
    # the shared pre-training run is folded in: its history (steps <= 4) and its examples
    stages = {h["stage"] for h in ptjf["history"]}
    assert stages == {"pretrain", "joint"}
    assert max(h["step"] for h in ptjf["history"]) == 6
    assert ptjf["examples_seen"]["en-fr"] > 4 * 8 * 0.9
    # characters seen: the pre-training run's plus the joint stage's, from the trials' own results
    pre = json.loads((cfg.out / "trials" / "pretrain-n4-s0" / "results.json").read_text())
    joint = json.loads((cfg.out / "trials" / "ptjf-n4-r0.5-s0" / "results.json").read_text())
    assert ptjf["characters_seen"]["en-fr"] == (pre["tasks"]["en-fr"]["characters_seen"]
                                                 + joint["tasks"]["en-fr"]["characters_seen"])
    assert ptjf["characters_seen"]["en-ro"] == joint["tasks"]["en-ro"]["characters_seen"] > 0
    summary = (cfg.out / "summary.md").read_text()
    assert "en-ro characters seen" in summary
    assert f"| {ptjf['characters_seen']['en-ro']} |" in next(line for line in summary.splitlines()
                                                             if line.startswith("| ptjf | 0.5 |"))


def test_report_and_pngs(tiny_sweep):
    _, cfg, _ = tiny_sweep
    report = (cfg.out / "report.md").read_text()
    assert "fronts.png" in report and "ptjf-n4-r0.5-s0" in report
    assert "| ptjf | 0.5 |" in (cfg.out / "summary.md").read_text()
    for png in ("fronts.png", "efficiency.png", "curves_en-fr.png", "curves_en-ro.png"):
        assert (cfg.out / png).stat().st_size > 1000


def test_rerun_skips_finished_trials(tiny_sweep):
    path, cfg, _ = tiny_sweep
    stamps = {p: p.stat().st_mtime_ns for p in (cfg.out / "trials").glob("*/results.json")}
    logs = {p: p.read_text() for p in (cfg.out / "trials").glob("*/trial.log")}
    assert len(stamps) == 5
    again = sw.run_sweep(sw.load_sweep(path))
    assert set(again["status"].values()) == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert {p: p.read_text() for p in logs} == logs  # nothing was launched
    assert len(again["records"]) == 4
    # the CLI lists them as complete
    out = subprocess.run([sys.executable, str(Path(sw.__file__).parents[2] / "recipes" / "sweep.py"), str(path),
                          "--list"], capture_output=True, text=True, check=True).stdout
    assert out.count("complete") == 5


def test_counters_run_across_stages():
    stages = [{"name": "pretrain", "examples_seen": {"en-fr": 100}, "target_tokens_seen": {"en-fr": 1000}},
              {"name": "joint", "examples_seen": {"en-fr": 30, "en-ro": 10}, "target_tokens_seen": {"en-fr": 300}}]
    hist = [{"step": 4, "stage": "pretrain", "examples_seen_en-fr": 100},
            {"step": 6, "stage": "joint", "examples_seen_en-fr": 30, "examples_seen_en-ro": 10, "loss": 2.0}]
    out = cumulative_counts(hist, stages)
    assert out[0]["examples_seen_en-fr"] == 100
    assert out[1]["examples_seen_en-fr"] == 130 and out[1]["examples_seen_en-ro"] == 10 and out[1]["loss"] == 2.0
    # characters: a stage that trained a task without counting them (a record from before they were counted, or
    # rows without a `characters` column) makes the task's later totals unknown: dropped, not wrong
    stages[0]["characters_seen"] = {"en-fr": 5000}
    stages[1]["characters_seen"] = {"en-fr": 1500}
    hist[1].update({"characters_seen_en-fr": 1500, "characters_seen_en-ro": 400})
    out = cumulative_counts(hist, stages)
    assert out[1]["characters_seen_en-fr"] == 6500 and out[1]["characters_seen_en-ro"] == 400
    del stages[0]["characters_seen"]
    out = cumulative_counts(hist, stages)
    assert "characters_seen_en-fr" not in out[1] and out[1]["characters_seen_en-ro"] == 400


def test_seed_means_keep_each_tasks_spread_over_the_seeds():
    def rec(method, rate, seed, fr, ro):
        return {"method": method, "rate": rate, "lr": 2e-3, "seed": seed, "final": {"en-fr": fr, "en-ro": ro},
                "best": {"en-fr": fr, "en-ro": ro}, "examples_seen": {"en-ro": 100 * (seed + 1)},
                "history": [{"step": 10, "eval_en-ro_loss": ro}]}

    means = sw.seed_means([rec("ptjf", 0.3, 0, 4.5, 6.0), rec("ptjf", 0.3, 1, 4.7, 6.3),
                           rec("scalarization", 0.1, 0, 4.4, 6.1), rec("scalarization", 0.1, 1, 4.3, None),
                           rec("restart", 0.1, 0, 4.4, 6.1)])
    ptjf, static, restart = means
    assert ptjf["trial"] == "ptjf-r0.3 (mean of 2)" and ptjf["n_seeds"] == 2
    assert ptjf["final"] == pytest.approx({"en-fr": 4.6, "en-ro": 6.15})
    assert ptjf["final_range"] == {"en-fr": [4.5, 4.7], "en-ro": [6.0, 6.3]}
    assert ptjf["examples_seen"] == {"en-ro": 150} and ptjf["history"] == [
        {"step": 10, "stage": None, "eval_en-ro_loss": pytest.approx(6.15)}]
    assert static["final_range"] == {"en-fr": [4.3, 4.4], "en-ro": None}  # a seed without the loss: no spread
    assert restart["final_range"] == {}  # one seed: no spread


def test_launcher_and_devices(tmp_path, monkeypatch):
    cfg = sw.load_sweep(write_sweep(tmp_path, launcher=["accelerate", "launch"], devices=[0, 1]))
    cmd = sw.trial_command(cfg, Path("t.yaml"))
    assert cmd[:2] == ["accelerate", "launch"] and cmd[2].endswith("recipes/run.py") and cmd[3] == "t.yaml"
    assert sw.trial_env(1, "1")["CUDA_VISIBLE_DEVICES"] == "1"
    seen = []

    def fake_launch(trial, cfg, device=None):
        seen.append(device)
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
        proc._ptjf_log, proc._ptjf_start, proc._ptjf_device = open(tmp_path / "log", "a"), 0.0, device
        return proc

    monkeypatch.setattr(running, "launch_trial", fake_launch)
    sw.run_trials(cfg, sw.expand_trials(cfg)[:3], poll_s=0.05)
    assert seen[:2] == ["0", "1"] and set(seen) <= {"0", "1"}
    with pytest.raises(RecipeError):
        sw.load_sweep(write_sweep(tmp_path, parallel=2, devices=[0]))


def test_trial_run_by_another_process_is_not_started_twice(tmp_path, monkeypatch):
    cfg = sw.load_sweep(write_sweep(tmp_path, methods=["scalarization"], rates=[0.2]))
    (trial,) = sw.expand_trials(cfg)
    trial.out.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])  # "another sweep's run"
    (trial.out / sw.LOCK).write_text(f"{other.pid}\n")
    launched = []

    def fake_launch(t, cfg, device=None):
        launched.append((t.trial, other.poll() is not None))
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc._ptjf_log, proc._ptjf_start = open(tmp_path / "log", "a"), 0.0
        return proc

    monkeypatch.setattr(running, "launch_trial", fake_launch)
    sw.run_trials(cfg, [trial], poll_s=0.05)
    other.wait()
    assert launched == [(trial.trial, True)]  # started only after the other process had exited
    assert not (trial.out / sw.LOCK).exists()


def test_launch_until_stops_starting_trials(tmp_path):
    cfg = sw.load_sweep(write_sweep(tmp_path, launch_until="00:00"))
    status = sw.run_trials(cfg, sw.expand_trials(cfg))
    assert set(status.values()) == {"not started"}


def test_the_records_of_a_results_table_read_back_as_written(tmp_path):
    """records_from_csv inverts sweep_results.csv (a seed gathered on another machine joins this one's trials)."""
    from hf_ptjf.sweep.gathering import records_from_csv, write_gathered, write_tables

    cfg = sw.load_sweep(write_sweep(tmp_path, methods=["scalarization", "ptjf"]))
    records = [{"trial": f"{m}-r0.3-s{seed}", "method": m, "base_method": m, "rate": 0.3, "lr": 0.002, "seed": seed,
                "first_stage_steps": 4 if m == "ptjf" else None, "total_steps": 8,
                "pretrain": f"pretrain-n4-s{seed}" if m == "ptjf" else None, "status": "complete", "wall_time_s": 12.5,
                "final": {"en-fr": 3.25 + seed, "en-ro": 4.5}, "final_ce": {"en-fr": 3.0, "en-ro": 4.25}, "best": {"en-fr": 3.0, "en-ro": 4.0},
                "bleu": {"en-fr": 1.5}, "chrf": {"en-fr": 10.25, "en-ro": 8.5}, "off_target": {"en-ro": 0.25},
                "examples_seen": {"en-fr": 96, "en-ro": 32}, "output_dir": f"/x/{m}-s{seed}", "recipe": {}, "history": []}
               for m in ("scalarization", "ptjf") for seed in (0, 1)]
    csv_path, _ = write_tables(cfg, records)
    assert records_from_csv(csv_path) == records
    write_gathered(dataclasses.replace(cfg, seeds=[0, 1], report_dir=str(tmp_path / "again")), records_from_csv(csv_path))
    assert (tmp_path / "again" / "sweep_results.csv").read_text() == csv_path.read_text()
    assert (tmp_path / "again" / "mean" / "report.md").exists()
