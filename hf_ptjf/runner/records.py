"""What a run writes about itself, and how it checks what it finds: the run directory.

* ``recipe.resolved.json``: the config the directory belongs to (a rerun with another config is refused);
* ``stages/<i>-<name>/stage.json``: a finished stage, written atomically with its output's sha256 sums, so a
  rerun skips it; an interrupted stage resumes from its newest *complete* checkpoint (:func:`latest_checkpoint`);
* ``results.json`` / ``report.md``: rewritten after every stage.

Every write here is atomic (temp file + rename), so a crash never leaves a half-written record.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..files import atomic_write_text, folder_sha256
from ..recipe import RecipeError, StageSpec, with_added_defaults

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_RECORD", "REPORT_NAME", "RESULTS_NAME", "STAGE_RECORD", "RunDirectory", "StageResult",
           "latest_checkpoint"]

RESULTS_NAME = "results.json"
REPORT_NAME = "report.md"
STAGE_RECORD = "stage.json"
CONFIG_RECORD = "recipe.resolved.json"


@dataclass
class StageResult:
    """What one finished stage did (a row of results.json `stages`)."""

    index: int
    name: str
    steps: int
    wall_time_s: float
    tasks: list[str]
    rates: dict[str, float]
    output_dir: str
    files_sha256: dict[str, str]
    hub_repo: str | None = None
    hub_sha: str | None = None
    init: Any = None
    # eval_<task>_<metric> numbers; eval_<task>_off_target_note, a sentence, where the detector lacks the target
    metrics: dict[str, float | str] = field(default_factory=dict)
    # what the stage trained on per task (hf_ptjf.seen: one field per SEEN_UNITS; characters only where counted)
    examples_seen: dict[str, int] = field(default_factory=dict)
    target_tokens_seen: dict[str, int] = field(default_factory=dict)
    characters_seen: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    # a few decoded hypotheses per task (with their detected language and off-target verdict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    parameters: int | None = None  # of the model the stage trained (LoRA: base + adapter)
    trainable_parameters: int | None = None  # what the optimizer updated (LoRA: the adapter only)
    adapter: bool = False  # the output is a LoRA adapter (its config pins the base), not full weights
    # an online mixture's strategy, parameters, rate updates and last rates (`rates` are its first ones); None: fixed
    online: dict[str, Any] | None = None


def _checkpoint_problem(folder: Path) -> tuple[str, str] | None:
    """None if ``folder`` is a complete, readable checkpoint, else ``("incomplete" | "damaged", why)``.

    The Trainer writes ``trainer_state.json`` last (after ``mixture_state.json``, the weights, optimizer,
    scheduler and RNG states), so a folder without a readable one is a save that a crash cut short. A folder
    with one but with a missing or truncated file was damaged afterwards. Cheap structural checks only:
    safetensors headers against the file size, the zip directory of torch files, no full read.
    """
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "incomplete", "it has no readable trainer_state.json: its save was interrupted"
    try:
        json.loads((folder / "mixture_state.json").read_text())
    except (OSError, ValueError):
        return "damaged", "mixture_state.json is missing or unreadable"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError):
            return "damaged", f"{index.name} is unreadable"
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    elif any(folder.glob("global_step*")):  # DeepSpeed without 16-bit weights: its own shards
        shards = []
    else:
        return "damaged", "it holds no model weights (model.safetensors)"
    for name in shards:
        why = _safetensors_problem(folder / name)
        if why:
            return "damaged", why
    for path in sorted([*folder.glob("*.pt"), *folder.glob("*.pth")]):
        try:
            zipfile.ZipFile(path).close()
        except (OSError, zipfile.BadZipFile):
            return "damaged", f"{path.name} is truncated or not a torch file"
    return None


def _safetensors_problem(path: Path) -> str | None:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                return f"{path.name} is truncated"
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return f"{path.name} is missing or has an unreadable header"
    if size != 8 + n + end:
        return f"{path.name} is truncated or damaged ({size} bytes, its header says {8 + n + end})"
    return None


def _first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key at which two JSON values differ, with both values (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{path}.{i}")
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def latest_checkpoint(stage_dir: Path, stage_name: str) -> str | None:
    """The newest complete checkpoint of a stage, to resume from (None: start the stage from its ``init``).

    transformers' ``get_last_checkpoint`` takes the highest step even when a crash cut that save short. An
    interrupted save is skipped with a warning (the resumed run rewrites it when it gets there); a complete
    checkpoint with a damaged file is refused with the fix, and nothing is deleted either way.
    """
    if not stage_dir.is_dir():
        return None
    pattern = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")
    found = sorted(
        ((int(m.group(1)), p) for p in stage_dir.iterdir() if p.is_dir() and (m := pattern.fullmatch(p.name))),
        reverse=True,
    )
    for i, (_, folder) in enumerate(found):
        problem = _checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        kind, why = problem
        if kind == "incomplete":
            logger.warning("stage %s: not resuming from %s: %s", stage_name, folder, why)
            continue
        older = next((f for _, f in found[i + 1:] if _checkpoint_problem(f) is None), None)
        previous = f"the previous complete checkpoint {older.name}" if older else "the stage's start"
        raise RecipeError(
            f"stage `{stage_name}`: checkpoint {folder} is damaged ({why}); nothing was changed. Move that folder "
            f"away to resume from {previous}, or rerun with --start-over to discard the whole run."
        )
    return None


class RunDirectory:
    """The output directory of one run; only the main process writes (``is_main``)."""

    def __init__(self, path: str | Path, is_main: bool = True) -> None:
        self.path = Path(path)
        self.is_main = is_main

    def stage_dir(self, index: int, stage: StageSpec) -> Path:
        return self.path / "stages" / f"{index}-{stage.name}"

    def check_claim(self, config: dict[str, Any], *, start_over: bool = False) -> None:
        """What :meth:`claim` would refuse, checked without writing anything: an output_dir that cannot be
        written, or (without ``start_over``) a config that differs from the recorded one in a finished stage."""
        where = self.path
        while not where.exists():
            where = where.parent
        if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
            raise RecipeError(f"output_dir `{self.path}` is not writable (`{where}` is not a writable directory); "
                              "choose another output_dir=...")
        record = self.path / CONFIG_RECORD
        if record.exists() and not start_over:
            self._finished_stages_unchanged(_recorded_config(record), _plain(config))

    def claim(self, config: dict[str, Any], *, start_over: bool = False) -> None:
        """Record the resolved config. A directory made with another config is continued when only stages that
        have not finished changed (their partial checkpoints are moved aside, not deleted); a change that touches
        a finished stage is refused, naming the key, unless ``start_over`` (then the old run is discarded).
        Call it only once the whole config has been checked (:meth:`check_claim` first): it is the first write."""
        if not self.is_main:
            return
        record = self.path / CONFIG_RECORD
        mine = _plain(config)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write_test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise RecipeError(
                f"output_dir `{self.path}` is not writable ({e.strerror}); choose another output_dir=..."
            ) from e
        old = _recorded_config(record) if record.exists() else mine
        if old != mine:
            if start_over:
                # the old config record goes last: a start-over cut short is still refused without --start-over
                for child in sorted(self.path.iterdir(), key=lambda c: c == record):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            else:
                self._set_aside_unfinished(old, self._finished_stages_unchanged(old, mine))
        atomic_write_text(record, json.dumps(mine, indent=2, sort_keys=True))

    def _finished_stages_unchanged(self, old: dict[str, Any], new: dict[str, Any]) -> int:
        """How many stages of the recorded run finished; raises if the new config changes any of them."""
        stages = old.get("stages") or []
        done = 0
        while done < len(stages) and (self.path / "stages" / f"{done}-{stages[done]['name']}" / STAGE_RECORD).is_file():
            done += 1
        key = _first_difference({**old, "stages": stages[:done]}, {**new, "stages": (new.get("stages") or [])[:done]})
        if done and key is not None:
            path, was, now = key
            raise RecipeError(
                f"output_dir `{self.path}` holds a run with a different config for its finished stage(s) "
                f"{', '.join(s['name'] for s in stages[:done])}: `{path}` was {was!r}, now {now!r}; nothing was "
                "changed. Change only stages that have not finished, use a new output_dir=..., or pass --start-over "
                "to discard that run."
            )
        return done

    def _set_aside_unfinished(self, old: dict[str, Any], done: int) -> None:
        stages = old.get("stages") or []
        aside = self.path / "stages" / f".superseded-{time.strftime('%Y%m%d-%H%M%S')}"
        for i, stage in enumerate(stages[done:], start=done):
            partial = self.path / "stages" / f"{i}-{stage['name']}"
            if partial.is_dir():  # checkpoints made under the old config: kept, but not resumed from
                aside.mkdir(parents=True, exist_ok=True)
                partial.rename(aside / partial.name)
        logger.warning(
            "output_dir %s: the config changed in stages that had not finished; reusing the finished stage(s) %s%s",
            self.path, ", ".join(s["name"] for s in stages[:done]) or "(none)",
            f"; partial checkpoints moved to {aside}" if aside.is_dir() else "",
        )

    def keep_tokenizer(self, source: str | Path) -> None:
        """A copy of the tokenizer the run trained (it lives in the data cache) in the run directory."""
        if self.is_main:
            shutil.copytree(source, self.path / "tokenizer", dirs_exist_ok=True)

    def finished_stage(self, index: int, stage: StageSpec) -> StageResult | None:
        """A stage recorded as finished (and whose output is intact), else None."""
        record = self.stage_dir(index, stage) / STAGE_RECORD
        if not record.exists():
            return None
        result = StageResult(**json.loads(record.read_text()))
        final = Path(result.output_dir)
        if not final.is_dir() or folder_sha256(final) != result.files_sha256:
            raise RecipeError(
                f"stage `{stage.name}` is recorded as finished but its output {final} is missing or changed. "
                "Restore it, or rerun with --start-over."
            )
        logger.info("stage %s already finished (%s); skipping", stage.name, record)
        return result

    def record_stage(self, stage: StageSpec, result: StageResult) -> None:
        """Mark a stage finished: its record (with the output's sha256 sums) is written last, atomically."""
        if self.is_main:
            result.files_sha256 = folder_sha256(Path(result.output_dir))
            atomic_write_text(self.stage_dir(result.index, stage) / STAGE_RECORD,
                              json.dumps(asdict(result), indent=2, default=str))

    def write_samples(self, index: int, stage: StageSpec, samples: dict[str, list[dict[str, Any]]]) -> list[Path]:
        """``samples_<task>.jsonl`` in the stage directory: every decoded hypothesis beside source and reference, with
        its detected ``language`` and ``off_target`` verdict."""
        paths = []
        if self.is_main:
            for task, rows in samples.items():
                path = self.stage_dir(index, stage) / f"samples_{task}.jsonl"
                atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                paths.append(path)
        return paths

    def write_plots(self, results: dict[str, Any]) -> dict[str, str]:
        """``plots/*.png`` (dev loss, training loss, examples seen per task across stages); paths relative to the
        run directory, for report.md."""
        if not self.is_main:
            return {}
        from .curves import plot_run  # matplotlib: imported when a run draws its curves, not with the runner

        return {name: str(path.relative_to(self.path)) for name, path in plot_run(results, self.path / "plots").items()}

    def write_results(self, results: dict[str, Any], report: str | None = None) -> None:
        """``results.json``, and ``report.md`` when given (the final write)."""
        if self.is_main:
            atomic_write_text(self.path / RESULTS_NAME, json.dumps(results, indent=2, default=str))
            if report is not None:
                atomic_write_text(self.path / REPORT_NAME, report)


def _recorded_config(record: Path) -> dict[str, Any]:
    """The config a run directory records, with fields added by later versions at their defaults."""
    return _plain(with_added_defaults(json.loads(record.read_text())))


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    """The config as its JSON record reads back (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(config, sort_keys=True, default=str))
