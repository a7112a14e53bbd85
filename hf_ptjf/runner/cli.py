"""Deprecated: the recipe runner's command line moved to :mod:`hf_ptjf.cli.run` (``hf-ptjf run``), and its error
handling to the one error policy, :mod:`hf_ptjf.cli.policy`.

This alias keeps ``from hf_ptjf.runner.cli import main`` working, with a ``DeprecationWarning``;
``python -m hf_ptjf.runner`` and ``recipes/run.py`` run :func:`hf_ptjf.cli.run.main` directly.
"""

import warnings

from ..cli.policy import one_line as _one_line  # noqa: F401 - its old private name, which callers imported
from ..cli.run import main
from ..errors import EXIT_USER_ERROR as EXIT_BAD_INPUT

warnings.warn("`hf_ptjf.runner.cli` is deprecated: the runner's command line is `hf_ptjf.cli.run` (`hf-ptjf run`).",
              DeprecationWarning, stacklevel=2)

__all__ = ["EXIT_BAD_INPUT", "main"]
