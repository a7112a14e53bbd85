"""How every ``hf-ptjf`` command reports: the one error policy, and the log format.

A user error (:class:`hf_ptjf.errors.UserError`, a :class:`~hf_ptjf.hub.HubError`, or a ``ValueError``,
``FileNotFoundError`` or ``PermissionError`` raised on the way) is one ``error: <message>`` line on stderr and exit
status :data:`~hf_ptjf.errors.EXIT_USER_ERROR` (2); anything else is a bug and keeps its traceback. With
``HF_PTJF_DEBUG=1`` every error keeps its traceback. Under a multi-process launch a rank other than the main one
names itself (``error (rank 1): ...``), and an error every rank meets alike (marked ``shared = True``, as
:mod:`hf_ptjf.runner.ranks` does) is printed by the main process alone.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from ..errors import EXIT_USER_ERROR, UserError
from ..hub import HubError

__all__ = ["USER_ERRORS", "configure_logging", "debug_mode", "is_main_process", "is_user_error", "one_line",
           "report_user_errors"]

USER_ERRORS = (UserError, HubError, ValueError, FileNotFoundError, PermissionError)
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's to fix (one line), not a bug (a traceback)."""
    return isinstance(error, USER_ERRORS)


def debug_mode() -> bool:
    """``HF_PTJF_DEBUG`` is set (and not ``0``): errors keep their tracebacks."""
    return os.environ.get("HF_PTJF_DEBUG", "") not in ("", "0")


def is_main_process() -> bool:
    """Rank 0 of a launch, or a process that is not one of several ranks."""
    return os.environ.get("RANK", "0") == "0"


def one_line(error: BaseException) -> str:
    """The error's own message; one re-raised from a DataLoader worker ("Caught X in DataLoader worker process 0",
    then the worker's traceback) is reduced to the worker's last line, without the exception's name."""
    text = str(error)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def report_user_errors(command: Callable[[], int]) -> int:
    """Run ``command`` (returns an exit status) under the error policy: a user error becomes one ``error:`` line on
    stderr and :data:`~hf_ptjf.errors.EXIT_USER_ERROR`; other errors, and every error in debug mode, propagate."""
    try:
        return command()
    except Exception as error:
        if debug_mode() or not is_user_error(error):
            raise
        if is_main_process() or not getattr(error, "shared", False):  # shared: the main process reports it
            rank = "" if is_main_process() else f" (rank {os.environ.get('RANK')})"
            print(f"error{rank}: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR


def configure_logging() -> None:
    """INFO lines with time, level and logger name, as every long-running command logs them."""
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
