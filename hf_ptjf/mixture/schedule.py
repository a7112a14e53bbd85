"""`RateSchedule`: piecewise-constant rates over the positions of a mixture's stream, counter-based like the rest.

Segment ``k`` draws the tasks of positions ``[starts[k], starts[k + 1])`` from its own rates, through a
:class:`~hf_ptjf.mixture.sequence.TaskSequence` read at the positions local to the segment. The first segment uses the
mixture's seed at the global positions, so a one-segment schedule is exactly today's task sequence (bit for bit);
later segments get a seed derived from (seed, segment). A strategy that changes the rates while training (an online
one) appends a segment at a position the DataLoader has not drawn yet; the schedule is a few numbers in a checkpoint,
and any position's task and the counts before it stay O(1) to compute.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .sequence import BLOCK, TaskSequence

__all__ = ["RateSchedule"]


class RateSchedule:
    """Which rates hold from which position on (see the module docstring)."""

    def __init__(self, probabilities: Sequence[float], seed: int = 0) -> None:
        self.seed = int(seed)
        self.starts: list[int] = [0]
        self.segments: list[TaskSequence] = [TaskSequence(probabilities, self.seed)]

    @property
    def probabilities(self) -> np.ndarray:
        """The rates of the first segment (what the mixture started with)."""
        return self.segments[0].probabilities

    @property
    def num_tasks(self) -> int:
        return self.segments[0].num_tasks

    def rates_at(self, position: int) -> np.ndarray:
        """The rates that draw the task of ``position``."""
        return self.segments[self._segment(position)].probabilities

    def append(self, position: int, probabilities: Sequence[float]) -> None:
        """From ``position`` on, draw with ``probabilities`` (after every position already scheduled)."""
        if position <= self.starts[-1]:
            raise ValueError(f"a new segment must start after the last one (at {self.starts[-1]}), got {position}.")
        rates = np.asarray(probabilities, dtype=np.float64)
        if rates.shape != self.probabilities.shape:
            raise ValueError(f"the new rates have {rates.size} entries for {self.num_tasks} tasks.")
        segment_seed = int(np.random.SeedSequence([self.seed, len(self.starts)]).generate_state(1)[0])
        self.starts.append(int(position))
        self.segments.append(TaskSequence(rates, segment_seed))

    def labels(self, start: int, stop: int) -> np.ndarray:
        """The task of every position in ``[start, stop)``."""
        parts = []
        for k in range(self._segment(start), len(self.starts)):
            lo, hi = max(start, self.starts[k]), min(stop, self._end(k))
            if lo >= hi:
                break
            parts.append(self.segments[k].labels(lo - self.starts[k], hi - self.starts[k]))
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def counts_before(self, position: int) -> np.ndarray:
        """How many of the positions before ``position`` belong to each task (exact)."""
        counts = np.zeros(self.num_tasks, dtype=np.int64)
        for k in range(self._segment(position) + 1):
            local = min(position, self._end(k)) - self.starts[k]
            counts += _counts(self.segments[k], local)
        return counts

    def state_dict(self) -> list[list[Any]]:
        """``[[start, rates], ...]``: the schedule, for a checkpoint."""
        return [[start, seq.probabilities.tolist()] for start, seq in zip(self.starts, self.segments)]

    def load_state_dict(self, state: Sequence[Sequence[Any]]) -> None:
        """Continue a checkpoint's schedule (its first segment must be this one's)."""
        if not np.allclose(state[0][1], self.probabilities, rtol=0, atol=1e-12):
            raise ValueError(f"cannot resume: the checkpoint's first rates {state[0][1]} differ from this run's "
                             f"{self.probabilities.tolist()}. Resume with the same rates, or start a new output directory.")
        del self.starts[1:], self.segments[1:]
        for start, rates in state[1:]:
            self.append(int(start), rates)

    def _segment(self, position: int) -> int:
        return int(np.searchsorted(self.starts, position, side="right")) - 1

    def _end(self, k: int) -> int:
        return self.starts[k + 1] if k + 1 < len(self.starts) else 2**62


def _counts(sequence: TaskSequence, position: int) -> np.ndarray:
    """``sequence``'s task counts before (local) ``position``: whole blocks from the tree, the rest counted."""
    block, within = divmod(int(position), BLOCK)
    counts = sequence.counts_before_block(block)
    if within:
        counts = counts + np.bincount(sequence.block_labels(block, block + 1)[:within], minlength=sequence.num_tasks)
    return counts
