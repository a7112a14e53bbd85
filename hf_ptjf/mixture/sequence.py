"""The task sequence: which task each position of a mixture draws, and which example within it, resumable in O(1).

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

from typing import Sequence

import numpy as np


__all__ = ["BLOCK", "CHUNK", "TaskSequence", "feistel_permute", "permutation_keys"]

_BLOCK_BITS = 12  # 4,096 positions per block
_TREE_DEPTH = 17  # blocks per era = 2**17
BLOCK = 1 << _BLOCK_BITS
_ERA = BLOCK << _TREE_DEPTH  # 2**29 < 1e9, numpy's hypergeometric limit
_FEISTEL_ROUNDS = 4  # Luby-Rackoff: 4 rounds give a pseudo-random permutation
CHUNK = BLOCK * 64  # positions generated per vectorised step

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


def permutation_keys(seed: int, task: int, epoch: int) -> np.ndarray:
    """The Feistel round keys of task ``task``'s example order in its pass ``epoch`` (a fresh order every pass)."""
    return np.random.SeedSequence([seed, _PERM, task, epoch]).generate_state(_FEISTEL_ROUNDS, np.uint64)


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
        first, last = start // BLOCK, -(-stop // BLOCK)
        if last - first == 1:
            if self._cached_block is None or self._cached_block[0] != first:
                self._cached_block = (first, self.block_labels(first, first + 1))
            return self._cached_block[1][start - first * BLOCK : stop - first * BLOCK]
        return self.block_labels(first, last)[start - first * BLOCK : stop - first * BLOCK]

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
        slots = np.broadcast_to(np.arange(BLOCK, dtype=np.uint32), (len(blocks), BLOCK))
        shuffled = feistel_permute(slots, BLOCK, keys).reshape(-1)
        return sorted_labels[np.repeat((blocks - first_block) * BLOCK, BLOCK) + shuffled]

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
