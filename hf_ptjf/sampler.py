"""`TemperatureMixtureSampler`: a deterministic, resumable index stream over K concatenated tasks.

The stream is a function of (seed, sizes, rates) and of the position only, so any part of it can be
generated without replaying what came before:

* Task of each position: i.i.d. draws from the rates. Positions are grouped in blocks of 4,096; the
  per-block task counts come from a binary tree whose root holds the multinomial counts of a whole
  "era" of 2**29 positions and whose children split their parent's counts with a multivariate
  hypergeometric draw. Given its counts, a block's labels are shuffled by a keyed Feistel
  permutation of its slots. The counts have exactly the law of i.i.d. categorical draws, and the number of times each task
  occurred before any position is a walk down the tree: O(log) work, no replay (O(1) in practice).
* Example within a task: the j-th occurrence of task k is example ``perm_{k,p}(j mod D_k)`` with
  pass ``p = j // D_k``, where ``perm_{k,p}`` is a keyed Feistel permutation (cycle-walking to any
  domain size). Every example of a task is seen once before any is seen twice, and no permutation
  array is ever materialised (tasks of billions of examples cost nothing extra).

Everything is vectorised with numpy per block; the only per-example Python is handing indices to
the DataLoader. The stream does not depend on the process rank: accelerate shards the batches.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import mixing

__all__ = ["TaskSequence", "TemperatureMixtureSampler"]

_BLOCK_BITS = 12  # 4,096 positions per block
_TREE_DEPTH = 17  # blocks per era = 2**17
_BLOCK = 1 << _BLOCK_BITS
_ERA = _BLOCK << _TREE_DEPTH  # 2**29 < 1e9, numpy's hypergeometric limit
_FEISTEL_ROUNDS = 4  # Luby-Rackoff: 4 rounds give a pseudo-random permutation
_CHUNK = _BLOCK * 64  # positions generated per vectorised step

# domain separation for the counter-based generators
_ROOT, _SPLIT, _ARRANGE, _PERM = 1, 2, 3, 4



def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


def _round(x: np.ndarray, key: np.ndarray | np.integer) -> np.ndarray:
    """Feistel round function: multiply (x ^ key) by an odd constant and fold the high half down.

    The fold matters: the low bits of a product depend only on the low bits of its input, and the
    callers keep the low bits. Works in the dtype of ``x`` (uint32 is ~3x faster than uint64).
    """
    wide = x.dtype == np.uint64
    z = x ^ key
    z *= np.uint64(0x9E3779B97F4A7C15) if wide else np.uint32(0x9E3779B9)
    z ^= z >> (np.uint64(32) if wide else np.uint32(16))
    return z


def feistel_permute(x: np.ndarray, domain: int, keys: np.ndarray) -> np.ndarray:
    """Apply a keyed pseudo-random permutation of ``range(domain)`` to the values ``x``.

    A Feistel network on ``bits = ceil(log2(domain))`` bits (halves of sizes bits//2 and the rest,
    which swap every round) is a bijection on ``range(2**bits)``; cycle-walking (re-applying it to
    values that land outside ``domain``) restricts it to ``range(domain)``. That range is < 2 * domain,
    so few walks are needed. ``keys`` holds one key per round (each a scalar, or one per element).
    """
    if domain == 1:
        return np.zeros(len(x), dtype=np.int64)
    bits = max(2, int(domain - 1).bit_length())
    dtype = np.uint32 if bits <= 32 else np.uint64
    keys = keys.astype(dtype)  # uint32 keeps the low 32 bits of each key

    def once(v: np.ndarray) -> np.ndarray:
        n_left, n_right = bits // 2, bits - bits // 2
        left, right = v >> dtype(n_right), v & dtype((1 << n_right) - 1)
        for key in keys:
            new_right = left ^ (_round(right, key) & dtype((1 << n_left) - 1))
            left, right, n_left, n_right = right, new_right, n_right, n_left
        return (left << dtype(n_right)) | right

    out = once(x.astype(dtype))
    bad = np.flatnonzero(out >= domain)
    while bad.size:
        out[bad] = once(out[bad])
        bad = bad[out[bad] >= domain]
    return out.astype(np.int64)


class TaskSequence:
    """The task of every stream position: i.i.d. draws from ``probabilities``, counter-based (see the module doc).

    Shared by the map-style :class:`TemperatureMixtureSampler` and the streamed
    :class:`~hf_ptjf.streaming.MixtureStream`: the same seed and rates give the same task sequence in both.
    """

    def __init__(self, probabilities: Sequence[float], seed: int = 0) -> None:
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        if len(self.probabilities) >= 2**15:
            raise ValueError("at most 32,767 tasks are supported")
        self.seed = int(seed)
        self._nodes: dict[tuple[int, int, int], np.ndarray] = {}
        self._arrange_keys = np.random.SeedSequence([self.seed, _ARRANGE]).generate_state(_FEISTEL_ROUNDS, np.uint64)
        self._cached_block: tuple[int, np.ndarray] | None = None

    @property
    def num_tasks(self) -> int:
        return len(self.probabilities)

    def labels(self, start: int, stop: int) -> np.ndarray:
        """Task label of every position in ``[start, stop)`` (the last block is cached: short ranges are cheap)."""
        first, last = start // _BLOCK, -(-stop // _BLOCK)
        if last - first == 1:
            if self._cached_block is None or self._cached_block[0] != first:
                self._cached_block = (first, self.block_labels(first, first + 1))
            return self._cached_block[1][start - first * _BLOCK : stop - first * _BLOCK]
        return self.block_labels(first, last)[start - first * _BLOCK : stop - first * _BLOCK]

    def block_labels(self, first_block: int, last_block: int) -> np.ndarray:
        """Task label of every position in blocks ``[first_block, last_block)``.

        Each block lists its labels sorted (from its tree counts) and then shuffles them with a
        Feistel permutation of its 4,096 slots keyed by the block number, all blocks at once.
        """
        blocks = np.arange(first_block, last_block, dtype=np.int64)
        k = self.num_tasks
        eras, leaves = np.divmod(blocks, 1 << _TREE_DEPTH)
        counts = np.stack([self._node(int(e), _TREE_DEPTH, int(leaf)) for e, leaf in zip(eras, leaves)])
        sorted_labels = np.repeat(np.tile(np.arange(k), len(blocks)), counts.reshape(-1))
        # (rounds, blocks, 1) keys broadcast over a (blocks, 4,096) grid of slots: no per-slot keys;
        # 4,096 is a power of two, so the permutation needs no cycle-walking.
        keys = _round(blocks.astype(np.uint64)[None, :, None], self._arrange_keys[:, None, None])
        slots = np.broadcast_to(np.arange(_BLOCK, dtype=np.uint32), (len(blocks), _BLOCK))
        shuffled = feistel_permute(slots, _BLOCK, keys).reshape(-1)
        return sorted_labels[np.repeat((blocks - first_block) * _BLOCK, _BLOCK) + shuffled]

    def counts_before_block(self, block: int) -> np.ndarray:
        era, leaf = divmod(block, 1 << _TREE_DEPTH)
        counts = np.zeros(self.num_tasks, dtype=np.int64)
        for e in range(era):  # earlier eras: one multinomial each (2**29 positions per era)
            counts += self._node(e, 0, 0)
        for level in range(1, _TREE_DEPTH + 1):
            idx = leaf >> (_TREE_DEPTH - level)
            if idx & 1:  # we are a right child: everything in the left sibling came before
                counts += self._node(era, level, idx - 1)
        return counts

    def _node(self, era: int, level: int, idx: int) -> np.ndarray:
        """Task counts of tree node (era, level, idx); node covers 2**(depth-level) blocks."""
        key = (era, level, idx)
        if key in self._nodes:
            return self._nodes[key]
        if level == 0:
            counts = _rng(self.seed, _ROOT, era).multinomial(_ERA, self.probabilities).astype(np.int64)
            self._cache(key, counts)
            return counts
        parent_idx = idx >> 1
        parent = self._node(era, level - 1, parent_idx)
        half = _ERA >> level
        left = _rng(self.seed, _SPLIT, era, level, parent_idx).multivariate_hypergeometric(
            parent, half, method="marginals"
        ).astype(np.int64)
        right = parent - left
        self._cache((era, level, parent_idx * 2), left)
        self._cache((era, level, parent_idx * 2 + 1), right)
        return right if idx & 1 else left

    def _cache(self, key: tuple[int, int, int], counts: np.ndarray) -> None:
        if len(self._nodes) > 65_536:  # bounded memory for endless streams; recomputation is exact
            self._nodes.clear()
        self._nodes[key] = counts


class TemperatureMixtureSampler(torch.utils.data.Sampler[int]):
    """Sample indices of a concatenation of K tasks with per-task rates.

    Task ``k`` occupies the contiguous index block ``[offsets[k], offsets[k] + task_sizes[k])`` of the
    concatenated dataset, in the given order.

    Args:
        task_sizes: number of examples of each task (all > 0).
        num_samples: indices yielded per epoch (``len(sampler)``); the Trainer sizes it to
            ``max_steps * total_batch_size``.
        probabilities: the sampling probability of each task (computed by :mod:`hf_ptjf.mixing`; non-negative,
            normalised here). Without them, ``temperature`` gives q_i ∝ (D_i / sum D) ** (1 / temperature).
        temperature: a convenience for ``probabilities=hf_ptjf.mixing.temperature(task_sizes, temperature)``
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
            mixing.static(probabilities, sizes) if probabilities is not None else mixing.temperature(sizes, temperature)
        )
        self.epoch = 0
        self._resume_position: int | None = None
        self._position = 0  # next global position this sampler will yield (for state_dict)
        self.tasks = TaskSequence(self.probabilities, self.seed)

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
        for chunk_start in range(start, end, _CHUNK):
            for index in self.indices(chunk_start, min(end, chunk_start + _CHUNK)).tolist():
                self._position += 1
                yield index

    def indices(self, start: int, stop: int) -> np.ndarray:
        """The dataset indices at global stream positions ``[start, stop)`` (vectorised)."""
        if start < 0 or stop < start:
            raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}.")
        if start == stop:
            return np.zeros(0, dtype=np.int64)
        first, last = start // _BLOCK, -(-stop // _BLOCK)
        out = []
        for b in range(first, last, _CHUNK // _BLOCK):  # bounded memory for long ranges
            chunk = self._range_indices(b, min(last, b + _CHUNK // _BLOCK))
            lo = max(start - b * _BLOCK, 0)
            out.append(chunk[lo : stop - b * _BLOCK])
        return np.concatenate(out)

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
        block, within = divmod(int(position), _BLOCK)
        counts = self.tasks.counts_before_block(block)
        if within:
            counts = counts + np.bincount(self.tasks.block_labels(block, block + 1)[:within],
                                          minlength=len(self.task_sizes))
        return counts

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is, plus what it was built from (to refuse resuming a different mixture)."""
        return {
            "position": int(self._position),
            "epoch": int(self.epoch),
            "seed": self.seed,
            "num_samples": self.num_samples,
            "task_sizes": self.task_sizes.tolist(),
            "probabilities": self.probabilities.tolist(),
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
        self.epoch = int(state["epoch"])
        self._position = self._resume_position = int(state["position"])

    # ---------------------------------------------------------------- the stream
    def _range_indices(self, first_block: int, last_block: int) -> np.ndarray:
        """Dataset indices of all positions in blocks ``[first_block, last_block)``, vectorised."""
        labels = self.tasks.block_labels(first_block, last_block)
        before = self.tasks.counts_before_block(first_block)
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
                keys = np.random.SeedSequence([self.seed, _PERM, task, p]).generate_state(_FEISTEL_ROUNDS, np.uint64)
                within = np.arange(first, first + take, dtype=np.int64)
                sorted_out[pos : pos + take] = self.offsets[task] + feistel_permute(within, size, keys)
                pos, occurrence, n = pos + take, occurrence + take, n - take
        out = np.empty_like(sorted_out)
        out[order] = sorted_out
        return out
