"""Failing together: under several processes, an error one rank meets stops every rank, reported once.

Without this, a rank that raises (say, on a bad data file while the main process builds the caches) leaves
the others in a barrier until gloo or NCCL tears the group down with a traceback of its own on every rank.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch.distributed as dist

from ..recipe import RecipeError

__all__ = ["PeerFailed", "main_process_first"]

T = TypeVar("T")


class PeerFailed(RecipeError):
    """Another rank failed; the main process reports its error, this rank stops without a line of its own."""


def main_process_first(state: Any, work: Callable[[], T]) -> T:
    """``work()`` on the main process, then on the others (so the main one builds shared caches); an exception on
    any rank is raised on every rank after each round: the failing rank re-raises its own, the others
    :class:`PeerFailed` with its message. A shared error carries ``shared = True``: the main process prints it."""
    if state.num_processes == 1:
        return work()
    result: Any = None
    for turn in (True, False):
        error = None
        if state.is_main_process == turn:
            try:
                result = work()
            except Exception as e:  # noqa: BLE001 - shared below, then re-raised
                error = e
        _agree(state, error)
    return result


def _agree(state: Any, error: BaseException | None) -> None:
    messages: list[Any] = [None] * state.num_processes
    dist.all_gather_object(messages, None if error is None else f"{error}")
    if error is not None:
        error.shared = True  # type: ignore[attr-defined]
        raise error
    failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
    if failed:
        rank, message = failed[0]
        peer = PeerFailed(message if rank == 0 else f"(rank {rank}) {message}")
        peer.shared = True  # type: ignore[attr-defined]
        raise peer
