"""Where extracted corpora live and how cache entries are keyed and written.

Extracted Bible text is never written inside the repository: it goes to
``$HF_PTJF_CACHE/bible`` (default ``~/.cache/hf_ptjf/bible``) or to an explicit ``cache_dir``.
Entries are keyed by a hash of everything that determines their bytes, and written to a temporary
directory first, then renamed, so concurrent runs never see half-written data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import datasets

__all__ = ["default_cache_dir", "resolve_cache_dir", "stable_hash", "cached_dataset_dict"]


def default_cache_dir() -> Path:
    """``$HF_PTJF_CACHE/bible`` if the variable is set, else ``~/.cache/hf_ptjf/bible``."""
    root = os.environ.get("HF_PTJF_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "hf_ptjf") / "bible"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def stable_hash(obj: Any, n: int = 16) -> str:
    """Hex digest of a JSON-serialisable object (keys sorted), stable across runs and machines."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def cached_dataset_dict(path: Path, build: Callable[[], datasets.DatasetDict]) -> datasets.DatasetDict:
    """Load ``path`` if present, else ``build()`` it, save it there atomically and load it back.

    Loading back from disk makes every split memory-mapped and file-backed, so later
    ``Dataset.map`` calls (tokenisation) are cached next to it.
    """
    if not (path / "dataset_dict.json").is_file():
        dsd = build()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            dsd.save_to_disk(str(tmp))
            try:
                os.rename(tmp, path)
            except OSError:  # another process won the race: keep its copy
                if not (path / "dataset_dict.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(path))
