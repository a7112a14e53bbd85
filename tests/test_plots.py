"""Plots write real PNGs; the report lists exactly each method's non-dominated trials."""

import math
import re

import pytest

from hf_ptjf.analysis.plots import plot_bleu_fronts, plot_efficiency, plot_fronts, plot_training_curves, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HR, LR = "en-fr", "en-ro"


def _history(hr, lr, rate, stages=("joint",)):
    """Five evals towards the final losses; counters and losses logged in separate entries."""
    out = []
    for i, step in enumerate(range(100, 600, 100)):
        stage = stages[min(i * len(stages) // 5, len(stages) - 1)]
        out.append({"step": step, "stage": stage, f"examples_seen_{LR}": int(step * 16 * rate)})
        out.append({"step": step, "stage": stage, f"eval_{HR}_loss": hr + 1 - i / 4, f"eval_{LR}_loss": lr + 1 - i / 4})
    return out


def _trial(name, method, rate, hr, lr, bleu=True, seed=0):
    return {
        "trial": name,
        "method": method,
        "rate": rate,
        "seed": seed,
        "lr": 2e-3,
        "final": {HR: hr, LR: lr},
        "best": {HR: hr - 0.01, LR: lr - 0.01},
        **({"bleu": {HR: 40 - 5 * hr, LR: 40 - 5 * lr}} if bleu else {}),
        "examples_seen": {HR: 60000, LR: int(16000 * rate)},
        "history": _history(hr, lr, rate, ("pretrain", "joint") if method == "ptjf" else ("joint",)),
    }


# per-method fronts (hand-checked): scalarization {s-a, s-b}, ptjf {p-a, p-b}, restart {r-a}, transfer {t-b}
TRIALS = [
    _trial("s-a", "scalarization", 0.1, 4.0, 6.0),
    _trial("s-b", "scalarization", 0.3, 4.5, 5.5),
    _trial("s-c", "scalarization", 0.5, 4.6, 5.8),  # dominated by s-b
    _trial("s-dup", "scalarization", 0.1, 4.0, 6.0, seed=1),  # duplicate of s-a: listed once
    _trial("p-a", "ptjf", 0.1, 3.9, 5.9),
    _trial("p-b", "ptjf", 0.3, 4.2, 5.4),
    _trial("p-c", "ptjf", 0.5, 4.3, 5.6),  # dominated by p-b
    _trial("r-a", "restart", 0.3, 4.8, 6.2),  # alone, so on its front despite other methods
    _trial("t-b", "transfer", 0.5, 4.1, 5.45, bleu=False),
    {"trial": "t-missing", "method": "transfer", "rate": 0.1, "final": {HR: 4.0}},  # no LR loss: skipped
    _trial("t-nan", "transfer", 0.3, math.nan, 5.0),  # diverged: skipped
]
EXPECTED_FRONT = {"s-a", "s-b", "p-a", "p-b", "r-a", "t-b"}


def _assert_png(path):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("metric", ["final", "best"])
def test_plot_fronts(tmp_path, metric):
    out = plot_fronts(TRIALS, HR, LR, tmp_path / "sub" / "fronts.png", metric=metric)
    assert out == tmp_path / "sub" / "fronts.png"
    _assert_png(out)


def test_plot_bleu_fronts(tmp_path):
    _assert_png(plot_bleu_fronts(TRIALS, HR, LR, str(tmp_path / "bleu.png")))
    with pytest.raises(ValueError, match="bleu"):
        plot_bleu_fronts([t for t in TRIALS if "bleu" not in t], HR, LR, tmp_path / "none.png")


def test_plot_efficiency(tmp_path):
    _assert_png(plot_efficiency(TRIALS, LR, tmp_path / "eff.png"))
    # in tokens (a sweep with size_unit: tokens) it reads target_tokens_seen_<lr>, which these trials do not log
    with pytest.raises(ValueError, match="target_tokens_seen_en-ro"):
        plot_efficiency(TRIALS, LR, tmp_path / "eff_tokens.png", unit="tokens")
    tokens = [{**t, "history": [{**h, f"target_tokens_seen_{LR}": 7 * h[f"examples_seen_{LR}"]}
                                if f"examples_seen_{LR}" in h else h for h in t.get("history", [])]} for t in TRIALS]
    _assert_png(plot_efficiency(tokens, LR, tmp_path / "eff_tokens.png", unit="tokens"))
    with pytest.raises(ValueError, match="characters_seen_en-ro"):
        plot_efficiency(TRIALS, LR, tmp_path / "eff_chars.png", unit="characters")
    chars = [{**t, "history": [{**h, f"characters_seen_{LR}": 90 * h[f"examples_seen_{LR}"]}
                               if f"examples_seen_{LR}" in h else h for h in t.get("history", [])]} for t in TRIALS]
    _assert_png(plot_efficiency(chars, LR, tmp_path / "eff_chars.png", unit="characters"))
    with pytest.raises(ValueError, match="`size_unit` must be one of"):
        plot_efficiency(TRIALS, LR, tmp_path / "eff_bytes.png", unit="bytes")
    with pytest.raises(ValueError, match="examples_seen_de-en"):
        plot_efficiency(TRIALS, "de-en", tmp_path / "eff2.png")


@pytest.mark.parametrize("method", [None, "ptjf"])
def test_plot_training_curves(tmp_path, method):
    _assert_png(plot_training_curves(TRIALS, LR, tmp_path / "curves.png", method=method))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: plot_fronts(TRIALS, HR, LR, p / "x.pdf"), "path"),
        (lambda p: plot_fronts([], HR, LR, p / "x.png"), "trials"),
        (lambda p: plot_fronts(TRIALS[0], HR, LR, p / "x.png"), "trials"),
        (lambda p: plot_fronts(TRIALS, HR, HR, p / "x.png"), "lr_task"),
        (lambda p: plot_fronts(TRIALS, HR, LR, p / "x.png", metric="last"), "metric"),
        (lambda p: plot_fronts([{"final": {}}], HR, LR, p / "x.png"), r"trials\[0\]"),
        (lambda p: plot_training_curves(TRIALS, LR, p / "x.png", method="nope"), "method"),
        (lambda p: plot_training_curves(TRIALS, "de-en", p / "x.png"), "task"),
    ],
)
def test_bad_input_raises(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)


def _table_rows(report, heading):
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]  # drop header + rule


def test_write_report_lists_exactly_the_front(tmp_path):
    report_path = write_report(TRIALS, HR, LR, tmp_path / "report")
    assert report_path == tmp_path / "report" / "report.md"
    report = report_path.read_text()

    rows = _table_rows(report, "## Pareto fronts")
    assert {r[1] for r in rows} == EXPECTED_FRONT and len(rows) == len(EXPECTED_FRONT)
    by_name = {r[1]: r for r in rows}
    assert by_name["p-b"] == ["ptjf", "p-b", "0.3", "4.2000", "5.4000"]
    # within a method, sorted by high-resource loss
    assert [r[1] for r in rows if r[0] == "scalarization"] == ["s-a", "s-b"]

    # reference = worst + 10% of range: HR 4.8 + 0.09 = 4.89, LR 6.2 + 0.08 = 6.28
    assert "(4.8900, 6.2800)" in report
    hv = {r[0]: float(r[3]) for r in _table_rows(report, "## Hypervolume")}
    # ptjf front {(3.9, 5.9), (4.2, 5.4)}: 0.99*0.38 + 0.69*0.5 = 0.7212
    assert hv["ptjf"] == pytest.approx(0.7212, abs=1e-4)
    assert hv["restart"] == pytest.approx(0.09 * 0.08, abs=1e-4)
    assert "2 skipped" in report

    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) == 5
    for name in images:
        _assert_png(report_path.parent / name)


def test_report_measures_figure_3_the_low_resource_data_each_method_needed(tmp_path):
    def trial(method, rate, losses, seen):
        history = [{"step": 100 * (i + 1), f"examples_seen_{LR}": x, f"eval_{LR}_loss": y, f"eval_{HR}_loss": 4.0}
                   for i, (x, y) in enumerate(zip(seen, losses))]
        return {"trial": f"{method}-{rate}", "method": method, "rate": rate, "history": history,
                "final": {HR: 4.0, LR: losses[-1]}}

    trials = [trial("scalarization", 0.1, [6.0, 5.5, 5.2, 5.3], [100, 200, 300, 400]),  # best 5.2, overfits
              trial("scalarization", 0.3, [6.5, 6.0, 5.8, 5.7], [300, 600, 900, 1200]),  # not its best trial
              trial("ptjf", 0.3, [5.8, 5.4, 5.15, 5.1], [50, 80, 120, 150])]
    report = write_report(trials, HR, LR, tmp_path).read_text()
    rows = _table_rows(report, "## Low-resource data efficiency")
    # levels from the lowest: PTJF's best (static never got there), then static's best (PTJF: 120 of static's 300)
    assert rows == [["5.1000", "ptjf", "never", "150", "-"], ["5.2000", "scalarization", "300", "120", "0.40"]]
    assert "scalarization (rate 0.1)" in report and "ptjf (rate 0.3)" in report


def test_write_report_notes_skipped_figures(tmp_path):
    no_extras = [{k: v for k, v in t.items() if k not in ("bleu", "history")} for t in TRIALS]
    report = write_report(no_extras, HR, LR, tmp_path).read_text()
    assert report.count("_Skipped:") == 4  # bleu, efficiency, two curve plots
    assert {r[1] for r in _table_rows(report, "## Pareto fronts")} == EXPECTED_FRONT


def test_seed_means_show_their_spread_in_the_fronts_and_the_front_table(tmp_path):
    from hf_ptjf.sweep import seed_means

    seeds = [_trial("s0", "scalarization", 0.1, 4.0, 6.0, seed=0), _trial("s1", "scalarization", 0.1, 4.2, 5.8, seed=1),
             _trial("p0", "ptjf", 0.3, 4.3, 5.9, seed=0), _trial("p1", "ptjf", 0.3, 4.5, 6.3, seed=1),
             _trial("r0", "restart", 0.1, 4.6, 5.7, seed=0)]
    means = seed_means(seeds)
    report = write_report(means, HR, LR, tmp_path / "mean").read_text()
    rows = {r[0]: r for r in _table_rows(report, "## Pareto fronts")}
    assert rows["scalarization"] == ["scalarization", "scalarization-r0.1 (mean of 2)", "0.1", "4.1000", "5.9000",
                                     "4.0000-4.2000 / 5.8000-6.0000"]
    assert rows["ptjf"][3:] == ["4.4000", "6.1000", "4.3000-4.5000 / 5.9000-6.3000"]
    assert rows["restart"][3:] == ["4.6000", "5.7000", "- / -"]  # one seed: no spread
    # the figure draws the spread: the same means without their ranges give a different image
    bare = [{k: v for k, v in m.items() if k != "final_range"} for m in means]
    with_bars, without = plot_fronts(means, HR, LR, tmp_path / "a.png"), plot_fronts(bare, HR, LR, tmp_path / "b.png")
    assert with_bars.read_bytes() != without.read_bytes()
    # a single-seed report has no spread column
    assert len(_table_rows(write_report(seeds, HR, LR, tmp_path / "all").read_text(), "## Pareto fronts")[0]) == 5
