"""Fault injection for the offline Hub server (tests only): queues of failures, delays and dropped connections.

``server = FaultyHubServer(root)`` is a :class:`hf_ptjf.hub.HubServer` whose ``faults`` queue plugs into the
server's ``intercept`` hook: ``server.faults.fail_next(2, status=503, path_contains="/commit/")``,
``server.faults.delay_next(1, seconds=2)``, ``server.faults.drop_next(1)``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

from hf_ptjf.hub import HubServer, Intercept


@dataclass
class _Rule:
    intercept: Intercept
    remaining: int
    methods: tuple[str, ...] | None
    path_contains: str | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.methods is None or method in self.methods)
            and (self.path_contains is None or self.path_contains in path)
        )


class Faults:
    """Queue of injected faults; each applies to the next ``n`` matching requests, in FIFO order."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.triggered = 0

    def _add(self, intercept: Intercept, n: int, methods: Sequence[str] | str | None, path_contains: str | None) -> None:
        if methods is not None:
            methods = (methods.upper(),) if isinstance(methods, str) else tuple(m.upper() for m in methods)
        with self._lock:
            self._rules.append(_Rule(intercept, n, methods, path_contains))

    def fail_next(self, n: int = 1, status: int = 503, *, methods: Sequence[str] | str | None = None,
                  path_contains: str | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status`` (JSON error body) without handling them."""
        self._add(Intercept("fail", status=status), n, methods, path_contains)

    def delay_next(self, n: int = 1, seconds: float = 1.0, *, methods: Sequence[str] | str | None = None,
                   path_contains: str | None = None) -> None:
        """Stall the next ``n`` matching requests for ``seconds``; a request whose client gave up is dropped (499)."""
        self._add(Intercept("delay", seconds=seconds), n, methods, path_contains)

    def drop_next(self, n: int = 1, *, methods: Sequence[str] | str | None = None, path_contains: str | None = None) -> None:
        """Close the connection of the next ``n`` matching requests without answering."""
        self._add(Intercept("drop"), n, methods, path_contains)

    @property
    def pending(self) -> int:
        """How many injected faults have not fired yet."""
        with self._lock:
            return sum(r.remaining for r in self._rules)

    def take(self, method: str, path: str) -> Intercept | None:
        """The server's ``intercept`` hook: the first matching rule fires once."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    self.triggered += 1
                    return rule.intercept
            return None


class FaultyHubServer(HubServer):
    """An offline Hub server with a fault queue (``server.faults``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.faults = Faults()
        self.intercept = self.faults.take
