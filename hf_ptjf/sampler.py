"""`TemperatureMixtureSampler`: a deterministic, resumable index stream over K concatenated tasks.

The stream is a function of (seed, sizes, rates) and of the position only, so any part of it can be
generated without replaying what came before:

* Task of each position: i.i.d. draws from the rates. Positions are grouped in blocks of 4,096; the
  per-block task counts come from a binary tree whose root holds the multinomial counts of a whole
  "era" of 2**29 positions and whose children split their parent's counts with a multivariate
  hypergeometric draw. Given its counts, a block is a uniformly random arrangement of its labels.
  The result has exactly the law of i.i.d. categorical draws, and the number of times each task
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

__all__ = ["TemperatureMixtureSampler"]

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


def _mix64(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """splitmix64 finaliser of (x ^ key): the Feistel round function (uint64 arithmetic wraps)."""
    z = (x ^ key) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def feistel_permute(x: np.ndarray, domain: int, keys: np.ndarray) -> np.ndarray:
    """Apply a keyed pseudo-random permutation of ``range(domain)`` to the values ``x``.

    A balanced Feistel network on 2*h bits (2**(2h) >= domain) is a bijection on that power-of-two
    range; cycle-walking (re-applying it to values that land outside ``domain``) restricts it to a
    bijection on ``range(domain)``. The range is < 4 * domain, so few walks are needed.
    """
    if domain == 1:
        return np.zeros_like(x)
    half = max(1, (int(domain - 1).bit_length() + 1) // 2)
    half_mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)

    def once(v: np.ndarray) -> np.ndarray:
        left, right = v >> shift, v & half_mask
        for key in keys:
            left, right = right, left ^ (_mix64(right, key) & half_mask)
        return (left << shift) | right

    out = once(x.astype(np.uint64))
    bad = out >= np.uint64(domain)
    while bad.any():
        out[bad] = once(out[bad])
        bad = out >= np.uint64(domain)
    return out.astype(np.int64)


class TemperatureMixtureSampler(torch.utils.data.Sampler[int]):
    """Sample indices of a concatenation of K tasks with per-task rates.

    Task ``k`` occupies the contiguous index block ``[offsets[k], offsets[k] + task_sizes[k])`` of the
    concatenated dataset, in the given order.

    Args:
        task_sizes: number of examples of each task (all > 0).
        num_samples: indices yielded per epoch (``len(sampler)``); the Trainer sizes it to
            ``max_steps * total_batch_size``.
        temperature: rates q_i ∝ (D_i / sum D) ** (1 / temperature) (1.0 = proportional).
        weights: fixed per-task weights (scalarization); when given they override the temperature.
        seed: the whole stream is a function of the seed (and sizes, rates); identical on every rank.

    Epoch ``e`` yields the global stream positions ``[e * num_samples, (e + 1) * num_samples)``, so
    epochs continue one endless stream rather than repeating it.
    """

    def __init__(
        self,
        task_sizes: Sequence[int],
        num_samples: int,
        temperature: float = 1.0,
        weights: Sequence[float] | None = None,
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
            mixing.static(weights, sizes) if weights is not None else mixing.temperature(sizes, temperature)
        )
        self.epoch = 0
        self._resume_position: int | None = None
        self._position = 0  # next global position this sampler will yield (for state_dict)
        self._nodes: dict[tuple[int, int, int], np.ndarray] = {}

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
        counts = self._counts_before_block(block)
        if within:
            counts = counts + np.bincount(self._block_labels(block)[:within], minlength=len(self.task_sizes))
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
    def _block_labels(self, block: int) -> np.ndarray:
        era, leaf = divmod(block, 1 << _TREE_DEPTH)
        counts = self._node(era, _TREE_DEPTH, leaf)
        labels = np.repeat(np.arange(len(counts)), counts)
        return _rng(self.seed, _ARRANGE, era, leaf).permutation(labels)

    def _range_indices(self, first_block: int, last_block: int) -> np.ndarray:
        """Dataset indices of all positions in blocks ``[first_block, last_block)``, vectorised."""
        labels = np.concatenate([self._block_labels(b) for b in range(first_block, last_block)])
        before = self._counts_before_block(first_block)
        # j = how many times this slot's task was drawn before it: prior blocks + rank within the range
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=len(before)))[:-1]])
        rank = np.empty_like(order)
        rank[order] = np.arange(len(labels)) - starts[labels[order]]
        passes, within = np.divmod(before[labels] + rank, self.task_sizes[labels])
        width = int(passes.max()) + 1
        group = labels * width + passes  # one Feistel key per (task, pass)
        out = np.empty(len(labels), dtype=np.int64)
        for g in np.unique(group).tolist():
            task, p = divmod(g, width)
            sel = group == g
            keys = np.random.SeedSequence([self.seed, _PERM, task, p]).generate_state(_FEISTEL_ROUNDS, np.uint64)
            out[sel] = self.offsets[task] + feistel_permute(within[sel], int(self.task_sizes[task]), keys)
        return out

    def _counts_before_block(self, block: int) -> np.ndarray:
        era, leaf = divmod(block, 1 << _TREE_DEPTH)
        counts = np.zeros(len(self.task_sizes), dtype=np.int64)
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
