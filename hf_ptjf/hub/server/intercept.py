"""Outage drills: what the server does instead of handling a request, and the log of requests it saw.

``HubServer.intercept`` (a callable of method and path returning an :class:`Intercept`) fails, delays or
drops chosen requests; the test suite's fault queues (``tests/hub_faults.py``) plug in there.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Intercept", "RequestRecord"]


@dataclass
class Intercept:
    """What to do with a request instead of handling it: ``fail`` (answer ``status``), ``delay`` (stall
    ``seconds``, then handle it unless the client gave up) or ``drop`` (close the connection unanswered)."""

    kind: str
    status: int = 503
    seconds: float = 0.0


@dataclass
class RequestRecord:
    """One request seen by the server, logged on arrival; ``status`` is filled in when answered."""

    method: str
    path: str
    status: int | None = None  # stays None if dropped (or still in flight)
    fault: str | None = None  # "fail" | "delay" | "drop" if the request was intercepted
