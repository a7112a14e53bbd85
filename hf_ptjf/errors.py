"""The user-error base class: a mistake in what the user gave (a recipe, a flag, a file, a checkpoint).

Every tool reports one as a single ``error: ...`` line and exit status :data:`EXIT_USER_ERROR` (the one error
policy, :mod:`hf_ptjf.cli`); its message names the field and the fix. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["EXIT_USER_ERROR", "UserError"]

EXIT_USER_ERROR = 2


class UserError(ValueError):
    """Bad input; the message names the field and the fix. (A ``ValueError`` so callers that caught those still do.)"""
