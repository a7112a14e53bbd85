"""Held-out verse ids shared by every task, seeded subsampling and carving of dev/test splits.

Why one global held-out set: every Bible task shares the English side, so a verse that is in one
task's training split and another task's test split leaks (the model has seen its English source,
and through multilingual transfer, its meaning). The dev/test verse ids are therefore drawn once
from the whole Bible, from ``(seed, num_dev, num_test)`` alone, and removed from the training split
of every task and every language, monolingual (LM) tasks included.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..checks import is_integer

__all__ = ["HeldOut", "heldout_verse_ids", "subsample_indices", "carve_indices", "task_rng"]


@dataclass(frozen=True)
class HeldOut:
    """Sorted verse keys of the shared validation and test sets."""

    dev: np.ndarray
    test: np.ndarray

    @property
    def all(self) -> np.ndarray:
        return np.union1d(self.dev, self.test)


def heldout_verse_ids(universe: np.ndarray, num_dev: int, num_test: int, seed: int) -> HeldOut:
    """Draw ``num_dev`` + ``num_test`` distinct ids from ``universe`` (deterministic in ``seed``)."""
    universe = np.unique(np.asarray(universe, np.int64))
    for name, n in (("num_dev", num_dev), ("num_test", num_test)):
        if not is_integer(int(n) if isinstance(n, np.integer) else n, minimum=0):
            raise ValueError(f"`{name}` must be an integer >= 0, got {n!r}.")
    if num_dev + num_test >= universe.size:
        raise ValueError(
            f"`num_dev` + `num_test` = {num_dev + num_test} leaves no training verses out of {universe.size}; "
            "lower them."
        )
    perm = np.random.default_rng(seed).permutation(universe)
    return HeldOut(np.sort(perm[:num_dev]), np.sort(perm[num_dev : num_dev + num_test]))


def task_rng(seed: int, name: str) -> np.random.Generator:
    """A generator seeded by (seed, task name): tasks get different but reproducible draws."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def subsample_indices(n: int, size: int | None, rng: np.random.Generator, *, field: str = "train_size") -> np.ndarray:
    """Sorted indices of a uniform sample of ``size`` out of ``n`` rows (all rows if ``size`` is None)."""
    if size is None:
        return np.arange(n)
    if not is_integer(int(size) if isinstance(size, np.integer) else size, minimum=1):
        raise ValueError(f"`{field}` must be a positive integer or null, got {size!r}.")
    if size > n:
        raise ValueError(
            f"`{field}`={size} but only {n} training examples are available; lower `{field}` or remove it."
        )
    return np.sort(rng.choice(n, size=size, replace=False))


def carve_indices(n: int, num_dev: int, num_test: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train, dev, test) sorted index arrays, seeded.

    Used for user data that has no validation/test split of its own. Small datasets keep at least
    80% for training: dev and test are each capped at 10% of the rows.
    """
    cap = max(1, n // 10)
    nd, nt = min(num_dev, cap), min(num_test, cap)
    if n - nd - nt < 1:
        raise ValueError(f"cannot carve dev/test splits out of {n} examples; provide more data or your own splits.")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[nd + nt :]), np.sort(perm[:nd]), np.sort(perm[nd : nd + nt])
