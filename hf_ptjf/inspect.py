"""Deprecated: the applicability check, once ``hf_ptjf.inspect``, is :mod:`hf_ptjf.analysis.inspect` (command line:
:mod:`hf_ptjf.cli.inspect`).

This alias keeps ``import hf_ptjf.inspect`` and ``python -m hf_ptjf.inspect`` working, with a ``DeprecationWarning``.
"""

import sys
import warnings

from .analysis.inspect import *  # noqa: F401,F403 - the names this module had
from .analysis.inspect import __all__ as _moved
from .cli.inspect import main

warnings.warn("`hf_ptjf.inspect` is deprecated: the applicability check is `hf_ptjf.analysis.inspect` now (and its "
              "command line `hf-ptjf inspect`, `hf_ptjf.cli.inspect`).", DeprecationWarning,
              stacklevel=1 if __name__ == "__main__" else 2)  # run with -m: shown as __main__'s own warning

__all__ = list(_moved)

if __name__ == "__main__":
    sys.exit(main(prog="python -m hf_ptjf.inspect"))
