"""`MixtureData`: the training data of a mixture behind one interface, map-style or streamed.

The trainer asks its data for the task sizes, the training set (or stream) at the mixture's rates, what the
DataLoader reads, the position after a step (for ``mixture_state.json``) and a resume from it; each implementation
answers in its own terms:

* :class:`MapMixtureData`: the tasks' tokenized ``datasets.Dataset`` s concatenated (a ``task_id`` column), read in
  the order of a :class:`~hf_ptjf.mixture.sampler.TemperatureMixtureSampler` whose state is a few integers;
* :class:`StreamMixtureData`: one :class:`~hf_ptjf.data.stream.TaskStream` per task (map-style tasks become streams
  too), read through a :class:`~hf_ptjf.mixture.stream.MixtureStream`: the same task sequence, each reader's state in
  the checkpoint.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, MutableMapping, Sequence

import datasets as hf_datasets
import numpy as np
import torch
import torch.distributed as dist
from accelerate.data_loader import prepare_data_loader

from ..data.stream import TaskStream, as_task_stream
from ..mixture.sampler import TemperatureMixtureSampler
from ..mixture.stream import STREAM_STATE, MixtureStream

__all__ = ["TASK_ID", "MapMixtureData", "MixtureData", "StreamMixtureData", "changed_shards", "concatenate_tasks",
           "mixture_data", "shard_identity"]

TASK_ID = "task_id"


class MixtureData:
    """What a :class:`~hf_ptjf.MixtureTrainer` needs of its training data (see the module docstring)."""

    kind = ""  # the key of its position in mixture_state.json
    other = ""  # how a checkpoint of the other kind is described in the refusal
    current: Any = None  # the sampler or stream of the training under way (None before it starts)

    def __init__(self, task_names: Sequence[str], task_sizes: Sequence[int | None], seed: int) -> None:
        self.task_names, self.task_sizes, self.seed = list(task_names), list(task_sizes), seed

    def check(self, args: Any) -> None:
        """Refuse training arguments this data cannot train with (before any work)."""

    def train_dataset(self, args: Any, rates: np.ndarray, collator: Callable) -> Any:
        """The Trainer's ``train_dataset``."""
        raise NotImplementedError

    def sampler(self, rates: np.ndarray, num_samples: int) -> torch.utils.data.Sampler | None:
        """The order of the training set (``None``: the data orders itself)."""
        return None

    def dataloader(self, args: Any, rates: np.ndarray, collator: Callable) -> torch.utils.data.DataLoader | None:
        """The DataLoader of the training data (``None``: the Trainer's own, over :meth:`train_dataset`)."""
        return None

    def consumed(self, batches: Sequence[Any]) -> None:
        """The batches of one optimizer step were taken from the DataLoader."""

    @property
    def schedule(self) -> Any:
        """The :class:`~hf_ptjf.mixture.schedule.RateSchedule` of the training under way (``None`` before it starts)."""
        return self.current.schedule if self.current is not None else None

    @property
    def drawn(self) -> int:
        """The global stream positions the data has computed so far (the DataLoader reads ahead of the steps)."""
        return self.current.drawn if self.current is not None else 0

    def read_ahead(self, positions: int) -> None:
        """Compute at most ``positions`` positions ahead of what was read (an online strategy's rates must reach
        positions not computed yet)."""

    def state_at_step(self, step: int, args: Any, rates: np.ndarray) -> dict[str, Any]:
        """The data's position after ``step`` optimizer steps (may be a collective call)."""
        raise NotImplementedError

    def resume(self, saved: Mapping[str, Any], checkpoint: str, args: Any, rates: np.ndarray) -> None:
        """Continue from a checkpoint's ``mixture_state.json``; a checkpoint this data cannot continue is refused."""
        if self.kind not in saved:
            raise ValueError(f"cannot resume from {checkpoint}: {self.other}; use the same data, or a new output_dir.")

    def passes(self) -> dict[str, int]:
        """The pass each task's data is in (1 = the first), where the data knows it."""
        return {}


class MapMixtureData(MixtureData):
    """Map-style tasks: their concatenation, read in the sampler's order (resume in O(1), no replay)."""

    kind = "sampler"
    other = "it streamed its tasks and this run reads them map-style"

    def __init__(self, datasets: Mapping[str, Any], seed: int) -> None:
        self.dataset = concatenate_tasks(datasets)
        super().__init__(list(datasets), [len(d) for d in datasets.values()], seed)
        self.current: TemperatureMixtureSampler | None = None
        self._pending: dict[str, Any] | None = None
        self._lookahead: int | None = None

    def train_dataset(self, args: Any, rates: np.ndarray, collator: Callable) -> Any:  # noqa: D102
        return self.dataset

    def sampler(self, rates: np.ndarray, num_samples: int) -> TemperatureMixtureSampler:  # noqa: D102
        sampler = TemperatureMixtureSampler(self.task_sizes, num_samples, rates, seed=self.seed)
        if self._lookahead is not None:
            sampler.lookahead = self._lookahead
        if self._pending is not None:
            sampler.load_state_dict(self._pending)
            self._pending = None
        self.current = sampler
        return sampler

    def read_ahead(self, positions: int) -> None:  # noqa: D102
        self._lookahead = positions
        if self.current is not None:
            self.current.lookahead = positions

    def state_at_step(self, step: int, args: Any, rates: np.ndarray) -> dict[str, Any]:
        """The sampler state after ``step`` optimizer steps (the DataLoader may have prefetched further)."""
        if self.current is None:
            raise RuntimeError("no mixture sampler yet: save a checkpoint only during training.")
        consumed = step * args.total_train_batch_size
        state = self.current.state_dict(consumed)
        state.update(epoch=consumed // self.current.num_samples)
        return state

    def resume(self, saved: Mapping[str, Any], checkpoint: str, args: Any, rates: np.ndarray) -> None:  # noqa: D102
        super().resume(saved, checkpoint, args, rates)
        self._pending = saved[self.kind]


class StreamMixtureData(MixtureData):
    """Streamed tasks (and map-style ones read as streams): each rank reads its own readers of every task."""

    kind = "stream"
    other = "it was trained on map-style data and this run streams its tasks"

    def __init__(self, datasets: Mapping[str, Any], seed: int) -> None:
        self.streams = [as_task_stream(n, d, seed=seed) for n, d in datasets.items()]
        sizes = [int(s.size["examples"]) if s.size.get("examples") else None for s in self.streams]
        super().__init__(list(datasets), sizes, seed)
        self.current: MixtureStream | None = None
        self._pending: dict[str, Any] = {}
        self._readers: dict[int, dict[str, Any]] = {}  # this rank's readers after their last consumed batch

    def check(self, args: Any) -> None:  # noqa: D102
        if args.max_steps <= 0:
            raise ValueError("a streamed mixture has no length: set `max_steps` (> 0) in the training arguments.")

    def train_dataset(self, args: Any, rates: np.ndarray, collator: Callable) -> MixtureStream:
        """This rank's :class:`MixtureStream`, continuing a checkpoint's readers when resuming."""
        pending = self._pending
        self.current = MixtureStream(
            self.streams, rates, batch_size=args.per_device_train_batch_size, collator=collator, seed=self.seed,
            rank=args.process_index, world_size=max(1, args.world_size), num_workers=args.dataloader_num_workers,
            start_batch=pending.get("batches", 0),
            reader_states={int(k.split(".")[1]): v for k, v in pending.get("readers", {}).items()
                           if int(k.split(".")[0]) == args.process_index},
            schedule_state=pending.get("schedule"))
        return self.current

    def dataloader(self, args: Any, rates: np.ndarray, collator: Callable) -> torch.utils.data.DataLoader:  # noqa: D102
        stream = self.train_dataset(args, rates, collator)
        self._pending = {}
        workers = args.dataloader_num_workers
        loader = torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=workers, pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if workers else None,
            multiprocessing_context=args.dataloader_multiprocessing_context if workers else None)
        # Each rank reads its own readers: accelerate must not shard (IterableDatasetShard would make every rank
        # read everything) nor dispatch (rank 0 would read for all); it only places batches on the device.
        return prepare_data_loader(loader, device=args.device, num_processes=1, process_index=0, put_on_device=True,
                                   dispatch_batches=False)

    def read_ahead(self, positions: int) -> None:
        """A stream computes one micro-batch at a time (in the main process: online rates need no workers)."""

    def consumed(self, batches: Sequence[Any]) -> None:
        """After one optimizer step's batches, their readers' states are the ones a checkpoint needs."""
        for batch in batches:
            state = batch.pop(STREAM_STATE, None) if isinstance(batch, MutableMapping) else None
            if state is not None:
                self._readers[int(state["reader"])] = state

    def state_at_step(self, step: int, args: Any, rates: np.ndarray) -> dict[str, Any]:
        """Every rank's readers after ``step`` optimizer steps (a collective call)."""
        mine = {f"{args.process_index}.{q}": s["tasks"] for q, s in self._readers.items()}
        if dist.is_available() and dist.is_initialized() and args.world_size > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, mine)
            mine = {k: v for part in gathered for k, v in part.items()}
        return {"batches": step * args.gradient_accumulation_steps, "world_size": max(1, args.world_size),
                "num_workers": args.dataloader_num_workers, "batch_size": args.per_device_train_batch_size,
                "seed": self.current.seed if self.current else None,
                "probabilities": [float(r) for r in rates], "shards": shard_identity(self.streams),
                "readers": mine,
                **(self.schedule.checkpoint(step * args.total_train_batch_size) if self.schedule is not None else {})}

    def resume(self, saved: Mapping[str, Any], checkpoint: str, args: Any, rates: np.ndarray) -> None:  # noqa: D102
        super().resume(saved, checkpoint, args, rates)
        state = saved[self.kind]
        now = {"world_size": max(1, args.world_size), "num_workers": args.dataloader_num_workers,
               "batch_size": args.per_device_train_batch_size}
        changed = [f"{k} {state.get(k)} -> {v}" for k, v in now.items() if state.get(k) != v]
        if changed:
            raise ValueError(f"cannot resume the streamed mixture from {checkpoint}: {', '.join(changed)}. Each reader "
                             "of the stream continues its own position, so resume with the same processes, "
                             "dataloader_num_workers and per-device batch size, or start a new output directory.")
        problem = changed_shards(state, self.streams, checkpoint)
        if problem:
            raise ValueError(problem)
        if not np.allclose(state.get("probabilities", []), rates, rtol=0, atol=1e-12):
            raise ValueError(f"cannot resume from {checkpoint}: the checkpoint's mixing rates {state['probabilities']} "
                             f"differ from this run's {rates.tolist()}. Resume with the same rates, or start a "
                             "new output directory.")
        self._pending = state

    def passes(self) -> dict[str, int]:
        """The pass each streamed task's readers of this rank are in (1 = the first), at the last step."""
        passes: dict[str, int] = {}
        for state in self._readers.values():
            for task, reader in state["tasks"].items():
                passes[task] = max(passes.get(task, 0), int(reader["pass"]) + 1)
        return passes


def mixture_data(datasets: Mapping[str, Any], seed: int) -> MixtureData:
    """Map-style data, or a stream as soon as one task is streamed (an ``IterableDataset`` or a ``TaskStream``)."""
    streamed = any(isinstance(d, (TaskStream, hf_datasets.IterableDataset)) for d in datasets.values())
    return StreamMixtureData(datasets, seed) if streamed else MapMixtureData(datasets, seed)


def concatenate_tasks(datasets: Mapping[str, Any]) -> Any:
    """Concatenate named `datasets.Dataset`s in order, adding the integer column ``task_id``."""
    if not datasets:
        raise ValueError("`train_datasets` is empty: give at least one task, e.g. {'en-fr': dataset}.")
    parts = []
    for k, (name, ds) in enumerate(datasets.items()):
        if len(ds) == 0:
            raise ValueError(f"task `{name}` has an empty training set; remove it from the mixture or give it data.")
        if TASK_ID in ds.column_names:
            ds = ds.remove_columns(TASK_ID)
        parts.append(ds.add_column(TASK_ID, np.full(len(ds), k, dtype=np.int64)))
    return hf_datasets.concatenate_datasets(parts)


def shard_identity(streams: Sequence[TaskStream] | None) -> dict[str, Any]:
    """Each stream's shards (their names, else their number), as a checkpoint records them: a resume needs the same."""
    return {s.name: [str(n) for n in s.shard_names] if s.shard_names is not None else len(s.shards)
            for s in streams or []}


def changed_shards(saved: Mapping[str, Any], streams: Sequence[TaskStream], checkpoint: str) -> str | None:
    """Why a checkpoint's stream state (``mixture_state.json``'s ``stream``) cannot continue ``streams``, or None."""
    now = shard_identity(streams)
    for task, shards in saved.get("shards", {}).items():
        if task in now and now[task] != shards:
            gone = sorted(set(shards) - set(now[task])) if isinstance(shards, list) else shards
            return (f"cannot resume task `{task}`'s stream from {checkpoint}: its shards changed since the checkpoint "
                    f"(missing or different: {gone}); restore them to resume (the checkpoint is kept), or start a new "
                    "output directory.")
    return None
