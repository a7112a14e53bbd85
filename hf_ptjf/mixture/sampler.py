"""`TemperatureMixtureSampler`: a deterministic, resumable index stream over K concatenated tasks (map-style data).

The task of each position and the example within it come from :mod:`hf_ptjf.mixture.sequence`; the sampler maps
them to indices of the concatenated dataset and keeps its position for checkpoints.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import strategies
from .schedule import RateSchedule
from .sequence import CHUNK, feistel_permute, permutation_keys

__all__ = ["TemperatureMixtureSampler"]


class TemperatureMixtureSampler(torch.utils.data.Sampler[int]):
    """Sample indices of a concatenation of K tasks with per-task rates.

    Task ``k`` occupies the contiguous index block ``[offsets[k], offsets[k] + task_sizes[k])`` of the
    concatenated dataset, in the given order.

    Args:
        task_sizes: number of examples of each task (all > 0).
        num_samples: indices yielded per epoch (``len(sampler)``); the Trainer sizes it to
            ``max_steps * total_batch_size``.
        probabilities: the sampling probability of each task (computed by :mod:`hf_ptjf.mixture`; non-negative,
            normalised here). Without them, ``temperature`` gives q_i ∝ (D_i / sum D) ** (1 / temperature).
        temperature: a convenience for ``probabilities=hf_ptjf.mixture.temperature(task_sizes, temperature)``
            (1.0 = proportional).
        seed: the whole stream is a function of the seed (and sizes, rates); identical on every rank.

    Epoch ``e`` yields the global stream positions ``[e * num_samples, (e + 1) * num_samples)``, so
    epochs continue one endless stream rather than repeating it.
    """

    def __init__(
        self,
        task_sizes: Sequence[int],
        num_samples: int,
        probabilities: Sequence[float] | None = None,
        *,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        sizes = np.asarray(task_sizes, dtype=np.int64)
        if sizes.ndim != 1 or sizes.size == 0 or np.any(sizes <= 0):
            raise ValueError(f"`task_sizes` must be a non-empty list of positive sizes, got {list(task_sizes)}.")
        if int(num_samples) <= 0:
            raise ValueError(f"`num_samples` must be > 0, got {num_samples}.")
        self.task_sizes = sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.probabilities = (
            strategies.static(probabilities, sizes) if probabilities is not None else strategies.temperature(sizes, temperature)
        )
        self.epoch = 0
        self._resume_position: int | None = None
        self._position = 0  # next global position this sampler will yield (for state_dict)
        self.tasks = RateSchedule(self.probabilities, self.seed)  # one segment unless the rates change
        # Positions computed ahead of what was yielded: an online strategy (hf_ptjf.train.online) sets it to one
        # optimizer step, so that the rates it appends apply to positions not computed yet.
        self.lookahead = CHUNK

    # ---------------------------------------------------------------- public API
    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Select the window ``[epoch * num_samples, (epoch + 1) * num_samples)`` of the stream."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.num_samples
        end = start + self.num_samples
        if self._resume_position is not None:
            if start <= self._resume_position <= end:
                start = self._resume_position
            self._resume_position = None  # applies to one iteration only
        self._position = start
        chunk_start = start
        while chunk_start < end:
            chunk_stop = min(end, chunk_start + self.lookahead)
            for index in self.indices(chunk_start, chunk_stop).tolist():
                self._position += 1
                yield index
            chunk_start = chunk_stop

    @property
    def schedule(self) -> RateSchedule:
        """The rates over the stream's positions (``tasks``, under the name the streamed mixture gives it)."""
        return self.tasks

    @property
    def drawn(self) -> int:
        """The stream positions computed so far (the next position this sampler yields)."""
        return self._position

    def indices(self, start: int, stop: int) -> np.ndarray:
        """The dataset indices at global stream positions ``[start, stop)`` (vectorised)."""
        if start < 0 or stop < start:
            raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}.")
        if start == stop:
            return np.zeros(0, dtype=np.int64)
        # bounded memory for long ranges: CHUNK positions at a time
        return np.concatenate([self._range_indices(lo, min(stop, lo + CHUNK)) for lo in range(start, stop, CHUNK)])

    def task_of(self, index: int | np.ndarray) -> int | np.ndarray:
        """Which task a dataset index (of the concatenation) belongs to."""
        idx = np.asarray(index)
        if np.any(idx < 0) or np.any(idx >= self.task_sizes.sum()):
            raise ValueError(f"index out of range [0, {int(self.task_sizes.sum())}): {index}")
        task = np.searchsorted(self.offsets, idx, side="right") - 1
        return int(task) if np.ndim(index) == 0 else task

    def task_counts(self, position: int) -> np.ndarray:
        """How many of the first ``position`` stream positions belong to each task (exact, O(log))."""
        if position < 0:
            raise ValueError(f"`position` must be >= 0, got {position}.")
        return self.tasks.counts_before(int(position))

    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """Where the stream is (``position``: the one given, e.g. what the optimizer steps consumed; else the next to
        yield), plus what it was built from (to refuse resuming a different mixture)."""
        position = int(self._position if position is None else position)
        return {
            "position": position,
            "epoch": int(self.epoch),
            "seed": self.seed,
            "num_samples": self.num_samples,
            "task_sizes": self.task_sizes.tolist(),
            "probabilities": self.probabilities.tolist(),
            # rates that changed during the stage (an online strategy); absent for fixed rates, as before
            **self.tasks.checkpoint(position),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at ``state["position"]``: the next iteration yields exactly the remaining stream."""
        for key, mine in (("seed", self.seed), ("task_sizes", self.task_sizes.tolist())):
            if state[key] != mine:
                raise ValueError(
                    f"cannot resume: the checkpoint's sampler `{key}` is {state[key]} but this run's is {mine}. "
                    "Resume with the same mixture, or start a new output directory."
                )
        if not np.allclose(state["probabilities"], self.probabilities, rtol=0, atol=1e-12):
            raise ValueError(
                f"cannot resume: the checkpoint's mixing rates {state['probabilities']} differ from this run's "
                f"{self.probabilities.tolist()}. Resume with the same rates, or start a new output directory."
            )
        if "schedule" in state:  # (a checkpoint of fixed rates has none: it resumes as before)
            self.tasks.load_state_dict(state["schedule"])
        self.epoch = int(state["epoch"])
        self._position = self._resume_position = int(state["position"])

    # ---------------------------------------------------------------- the stream
    def _range_indices(self, start: int, stop: int) -> np.ndarray:
        """Dataset indices of all positions in ``[start, stop)``, vectorised."""
        labels = self.tasks.labels(start, stop)
        before = self.tasks.counts_before(start)
        # Sorting the slots by task (stably) lists each task's slots in stream order; their occurrence
        # numbers are then consecutive, from before[k], so each (task, pass) run is one arange.
        order = np.argsort(labels.astype(np.int16), kind="stable")  # radix sort on small ints
        per_task = np.bincount(labels, minlength=len(before))
        sorted_out = np.empty(len(labels), dtype=np.int64)
        pos = 0
        for task, (occurrence, n) in enumerate(zip(before.tolist(), per_task.tolist())):
            size = int(self.task_sizes[task])
            while n > 0:
                p, first = divmod(occurrence, size)
                take = min(n, size - first)
                keys = permutation_keys(self.seed, task, p)
                within = np.arange(first, first + take, dtype=np.int64)
                sorted_out[pos : pos + take] = self.offsets[task] + feistel_permute(within, size, keys)
                pos, occurrence, n = pos + take, occurrence + take, n - take
        out = np.empty_like(sorted_out)
        out[order] = sorted_out
        return out
