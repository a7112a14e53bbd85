"""Deprecated: the ZeRO-3 memory planner moved to :mod:`hf_ptjf.memory` (its command line to :mod:`hf_ptjf.cli.plan`).

This alias keeps ``import hf_ptjf.analysis.plan`` and ``python -m hf_ptjf.analysis.plan`` working, with a
``DeprecationWarning``.
"""

import sys
import warnings

from ..cli.plan import main
from ..memory import *  # noqa: F401,F403 - the names this module had
from ..memory import __all__ as _moved

warnings.warn("`hf_ptjf.analysis.plan` is deprecated: the memory planner is `hf_ptjf.memory` now (and its command "
              "line `hf-ptjf plan`, `hf_ptjf.cli.plan`).", DeprecationWarning,
              stacklevel=1 if __name__ == "__main__" else 2)  # run with -m: shown as __main__'s own warning

__all__ = [*_moved, "main"]

if __name__ == "__main__":
    sys.exit(main(prog="python -m hf_ptjf.analysis.plan"))
