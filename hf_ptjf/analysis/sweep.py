"""Deprecated: the sweep orchestrator moved to :mod:`hf_ptjf.sweep` (its command line to :mod:`hf_ptjf.cli.sweep`).

This alias keeps ``import hf_ptjf.analysis.sweep`` and its names working, with a ``DeprecationWarning``.
"""

import warnings

from ..cli.sweep import main
from ..runner.results import cumulative_counts
from ..sweep import *  # noqa: F401,F403 - the names this module had
from ..sweep import __all__ as _moved

warnings.warn("`hf_ptjf.analysis.sweep` is deprecated: the sweep orchestrator is `hf_ptjf.sweep` now (and its command "
              "line `hf-ptjf sweep`, `hf_ptjf.cli.sweep`).", DeprecationWarning, stacklevel=2)

__all__ = [*_moved, "cumulative_counts", "main"]
