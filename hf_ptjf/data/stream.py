"""``TaskStream``: one task's training rows read as a stream, with an exact, cheap resume.

A task's data is a list of shards (``datasets.IterableDataset`` s: a file each, or a ``datasets`` dataset's own
shards). A reader goes through them pass after pass:

* **Pass order**: every pass visits the shards in a new seeded order; with several readers (ranks x DataLoader
  workers) each reader takes every ``count``-th shard of that order, so readers never share a shard. When the
  readers do not divide the shards evenly, every reader goes through every shard keeping every ``count``-th example
  (datasets' ``split_dataset_by_node``): still no example read twice in a pass and readers stay balanced, but every
  reader parses every shard (give the task a multiple of ranks x workers files to avoid it).
* **Windows**: a shard is read in windows of ``window`` raw examples. ``transform`` turns a window into rows
  (cleaning, tokenizing, packing: the same batch functions as the map-style path, so a window of 1,000 LM documents
  is packed exactly as a map batch of 1,000 is), and the rows are yielded in a seeded permutation of the window
  (keyed by task, pass, shard and window number): a shuffle buffer whose content is a function of the position.
  (Not ``IterableDataset.shuffle``: datasets documents that its buffer's examples are lost on resume.)
* **State**: (pass, shard cursor, window number, the shard's ``datasets`` state at the window's start, rows taken
  from the window). Resuming re-opens one shard at the window's start (datasets' ``load_state_dict``: a skip within
  that shard, never a replay of the stream), re-reads one window and skips the rows already taken: the resumed
  reader yields exactly the rows the uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..checks import is_integer
from ..seen import CHARACTERS
from .json_lines import first_bad_line, is_json_lines
from .spec import SIZE_UNITS

__all__ = ["SIZE_UNITS", "StreamError", "TaskStream", "TaskStreamReader", "as_task_stream", "row_sizes"]

logger = logging.getLogger(__name__)


class StreamError(ValueError):
    """A streamed task's data is unusable (missing or truncated shard, empty stream, missing column)."""


def _key(*parts: Any) -> np.random.Generator:
    words = [int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:4], "little") for p in parts]
    return np.random.default_rng(np.random.SeedSequence(words))


def row_sizes(rows: Mapping[str, Sequence[Any]]) -> dict[str, int]:
    """Examples, tokens and characters of a batch of model-ready rows: tokens the model reads (encoder inputs +
    decoder labels for a sequence-to-sequence row, which has an ``attention_mask``; the row's ``input_ids``
    otherwise); characters of text the rows came from, when they carry a ``characters`` column."""
    ids = rows.get("input_ids", [])
    tokens = sum(len(x) for x in ids)
    if "attention_mask" in rows and "labels" in rows:
        tokens += sum(len(x) for x in rows["labels"])
    out = {"examples": len(ids), "tokens": tokens}
    if CHARACTERS in rows:
        out[CHARACTERS] = int(sum(rows[CHARACTERS]))
    return out


@dataclass
class TaskStream:
    """A task's training rows as a stream of shards (see the module docstring).

    Args:
        name: the task's name (seeds its shuffles, names it in errors).
        shards: one ``datasets.IterableDataset`` per shard.
        transform: a window of raw examples (a batch dict) -> model-ready rows (a batch dict); ``None``: already
            model-ready (e.g. a map-style task's tokenized rows).
        window: raw examples per window (the shuffle's span).
        seed: the run's seed.
        size: the task's size per unit (``examples`` / ``tokens`` / ``characters``), declared or counted; only
            rate strategies that need sizes read it.
        shard_names: what each shard is (file paths), for errors.
    """

    name: str
    shards: Sequence[Any]
    transform: Callable[[dict[str, list]], dict[str, list]] | None = None
    window: int = 1000
    seed: int = 0
    size: dict[str, float] = field(default_factory=dict)
    shard_names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not self.shards:
            raise StreamError(f"task `{self.name}`: the stream has no shards (no files matched); check its "
                              "`path` / `data_files`.")
        if not is_integer(self.window, minimum=1):
            raise ValueError(f"task `{self.name}`: the stream window must be an integer >= 1, got {self.window!r}.")

    @classmethod
    def from_iterable(cls, name: str, dataset: Any, **kwargs: Any) -> "TaskStream":
        """A ``datasets.IterableDataset``, one shard per data source (file) it has."""
        n = max(1, int(getattr(dataset, "num_shards", 1)))
        shards = [dataset.shard(num_shards=n, index=i) for i in range(n)] if n > 1 else [dataset]
        return cls(name, shards, **kwargs)

    @classmethod
    def from_dataset(cls, name: str, dataset: Any, num_shards: int | None = None, **kwargs: Any) -> "TaskStream":
        """A map-style ``datasets.Dataset`` (already tokenized) read the same way, so that map-style and streamed
        tasks mix in one stream."""
        if len(dataset) == 0:
            raise StreamError(f"task `{name}` has an empty training set; remove it from the mixture or give it data.")
        n = num_shards or max(1, min(64, len(dataset) // 1000))
        kwargs.setdefault("size", {"examples": float(len(dataset))})
        return cls.from_iterable(name, dataset.to_iterable_dataset(num_shards=n), **kwargs)

    def shard_name(self, index: int) -> str:
        return str(self.shard_names[index]) if self.shard_names is not None else f"shard {index}"

    def shard_order(self, pass_: int) -> np.ndarray:
        """The order in which pass ``pass_`` visits the shards (seeded by task and pass)."""
        return _key(self.seed, self.name, "shards", pass_).permutation(len(self.shards))

    def reader(self, index: int = 0, count: int = 1, state: Mapping[str, Any] | None = None) -> "TaskStreamReader":
        """Reader ``index`` of ``count`` (rank x workers + worker), continuing from ``state`` when given."""
        return TaskStreamReader(self, index, count, state)

    def count_sizes(self) -> dict[str, float]:
        """One pass over the whole stream (one reader): examples, tokens and characters (slow on big data: the
        loaders cache it by the data's content)."""
        totals: dict[str, int] = {}
        for rows in self._windows():
            for unit, value in row_sizes(rows).items():
                totals[unit] = totals.get(unit, 0) + value
        if not totals.get("examples"):
            raise StreamError(f"task `{self.name}`: the stream is empty (no training rows after filtering); give it "
                              "data or remove it from the mixture.")
        return {k: float(v) for k, v in totals.items()}

    def _windows(self) -> Iterator[dict[str, list]]:
        for i, shard in enumerate(self.shards):
            for raw in _read(self, i, shard.iter(batch_size=self.window)):
                yield self.transform(raw) if self.transform else raw


def as_task_stream(name: str, data: Any, seed: int = 0) -> TaskStream:
    """A task's training data as a :class:`TaskStream`: a stream as given (its name must match), a
    ``datasets.IterableDataset`` one shard per data source, a map-style ``datasets.Dataset`` in shards of it."""
    import datasets

    if isinstance(data, TaskStream):
        if data.name != name:
            raise ValueError(f"the stream given for task `{name}` is named `{data.name}`; name it after its task.")
        return data
    if isinstance(data, datasets.IterableDataset):
        return TaskStream.from_iterable(name, data, seed=seed)
    if isinstance(data, datasets.Dataset):
        return TaskStream.from_dataset(name, data, seed=seed)
    raise TypeError(f"task `{name}`: expected a datasets.Dataset, a datasets.IterableDataset or a TaskStream, got "
                    f"{type(data).__name__}.")


def _read(stream: TaskStream, index: int, batches: Iterator[dict[str, list]]) -> Iterator[dict[str, list]]:
    """``batches``, with a failure to read the shard reported as the task's, with the fix."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except StreamError:
            raise
        except Exception as e:  # noqa: BLE001 - the file system's / parser's error, said as the task's
            name = stream.shard_name(index)
            bad = first_bad_line(name) if is_json_lines(name) else None  # (the parser names a row of its block)
            if bad is not None:
                raise StreamError(f"task `{stream.name}`: reading {name} failed: {bad.removeprefix(name + ' ')} Fix "
                                  "that line, or restore the shard (or remove it from `data_files`), and rerun: the "
                                  "run continues from its last complete checkpoint.") from e
            raise StreamError(
                f"task `{stream.name}`: reading {name} failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else 'no detail'}); the shard was deleted, truncated or is not "
                "valid data: restore it (or remove it from `data_files`) and rerun: the run continues from its last "
                "complete checkpoint."
            ) from e
        yield batch


class TaskStreamReader:
    """Iterates one reader's rows of a :class:`TaskStream`, endlessly (pass after pass); :meth:`state` is exact."""

    def __init__(self, stream: TaskStream, index: int = 0, count: int = 1,
                 state: Mapping[str, Any] | None = None) -> None:
        if not 0 <= index < count:
            raise ValueError(f"reader index must be in [0, {count}), got {index}.")
        self.stream, self.index, self.count = stream, int(index), int(count)
        state = dict(state or {})
        if state and (state.get("reader"), state.get("readers")) != (self.index, self.count):
            raise ValueError(f"task `{stream.name}`: the saved stream state is reader {state.get('reader')} of "
                             f"{state.get('readers')}, not {self.index} of {self.count}.")
        self.pass_ = int(state.get("pass", 0))
        self.cursor = int(state.get("cursor", 0))
        self.window_no = int(state.get("window", -1))  # the window now being yielded (-1: none read yet)
        self._window_state = state.get("shard_state")  # the shard's datasets state at that window's start
        self.taken = int(state.get("taken", 0))
        self._rows: list[dict[str, Any]] = []
        self._batches: Iterator[dict[str, list]] | None = None
        self._dataset: Any = None
        self._empty_passes = 0
        if state and self.window_no >= 0:  # re-read the window the state is in; skip what was taken
            taken = self.taken
            self._open(self._window_state)
            if not self._load_window(self.window_no) or taken > len(self._rows):
                raise StreamError(f"task `{stream.name}`: the saved stream state is row {taken} of window "
                                  f"{self.window_no} of {stream.shard_name(self._my_shards()[self.cursor])}, which "
                                  "has fewer rows now: the data changed since the checkpoint; restore it, or start a "
                                  "new output directory.")
            self.taken = taken

    # ------------------------------------------------------------------ public
    def state(self) -> dict[str, Any]:
        """Where this reader is: enough to continue exactly here (JSON-serialisable)."""
        return {"reader": self.index, "readers": self.count, "pass": self.pass_, "cursor": self.cursor,
                "window": self.window_no, "shard_state": self._window_state, "taken": self.taken}

    def __iter__(self) -> "TaskStreamReader":
        return self

    def __next__(self) -> dict[str, Any]:
        while self.taken >= len(self._rows):
            self._next_window()
        row = self._rows[self.taken]
        self.taken += 1
        return row

    # ------------------------------------------------------------------ reading
    def _my_shards(self) -> list[int]:
        order = self.stream.shard_order(self.pass_).tolist()
        return order[self.index :: self.count] if self._by_shard else order

    @property
    def _by_shard(self) -> bool:
        """Readers split the shards (when they divide evenly), else every reader strides through every shard."""
        return len(self.stream.shards) % self.count == 0

    def _open(self, shard_state: Any) -> None:
        shard = self.stream.shards[self._my_shards()[self.cursor]]
        if not self._by_shard:  # every count-th example of each shard (datasets' split by example)
            from datasets.distributed import split_dataset_by_node

            shard = split_dataset_by_node(shard, rank=self.index, world_size=self.count)
        else:
            shard = shard.shard(num_shards=1, index=0) if hasattr(shard, "shard") else shard  # a fresh copy
        if shard_state is not None:
            shard.load_state_dict(shard_state)
        self._dataset = shard
        self._batches = _read(self.stream, self._my_shards()[self.cursor], shard.iter(batch_size=self.stream.window))

    def _next_window(self) -> None:
        if self._batches is None:
            self._open(None)
            self.window_no, self._window_state = -1, None
        start_state = self._dataset.state_dict() if self.window_no >= 0 else self._window_state
        if not self._load_window(self.window_no + 1):  # the shard is done: the next one, or the next pass
            self._batches = None
            self.cursor += 1
            if self.cursor >= len(self._my_shards()):
                self._end_pass()
            return
        self._window_state = start_state

    def _load_window(self, number: int) -> bool:
        """Read window ``number`` of the open shard into ``_rows`` (permuted); False when the shard is done."""
        try:
            raw = next(self._batches)
        except StopIteration:
            return False
        rows = self.stream.transform(raw) if self.stream.transform else raw
        columns = list(rows)
        n = len(rows[columns[0]]) if columns else 0
        shard = self._my_shards()[self.cursor]
        perm = _key(self.stream.seed, self.stream.name, "rows", self.pass_, shard, self.index, number).permutation(n)
        self._rows = [{c: rows[c][j] for c in columns} for j in perm.tolist()]
        self.window_no, self.taken = number, 0
        if n:
            self._empty_passes = 0
        return True

    def _end_pass(self) -> None:
        self._empty_passes += 1
        if self._empty_passes > 1:  # a whole pass over every shard gave no row
            raise StreamError(
                f"task `{self.stream.name}`: the stream is empty for reader {self.index} of {self.count} (no training "
                "rows after filtering); give the task data (with at least as many rows as readers) or remove it."
            )
        self.pass_ += 1
        self.cursor = 0
        logger.info("task %s: reader %d of %d starts pass %d over its shards", self.stream.name, self.index,
                    self.count, self.pass_ + 1)
