"""Comparing finished runs per task (the paper's Figs. 7-8): seed means and spreads, bars, loss vs tokens."""

import json

import pytest

from hf_ptjf.analysis.compare import compare_table, load_runs
from hf_ptjf.cli.compare import main


def fake_run(path, method, seed, finals, complete=True):
    """A results.json as the runner writes it: two stages, evaluations with cumulative counts per stage."""
    path.mkdir(parents=True)
    history = [
        {"stage": "a", "step": 10, "eval_en_loss": 5.0, "eval_sw_loss": 6.0, "target_tokens_seen_en": 100},
        {"stage": "b", "step": 20, "eval_en_loss": finals["en"], "eval_sw_loss": finals["sw"] - 0.1,
         "target_tokens_seen_en": 50, "target_tokens_seen_sw": 40},
    ]
    stages = [{"name": "a", "wall_time_s": 3.0, "examples_seen": {"en": 10}, "target_tokens_seen": {"en": 100}},
              {"name": "b", "wall_time_s": 2.0, "examples_seen": {"en": 5, "sw": 4},
               "target_tokens_seen": {"en": 50, "sw": 40}}]
    tasks = {t: {"final_loss": v, "best_loss": v - (0.1 if t == "sw" else 0.0), "target_tokens_seen": 150 if t == "en" else 40}
             for t, v in finals.items()}
    results = {"method": method, "run_name": f"{method}-{seed}", "complete": complete, "total_steps": 20,
               "tasks": tasks, "stages": stages, "history": history}
    (path / "results.json").write_text(json.dumps(results))
    (path / "recipe.resolved.json").write_text(json.dumps({"seed": seed}))
    return path


def test_table_pools_seeds_per_method_and_plots_are_written(tmp_path):
    dirs = [fake_run(tmp_path / "p0", "ptjf", 0, {"en": 4.0, "sw": 5.0}),
            fake_run(tmp_path / "p1", "ptjf", 1, {"en": 4.2, "sw": 5.4}),
            fake_run(tmp_path / "s0", "scalarization", 0, {"en": 3.9, "sw": 5.8})]
    table = compare_table(load_runs(dirs))
    assert "| sw | ptjf | 2 | 5.200 (5.000-5.400) | 5.100 (4.900-5.300) | 20, 20 | 40 |" in table
    assert "| en | scalarization | 1 | 3.900 | 3.900 | 20 | 150 |" in table
    assert "| ptjf | 1 | 20 | 5 |" in table  # wall time: both stages
    assert main([str(tmp_path / "out"), *map(str, dirs)]) == 0
    for name in ("compare.md", "bars.png", "curves_en.png", "curves_sw.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_unfinished_or_missing_runs_are_refused(tmp_path, capsys):
    assert main([str(tmp_path / "out"), "--label", "run_name", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no results.json" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="no results.json"):
        load_runs([tmp_path / "nothing"])
    run = fake_run(tmp_path / "half", "ptjf", 0, {"en": 4.0, "sw": 5.0}, complete=False)
    with pytest.raises(ValueError, match="has not finished"):
        load_runs([run])


def test_table_gives_bleu_chrf_and_the_off_target_rate_beside_the_losses(tmp_path):
    dirs = [fake_run(tmp_path / "p0", "ptjf", 0, {"en": 4.0, "sw": 5.0}),
            fake_run(tmp_path / "p1", "ptjf", 1, {"en": 4.2, "sw": 5.4}),
            fake_run(tmp_path / "s0", "scalarization", 0, {"en": 3.9, "sw": 5.8})]
    generated = {"p0": (10.0, 30.0, 0.25), "p1": (12.0, 34.0, 0.75), "s0": (8.0, 28.0, None)}
    for d in dirs:
        results = json.loads((d / "results.json").read_text())
        bleu, chrf, off = generated[d.name]
        results["tasks"]["sw"].update(bleu=bleu, chrf=chrf, off_target=off)
        if off is None:  # a target the detector does not know: a note instead of the rate
            results["tasks"]["sw"]["off_target_note"] = "not measured: ..."
        (d / "results.json").write_text(json.dumps(results))
    table = compare_table(load_runs(dirs))
    assert "| sw | ptjf | 2 | 5.200 (5.000-5.400) | 5.100 (4.900-5.300) | 20, 20 | 40 | 11.000 (10.000-12.000) | " \
           "32.000 (30.000-34.000) | 0.500 (0.250-0.750) |" in table
    assert "| sw | scalarization | 1 | 5.800 | 5.700 | 20 | 40 | 8.000 | 28.000 | n/a (target language unknown to " \
           "the detector) |" in table
    assert "| en | ptjf | 2 | 4.100 (4.000-4.200) | 4.100 (4.000-4.200) | 20, 20 | 150 | - | - | - |" in table
