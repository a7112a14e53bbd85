"""`RateSchedule`: piecewise-constant rates over the positions of a mixture's stream, counter-based like the rest.

Segment ``k`` draws the tasks of positions ``[starts[k], starts[k + 1])`` from its own rates, through a
:class:`~hf_ptjf.mixture.sequence.TaskSequence` read at the positions local to the segment. The first segment uses the
mixture's seed at the global positions, so a one-segment schedule is exactly today's task sequence (bit for bit);
later segments get a seed derived from (seed, segment). A strategy that changes the rates while training (an online
one) appends a segment at a position the DataLoader has not drawn yet and forgets the segments behind the data's
position: the schedule is a few numbers in a checkpoint, and any position's task and the counts before it stay O(1) to
compute.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .sequence import BLOCK, TaskSequence

__all__ = ["RateSchedule"]


class RateSchedule:
    """Which rates hold from which position on (see the module docstring).

    Only the segments from the one holding the oldest position still to be read are kept (:meth:`forget_before`),
    with the task counts before them: the state stays a few numbers however long the stage, and a resume is O(1).
    """

    def __init__(self, probabilities: Sequence[float], seed: int = 0) -> None:
        self.seed = int(seed)
        self.initial = np.asarray(probabilities, dtype=np.float64)  # the rates the stream started with
        self.first_index = 0  # the number of segments forgotten before `segments[0]` (it keys their seeds)
        self.base_counts = np.zeros(self.initial.size, dtype=np.int64)  # task counts before `starts[0]`
        self.starts: list[int] = [0]
        self.segments: list[TaskSequence] = [TaskSequence(self.initial, self.seed)]

    @property
    def probabilities(self) -> np.ndarray:
        """The rates the stream started with (its first segment's)."""
        return self.initial

    @property
    def num_tasks(self) -> int:
        return self.initial.size

    @property
    def changed(self) -> bool:
        """Did the rates change after the first segment?"""
        return self.first_index > 0 or len(self.starts) > 1

    def rates_at(self, position: int) -> np.ndarray:
        """The rates that draw the task of ``position``."""
        return self.segments[self._segment(position)].probabilities

    def append(self, position: int, probabilities: Sequence[float]) -> None:
        """From ``position`` on, draw with ``probabilities`` (after every position already scheduled)."""
        if position <= self.starts[-1]:
            raise ValueError(f"a new segment must start after the last one (at {self.starts[-1]}), got {position}.")
        rates = np.asarray(probabilities, dtype=np.float64)
        if rates.shape != self.initial.shape:
            raise ValueError(f"the new rates have {rates.size} entries for {self.num_tasks} tasks.")
        self.starts.append(int(position))
        self.segments.append(self._sequence(self.first_index + len(self.segments), rates))

    def forget_before(self, position: int) -> None:
        """Drop the segments that end at or before ``position`` (no position before it will be read again)."""
        while len(self.starts) > 1 and self.starts[1] <= position:
            self.base_counts = self.base_counts + _counts(self.segments[0], self.starts[1] - self.starts[0])
            del self.starts[0], self.segments[0]
            self.first_index += 1

    def labels(self, start: int, stop: int) -> np.ndarray:
        """The task of every position in ``[start, stop)``."""
        self._check_kept(start)
        parts = []
        for k in range(self._segment(start), len(self.starts)):
            lo, hi = max(start, self.starts[k]), min(stop, self._end(k))
            if lo >= hi:
                break
            parts.append(self.segments[k].labels(lo - self.starts[k], hi - self.starts[k]))
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def counts_before(self, position: int) -> np.ndarray:
        """How many of the positions before ``position`` belong to each task (exact)."""
        self._check_kept(position)
        counts = self.base_counts.copy()
        for k in range(self._segment(position) + 1):
            local = min(position, self._end(k)) - self.starts[k]
            counts += _counts(self.segments[k], local)
        return counts

    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """The schedule from the segment holding ``position`` (default: the oldest kept) on, for a checkpoint."""
        k = self._segment(position) if position is not None else 0
        return {"initial": self.initial.tolist(), "first_index": self.first_index + k,
                "counts": self.counts_before(self.starts[k]).tolist(),
                "segments": [[start, seq.probabilities.tolist()] for start, seq in zip(self.starts[k:], self.segments[k:])]}

    def checkpoint(self, position: int) -> dict[str, Any]:
        """``{"schedule": state}`` for a checkpoint at ``position`` where the rates changed, else nothing (a
        fixed-rate checkpoint stays as it was)."""
        return {"schedule": self.state_dict(position)} if self.changed else {}

    def load_state_dict(self, state: Mapping[str, Any] | Sequence[Sequence[Any]]) -> None:
        """Continue a checkpoint's schedule (it must have started from this one's rates)."""
        if not isinstance(state, Mapping):  # (the first format: every segment from position 0)
            state = {"initial": state[0][1], "first_index": 0, "counts": [0] * self.num_tasks, "segments": state}
        if not np.allclose(state["initial"], self.initial, rtol=0, atol=1e-12):
            raise ValueError(f"cannot resume: the checkpoint's first rates {state['initial']} differ from this run's "
                             f"{self.initial.tolist()}. Resume with the same rates, or start a new output directory.")
        self.first_index = int(state["first_index"])
        self.base_counts = np.asarray(state["counts"], dtype=np.int64)
        self.starts = [int(start) for start, _ in state["segments"]]
        self.segments = [self._sequence(self.first_index + i, rates) for i, (_, rates) in enumerate(state["segments"])]

    def _sequence(self, index: int, rates: Sequence[float]) -> TaskSequence:
        """Segment ``index``'s task sequence: the mixture's seed for the first (today's stream), derived ones after."""
        if index == 0:
            return TaskSequence(rates, self.seed)
        return TaskSequence(rates, int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0]))

    def _check_kept(self, position: int) -> None:
        if position < self.starts[0]:
            raise ValueError(f"position {position} is before the schedule's oldest kept segment (at {self.starts[0]}).")

    def _segment(self, position: int) -> int:
        return max(0, int(np.searchsorted(self.starts, position, side="right")) - 1)

    def _end(self, k: int) -> int:
        return self.starts[k + 1] if k + 1 < len(self.starts) else 2**62


def _counts(sequence: TaskSequence, position: int) -> np.ndarray:
    """``sequence``'s task counts before (local) ``position``: whole blocks from the tree, the rest counted."""
    block, within = divmod(int(position), BLOCK)
    counts = sequence.counts_before_block(block)
    if within:
        counts = counts + np.bincount(sequence.block_labels(block, block + 1)[:within], minlength=sequence.num_tasks)
    return counts
