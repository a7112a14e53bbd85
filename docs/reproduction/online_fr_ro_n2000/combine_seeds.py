"""Gather seed 0 (its committed sweep_results.csv: the trial folders were on another machine) with seed 1's
trials into one report: tables, summary.md, report.md + fronts, and the seed means (mean/).

    python docs/reproduction/online_fr_ro_n2000/combine_seeds.py SWEEP.yaml SEED0_sweep_results.csv OUT_DIR

SWEEP.yaml is recipes/configs/online_vs_ptjf.yaml with `seeds: [1]` (its trials finished under output_dir). The
seed-0 rows carry no histories, so the mean report's curves and "best at step" come from seed 1 alone.
"""
import csv, sys
from pathlib import Path
from hf_ptjf.sweep.config import load_sweep
from hf_ptjf.sweep.trials import expand_trials
from hf_ptjf.sweep import gathering as g
from hf_ptjf.analysis.plots import write_report

sweep_yaml, csv0, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cfg = load_sweep(sweep_yaml)
cfg.report_dir = str(out)
num = lambda v: None if v in ("", None) else float(v)
old = []
for row in csv.DictReader(open(csv0)):
    tasks = [k[len("final_"):] for k in row if k.startswith("final_") and not k.startswith("final_ce_")]
    per = lambda key: {t: num(row[f"{key}_{t}"]) for t in tasks if num(row[f"{key}_{t}"]) is not None}
    old.append({"trial": row["trial"], "method": row["method"], "base_method": row["base_method"],
                "rate": num(row["rate"]), "seed": int(row["seed"]), "lr": num(row["lr"]),
                "first_stage_steps": int(row["first_stage_steps"]) if row["first_stage_steps"] else None,
                "total_steps": int(row["total_steps"]), "pretrain": row["pretrain"] or None,
                "status": row["status"], "wall_time_s": num(row["wall_time_s"]),
                "final": per("final"), "final_ce": per("final_ce"), "best": per("best"), "bleu": per("bleu"),
                "chrf": per("chrf"), "off_target": per("off_target"),
                "examples_seen": {t: int(v) for t, v in per("examples_seen").items()},
                "output_dir": row["output_dir"], "recipe": {}, "history": []})
new = g.trial_records(cfg, expand_trials(cfg))
order = {r["trial"].rsplit("-s", 1)[0]: i for i, r in enumerate(old)}
records = sorted(old + new, key=lambda r: (order.get(r["trial"].rsplit("-s", 1)[0], 99), r["seed"]))
g.write_tables(cfg, records)
(out / "summary.md").write_text(g.summary_markdown(cfg, records))
write_report(records, cfg.hr_task, cfg.lr_task, out, cfg.size_unit)
write_report(g.seed_means(records), cfg.hr_task, cfg.lr_task, out / "mean", cfg.size_unit)
print(len(old), "seed-0 records +", len(new), "new ->", out)
