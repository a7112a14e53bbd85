"""Gather seed 0 (its committed sweep_results.csv: the trial folders were on another machine) with seed 1's
trials into one report: tables, summary.md, report.md + fronts, and the seed means (mean/).

    python docs/reproduction/online_fr_ro_n2000/combine_seeds.py SWEEP.yaml SEED0_sweep_results.csv OUT_DIR

SWEEP.yaml is recipes/configs/online_vs_ptjf.yaml with `seeds: [1]` (its trials finished under output_dir). The
seed-0 rows carry no histories, so the mean report's curves and "best at step" come from seed 1 alone.
"""
import dataclasses
import sys

from hf_ptjf.sweep.config import load_sweep
from hf_ptjf.sweep.gathering import records_from_csv, trial_records, write_gathered
from hf_ptjf.sweep.trials import expand_trials

sweep_yaml, csv0, out = sys.argv[1:4]
cfg = load_sweep(sweep_yaml)
old, new = records_from_csv(csv0), trial_records(cfg, expand_trials(cfg))
method_order = {r["trial"].rsplit("-s", 1)[0]: i for i, r in enumerate(old)}  # seed 0's table order, seeds together
records = sorted(old + new, key=lambda r: (method_order.get(r["trial"].rsplit("-s", 1)[0], len(old)), r["seed"]))
seeds = sorted({r["seed"] for r in records})
write_gathered(dataclasses.replace(cfg, seeds=seeds, report_dir=out), records)
print(len(old), "records from", csv0, "+", len(new), "trials ->", out)
