"""Run a recipe: ``accelerate launch --config_file accelerate_configs/<X>.yaml recipes/run.py CONFIG [key=value ...]``.

See ``hf_ptjf.recipe`` for the config format and ``recipes/configs/`` for examples.
"""

import sys

from hf_ptjf.cli import main

if __name__ == "__main__":
    sys.exit(main())
