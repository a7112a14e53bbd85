"""``python -m hf_ptjf.runner CONFIG [key=value ...]``: the recipe runner (what ``recipes/run.py`` runs)."""

import sys

from .cli import main

sys.exit(main())
