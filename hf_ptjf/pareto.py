"""Deprecated: the Pareto fronts and hypervolume, once ``hf_ptjf.pareto``, are :mod:`hf_ptjf.analysis.pareto`.

This alias keeps ``import hf_ptjf.pareto`` working, with a ``DeprecationWarning``.
"""

import warnings

from .analysis.pareto import *  # noqa: F401,F403 - the names this module had
from .analysis.pareto import __all__ as _moved

warnings.warn("`hf_ptjf.pareto` is deprecated: import `hf_ptjf.analysis.pareto` instead.", DeprecationWarning,
              stacklevel=2)

__all__ = list(_moved)
