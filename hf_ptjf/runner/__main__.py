"""``python -m hf_ptjf.runner CONFIG [key=value ...]``: ``hf-ptjf run`` (what ``recipes/run.py`` runs, and what every
rank runs under ``--launch``)."""

import sys

from ..cli.run import main

sys.exit(main(prog="python -m hf_ptjf.runner"))
