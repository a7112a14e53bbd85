"""``hf-ptjf hub --root DIR [--port N]``: the offline Hub-compatible server, serving until interrupted: what
``python -m hf_ptjf.hub.server`` starts, with the server's own options (:func:`hf_ptjf.hub.server.main`)."""

from __future__ import annotations

import sys
from typing import Sequence

from ..hub import server
from .policy import report_user_errors

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, prog: str = "python -m hf_ptjf.hub.server") -> int:
    """Start the server with ``argv`` (``--root DIR [--host H] [--port N] [--require-token-env VAR]``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return report_user_errors(lambda: server.main(argv, prog=prog))
