"""Run a recipe: ``accelerate launch --config_file accelerate_configs/<X>.yaml recipes/run.py CONFIG [key=value ...]``.

The same as ``hf-ptjf run CONFIG [key=value ...]`` (:mod:`hf_ptjf.cli.run`). See ``hf_ptjf.recipe`` for the config
format and ``recipes/configs/`` for examples.
"""

import sys
from pathlib import Path

try:
    from hf_ptjf.cli.run import main
except ModuleNotFoundError:  # a checkout without `pip install -e .`: use the package next to this script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_ptjf.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
