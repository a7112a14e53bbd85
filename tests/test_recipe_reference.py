"""Recorded recipes: what every shipped recipe resolves to, pinned byte for byte (no data, no training).

A run directory records its config in ``recipe.resolved.json`` and a rerun compares the recipe with that record;
the data caches (extracted tasks, the recipe's tokenizer, streamed tasks' counted sizes) are keyed by hashes of the
config. A refactoring of the config layer that changed either would make every existing run directory refuse to
continue, or silently rebuild every cache. For each recipe in ``recipes/configs/*.yaml`` and ``tests/recipes/*.yaml``
this test computes, from the config alone:

* the sha256 of the ``recipe.resolved.json`` that :class:`hf_ptjf.runner.records.RunDirectory` writes (and the
  record itself, so that a failure shows which key moved);
* the tokenizer cache directory (:func:`hf_ptjf.data.prepare.recipe_tokenizer_cache`);
* each task's cache key (Bible tasks with a fixed database fingerprint; file tasks with no raw-data fingerprint:
  the part of the key the config determines), and a streamed task's size-cache key (no files, a fixed tokenizer);
* each stage's optimizer and LR-schedule training arguments, and whether the model is decoder-only.

The values were recorded from the code at commit aa3f61e (before the config redesign of issue 25) with::

    HF_PTJF_RECORD_REFERENCE=1 python -m pytest -q tests/test_recipe_reference.py

Rerun that command only for an intended change of the records or cache keys (every existing run directory and
data cache is affected), and say in the commit why they moved.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference" / "recipes.json"
RECORD = os.environ.get("HF_PTJF_RECORD_REFERENCE") == "1"
# (the sweeps' base recipes, repro_base_*.yaml, have no stages of their own: they are pinned through the sweeps' trials)
RECIPES = sorted(p for p in [*ROOT.glob("recipes/configs/*.yaml"), *ROOT.glob("tests/recipes/*.yaml")]
                 if not p.name.startswith("repro_base_"))


def _task_keys(cfg: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from hf_ptjf.data import bible_tasks, user_tasks
    from hf_ptjf.data.spec import TaskSpec

    monkeypatch.setattr(bible_tasks, "db_fingerprint", lambda: "fixed-db")
    d = cfg.data
    keys = {}
    for task in cfg.tasks:
        spec = TaskSpec.from_dict(task)
        if spec.source == "bible":
            keys[spec.name] = bible_tasks.bible_task_key(spec, d.num_dev, d.num_test, d.seed)
        else:
            keys[spec.name] = user_tasks.user_task_key(spec, {}, d.num_dev, d.num_test, d.seed)
    return keys


def _sizes_keys(cfg: Any, causal: bool) -> dict[str, str]:
    """The size-cache key of each streamed task, with no files and a fixed tokenizer (what the config decides)."""
    from hf_ptjf.data import prepare
    from hf_ptjf.data.cache import stable_hash
    from hf_ptjf.data.spec import TaskSpec

    specs = [TaskSpec.from_dict(t) for t in cfg.tasks]
    streamed = [s for s in specs if s.streaming]
    if not streamed:
        return {}
    fake_tokenizer = SimpleNamespace(backend_tokenizer=SimpleNamespace(to_str=lambda: "fixed-tokenizer"))
    streams = {s.name: SimpleNamespace(size={}, count_sizes=None) for s in streamed}
    corpora = {s.name: SimpleNamespace(stream=SimpleNamespace(files=[])) for s in streamed}
    sizes = prepare._task_sizes(cfg, streamed, corpora, {}, streams, fake_tokenizer, causal, {})
    return {name: stable_hash({"task": name, "key": key}) for name, key in sizes._keys.items()}


def _stage_arguments(cfg: Any) -> list[dict[str, Any]]:
    """Each stage's optimizer, schedule and optimizer options as the Trainer applies them. Recorded when the options
    were prefixed training arguments (``adam_beta2``, ``adafactor_beta1``); they now travel as the recipe's
    ``optimizer_args`` mapping, so the record is rebuilt in that flat form: the values must not have moved."""
    records = []
    for stage in cfg.stages:
        arguments = stage.optimization_arguments()
        prefix = "adafactor" if arguments["optim"] == "adafactor" else "adam"
        options = arguments.pop("optimizer_args", {})
        records.append({**arguments, **{f"{prefix}_{key}": value for key, value in options.items()}})
    return records


def config_record(cfg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Everything pinned for one resolved recipe, computed from its config alone."""
    from hf_ptjf.data.prepare import model_is_causal, recipe_tokenizer_cache
    from hf_ptjf.runner.records import CONFIG_RECORD, RunDirectory

    run_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    RunDirectory(run_dir).claim(cfg.to_dict())
    text = (run_dir / CONFIG_RECORD).read_bytes()
    causal = model_is_causal(cfg)
    return {
        "resolved_sha256": hashlib.sha256(text).hexdigest(),
        "resolved": json.loads(text),
        "tokenizer_cache": recipe_tokenizer_cache(cfg).name,
        "task_cache": _task_keys(cfg, monkeypatch),
        "sizes_cache": _sizes_keys(cfg, causal),
        "stage_arguments": _stage_arguments(cfg),
        "causal": causal,
    }


def _digest(record: dict[str, Any]) -> dict[str, str]:
    """A sweep trial's record, short: the resolved record's sha256 and one over the keys."""
    keys = {k: v for k, v in record.items() if k not in ("resolved", "resolved_sha256")}
    return {"resolved_sha256": record["resolved_sha256"],
            "keys_sha256": hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()}


def recipe_record(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A recipe's record; a sweep config's (``recipe:`` names its base) is the digest of each trial's record, as
    the sweep resolves and runs them."""
    from hf_ptjf.recipe import load_recipe, parse_recipe, read_recipe

    monkeypatch.setenv("HF_PTJF_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)  # sweeps name their base recipe from the repository root
    if "recipe" in read_recipe(path):
        from hf_ptjf.sweep import expand_trials, load_sweep

        trials = expand_trials(load_sweep(path))
        monkeypatch.chdir(tmp_path)  # a recipe's relative cache_dir is created here, not in the checkout
        return {"trials": {t.trial: _digest(config_record(parse_recipe(copy.deepcopy(t.recipe)), tmp_path,
                                                             monkeypatch)) for t in trials}}
    cfg = load_recipe(path)
    monkeypatch.chdir(tmp_path)
    return config_record(cfg, tmp_path, monkeypatch)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    if RECORD:
        return {}
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    out: dict[str, Any] = {}
    yield out
    if RECORD:  # (merged into the file: recording a subset with -k keeps the other recipes' records)
        old = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
        REFERENCE.write_text(json.dumps({**old, **out}, indent=1, sort_keys=True) + "\n")


def test_every_shipped_recipe_is_recorded(reference):
    if RECORD:
        pytest.skip("recording")
    assert RECIPES and sorted(reference) == sorted(_name(p) for p in RECIPES), \
        "a recipe was added or removed: record it (see the module docstring)"


@pytest.mark.parametrize("path", RECIPES, ids=_name)
def test_resolved_record_and_cache_keys_are_unchanged(path, tmp_path, monkeypatch, reference, recorded):
    record = recipe_record(path, tmp_path, monkeypatch)
    if RECORD:
        recorded[_name(path)] = record
        return
    expected = reference[_name(path)]
    if "trials" in expected:
        assert record == expected
        return
    assert record["resolved"] == expected["resolved"]  # (a readable diff first)
    assert record["resolved_sha256"] == expected["resolved_sha256"]  # then the bytes: 1 vs 1.0, key order, spacing
    for key in ("tokenizer_cache", "task_cache", "sizes_cache", "stage_arguments", "causal"):
        assert record[key] == expected[key], key
