"""Deprecated: the memory planner, once ``hf_ptjf.plan``, is :mod:`hf_ptjf.memory` (command line:
:mod:`hf_ptjf.cli.plan`; the plan of a mixture is :func:`hf_ptjf.mixture.plan`).

This alias keeps ``import hf_ptjf.plan`` and ``python -m hf_ptjf.plan`` working, with a ``DeprecationWarning``.
"""

import sys
import warnings

from .cli.plan import main
from .memory import *  # noqa: F401,F403 - the names this module had
from .memory import __all__ as _moved

warnings.warn("`hf_ptjf.plan` is deprecated: the memory planner is `hf_ptjf.memory` now (and its command line "
              "`hf-ptjf plan`, `hf_ptjf.cli.plan`).", DeprecationWarning,
              stacklevel=1 if __name__ == "__main__" else 2)  # run with -m: shown as __main__'s own warning

__all__ = [*_moved, "main"]

if __name__ == "__main__":
    sys.exit(main(prog="python -m hf_ptjf.plan"))
