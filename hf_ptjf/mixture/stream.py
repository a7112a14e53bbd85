"""``MixtureStream``: the batches of a streamed mixture, for one rank, resumable exactly.

The task of every position comes from the same :class:`~hf_ptjf.mixture.sequence.TaskSequence` as the map-style
:class:`~hf_ptjf.mixture.sampler.TemperatureMixtureSampler` (same seed and rates: same task sequence), laid out as that
sampler's positions are under accelerate: the rank's local micro-batch ``i`` holds the global positions
``[(i * world_size + rank) * batch_size, ... + batch_size)``. Each task's rows come from its own
:class:`~hf_ptjf.data.stream.TaskStreamReader`.

Readers: local micro-batch ``i`` is always built by reader ``q = i mod num_workers`` of this rank (reader
``rank * num_workers + q`` of ``world_size * num_workers`` of every task), whichever DataLoader worker runs it. So
the batches do not depend on when a run was resumed, and a checkpoint needs, per reader, only the state it had
after its last consumed batch: every batch carries it (``STREAM_STATE``), and the trainer keeps the newest.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .schedule import RateSchedule

__all__ = ["STREAM_STATE", "MixtureStream"]

STREAM_STATE = "stream_state"  # the batch key holding the reader's state after the batch (popped by the trainer)


class MixtureStream(torch.utils.data.IterableDataset):
    """Micro-batches of a mixture of :class:`TaskStream` s for one rank (an endless stream).

    Args:
        streams: the tasks, in task order (``task_id`` k is ``streams[k]``).
        probabilities: each task's sampling rate (from :mod:`hf_ptjf.mixture`).
        batch_size: rows per micro-batch (per device).
        collator: rows -> a batch (the recipe's collator); a collator with a numpy ``rng`` (span corruption) draws
            its noise from one seeded by the batch's position, so a resumed run corrupts the same way.
        seed: the task sequence's seed (the map-style sampler's ``mixture_seed``).
        rank / world_size: this process and the number of processes.
        num_workers: the DataLoader's workers (0 = the main process): readers per rank.
        start_batch: the first local micro-batch to yield (micro-batches consumed before a resume).
        reader_states: ``{q: {task: reader state}}`` of this rank's readers at ``start_batch``.
        schedule_state: a checkpoint's :class:`RateSchedule` state (rates that changed during the stage).

    ``schedule`` is the rates over positions; an online strategy appends to it while training (in the main process:
    with DataLoader workers, each holds a copy, so online rates need ``num_workers=0``).
    """

    def __init__(
        self,
        streams: Sequence[Any],  # hf_ptjf.data.stream.TaskStream (not imported: the mixture is below the data layer)
        probabilities: Sequence[float],
        *,
        batch_size: int,
        collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        start_batch: int = 0,
        reader_states: Mapping[int, Mapping[str, Any]] | None = None,
        schedule_state: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(streams) != len(probabilities):
            raise ValueError(f"{len(streams)} streams but {len(probabilities)} rates; give one rate per task.")
        self.streams = list(streams)
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.batch_size, self.collator, self.seed = int(batch_size), collator, int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.readers_per_rank = max(1, int(num_workers))
        self.start_batch = int(start_batch)
        self.reader_states = {int(q): dict(s) for q, s in (reader_states or {}).items()}
        self.schedule = RateSchedule(self.probabilities, self.seed)
        if schedule_state is not None:
            self.schedule.load_state_dict(schedule_state)
        self.drawn = 0  # the global positions computed so far (in this process)

    def positions(self, batch: int) -> tuple[int, int]:
        """The global stream positions ``[start, stop)`` of this rank's local micro-batch ``batch``."""
        start = (batch * self.world_size + self.rank) * self.batch_size
        return start, start + self.batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        if workers != self.readers_per_rank:
            raise RuntimeError(f"MixtureStream was built for {self.readers_per_rank} readers per rank but runs in "
                               f"{workers} DataLoader workers; pass num_workers={workers}.")
        first = self.start_batch + worker  # the DataLoader takes batch j from worker j mod workers
        q = first % workers
        count = self.world_size * workers
        saved = self.reader_states.get(q, {})
        readers = [s.reader(self.rank * workers + q, count, saved.get(s.name)) for s in self.streams]
        noisy = isinstance(getattr(self.collator, "rng", None), np.random.Generator)
        for batch in range(first, 2**62, workers):
            start, stop = self.positions(batch)
            rows = []
            self.drawn = max(self.drawn, stop)
            for task in self.schedule.labels(start, stop).tolist():
                row = dict(next(readers[task]))
                row["task_id"] = task
                rows.append(row)
            if noisy:  # the noise of this batch is a function of its position
                self.collator.rng = np.random.default_rng([self.seed, self.rank, batch])
            out = self.collator(rows)
            out[STREAM_STATE] = {"batch": batch, "reader": q,
                                 "tasks": {s.name: r.state() for s, r in zip(self.streams, readers)}}
            yield out
