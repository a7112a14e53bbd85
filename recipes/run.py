"""Run a recipe: ``accelerate launch --config_file accelerate_configs/<X>.yaml recipes/run.py CONFIG [key=value ...]``.

The same as ``hf-ptjf run CONFIG [key=value ...]`` (:mod:`hf_ptjf.cli.run`). See ``hf_ptjf.recipe`` for the config
format and ``recipes/configs/`` for examples.
"""

import sys
from pathlib import Path

# The package of the checkout this script is in comes first (where there is one): the script runs its own
# checkout's code even when another copy of hf_ptjf is installed, as the sweep's trials do (their PYTHONPATH).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_ptjf.cli.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
