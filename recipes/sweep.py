"""Run a sampling-rate sweep: ``python recipes/sweep.py SWEEP_CONFIG [key=value ...] [--gather-only] [--list]``.

The same as ``hf-ptjf sweep SWEEP_CONFIG ...`` (:mod:`hf_ptjf.cli.sweep`). Trials (one recipe each) run as
subprocesses, ``parallel`` at a time with ``threads`` torch threads each; a rerun skips finished trials. Results:
``<output_dir>/sweep_results.{csv,json}``, ``report.md`` and PNGs. See ``hf_ptjf.sweep.config`` for the config
format and ``recipes/configs/repro_*.yaml`` for examples.
"""

import sys
from pathlib import Path

# The package of the checkout this script is in comes first (where there is one): the script runs its own
# checkout's code even when another copy of hf_ptjf is installed, as the sweep's trials do (their PYTHONPATH).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_ptjf.cli.sweep import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
