"""``python -m hf_ptjf COMMAND ...``: the ``hf-ptjf`` command (:mod:`hf_ptjf.cli`)."""

import sys

from .cli import main

sys.exit(main())
