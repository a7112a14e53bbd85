"""``python -m hf_ptjf.cli COMMAND ...``: the ``hf-ptjf`` command."""

import sys

from . import main

sys.exit(main())
