"""Recipe configs: YAML -> :class:`RecipeConfig`, through :func:`load_recipe`, the one way in for every tool.

A recipe names the tasks, the model, the tokenizer and a list of stages (or a ``method`` shorthand,
expanded by :mod:`hf_ptjf.recipe.methods`). Top-level keys that are not recipe sections are
``Seq2SeqTrainingArguments`` fields, passed through over :data:`TRAINING_DEFAULTS`; anything else is
refused with a did-you-mean. The budget of a stage and its rates are derived here and in
:class:`hf_ptjf.mixture.Mixture`, so the runner, the sweep and ``hf-ptjf-inspect`` see the same numbers.

A recipe is parsed and validated once, here, into typed objects: the tasks are :class:`~hf_ptjf.data.spec.TaskSpec`
s, the model section a :class:`~hf_ptjf.model_spec.ModelArguments`, every other section a dataclass below; every later
layer reads those. Each concept checks its own values (the model spec its sizes, the task spec its source and
columns); this module checks what spans sections (stages against tasks, inits against stages, training keys).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..checks import did_you_mean, is_integer, is_number, size_in_bytes
from ..data.spec import TaskSpec
from ..mixture import Mixture, mixture_record
from ..model_spec import ModelArguments
from .errors import RecipeError
from .methods import expand_method
from .reading import apply_overrides, read_recipe
from .training import (LR_SCHEDULERS, OPTIMIZERS, TRAINING_DEFAULTS, check_optimizer_args,
                       check_training_values, stage_optimization_arguments, training_fields)

__all__ = [
    "LR_SCHEDULERS",  # (with OPTIMIZERS: the one mapping of a stage's optimizer and schedule, recipe.training)
    "OPTIMIZERS",
    "DataSpec",
    "EvalSpec",
    "HubSpec",
    "RecipeConfig",
    "StageReset",
    "StageSpec",
    "TokenizerSpec",
    "load_recipe",
    "parse_recipe",
    "with_added_defaults",
]

def _from_dict(cls: type, data: Mapping[str, Any] | None, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys with a did-you-mean."""
    data = dict(data or {})
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise RecipeError(f"unknown key `{where}.{key}`.{did_you_mean(key, names)} Allowed: {', '.join(names)}.")
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"`{where}`: {e}") from e


def _integers(spec: Any, names: tuple[str, ...], minimum: int) -> None:
    for name in names:
        value = getattr(spec, name)
        if not is_integer(value, minimum):
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class PeftSpec:
    """A stage that trains LoRA adapters (the ``peft`` library) on top of its init weights, which stay frozen.

    The stage's output (pushed, and what the next stage loads) is the adapter, whose config names its base at
    the pinned revision, or with ``merge: true`` the merged weights. A stage that starts from an adapter
    continues it with ``continue_adapter: true``; otherwise the adapter is merged into its base as it loads.
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: Any = "all-linear"  # module names (e.g. [q, v] for T5, [q_proj, v_proj] for Llama) or all-linear
    merge: bool = False
    continue_adapter: bool = False

    def __post_init__(self) -> None:
        _integers(self, ("r",), minimum=1)
        if not is_number(self.alpha, 0, open_low=True):
            raise ValueError(f"alpha must be a number > 0, got {self.alpha!r}; e.g. alpha: 16 (twice r)")
        if not is_number(self.dropout, 0, 1):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        names = [self.target_modules] if isinstance(self.target_modules, str) else self.target_modules
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"target_modules must be a list of module names or all-linear, got {self.target_modules!r}")
        for flag in ("merge", "continue_adapter"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, got {getattr(self, flag)!r}")

    def lora_config(self, task_type: str) -> Any:
        """The ``peft.LoraConfig`` of this spec (``task_type``: SEQ_2_SEQ_LM or CAUSAL_LM)."""
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type=task_type)


OPTIMIZER_RESETS = ("fresh", "keep")
LR_SCHEDULE_RESETS = ("fresh", "continue", "anneal")


@dataclass
class StageReset:
    """What a stage starts anew at its start (the YAML ``reset:`` of a stage); the default is the paper's reset.

    * ``optimizer``: ``fresh`` (empty state) or ``keep`` (the previous stage's final optimizer state: AdamW moments,
      Adafactor factors);
    * ``lr_schedule``: ``fresh`` (the stage's own schedule from step 0, warmup included), ``continue`` (the rest of
      the previous stage's schedule: the schedule spans the chain of stages linked by ``continue``, warming up once)
      or ``anneal`` (linear decay from the previous stage's last LR to 0 over this stage, as OLMo 2's annealing).

    How the runner carries these over is :mod:`hf_ptjf.runner.resets`.
    """

    optimizer: str = "fresh"
    lr_schedule: str = "fresh"

    def __post_init__(self) -> None:
        for name, allowed in (("optimizer", OPTIMIZER_RESETS), ("lr_schedule", LR_SCHEDULE_RESETS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}."
                                 f"{did_you_mean(value, allowed)}")

    @property
    def is_default(self) -> bool:
        """The paper's reset (a fresh optimizer and a fresh schedule)."""
        return (self.optimizer, self.lr_schedule) == ("fresh", "fresh")

    def describe(self) -> str:
        """``optimizer fresh, lr_schedule fresh`` (results and model cards)."""
        return f"optimizer {self.optimizer}, lr_schedule {self.lr_schedule}"


@dataclass
class StageSpec:
    """One training stage: weights from ``init``; a fresh optimizer and LR schedule unless ``reset`` says otherwise."""

    name: str
    max_steps: int
    mixture: Mixture = field(default_factory=Mixture)
    init: Any = None  # "scratch" | "previous" | a stage name | {"hub": repo, "revision": sha} | {"path": dir}
    optimizer: str = "adamw"
    optimizer_args: dict[str, Any] = field(default_factory=dict)  # e.g. adafactor {beta1: 0.9, factored: false}
    lr_scheduler: str = "cosine"
    push_to_hub: bool | None = None  # default: the recipe's hub.mode != "none"
    training: dict[str, Any] = field(default_factory=dict)  # per-stage TrainingArguments overrides
    peft: PeftSpec | None = None  # LoRA adapters on frozen init weights
    reset: StageReset = field(default_factory=StageReset)  # what starts anew (default: optimizer and schedule)

    def __post_init__(self) -> None:
        if not is_integer(self.max_steps, minimum=1):  # (a bool is an int: `max_steps: true` once trained 1 step)
            raise ValueError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {sorted(LR_SCHEDULERS)}, got {self.lr_scheduler!r}")
        if not isinstance(self.optimizer_args, Mapping):
            raise ValueError(f"optimizer_args must be a mapping such as {{beta1: 0.9}}, got {self.optimizer_args!r}")

    def optimization_arguments(self) -> dict[str, Any]:
        """The training arguments of this stage's optimizer and LR schedule (``optim``, ``lr_scheduler_type`` and the
        optimizer's options), through the one mapping :func:`hf_ptjf.recipe.training.stage_optimization_arguments`."""
        return stage_optimization_arguments(self.optimizer, self.optimizer_args, self.lr_scheduler)

    def optimizer_training_args(self) -> dict[str, Any]:
        """The optimizer's options of :meth:`optimization_arguments` alone: ``{optimizer_args: {beta1: 0.9}}`` (the
        recipe's mapping, unrenamed), or ``{}``."""
        return {k: v for k, v in self.optimization_arguments().items() if k not in ("optim", "lr_scheduler_type")}


@dataclass
class HubSpec:
    """Where stage outputs go between stages. ``local`` starts the offline Hub server if no HF_ENDPOINT."""

    mode: str = "none"  # none (local paths) | local (offline test server) | remote (HF_ENDPOINT / huggingface.co)
    namespace: str = "hf-ptjf"
    repo_prefix: str | None = None  # default: the run name
    private: bool = True
    max_retries: int = 5  # retries of a failed push / verify / download (5xx, timeouts, connection errors)
    timeout: float = 60.0  # seconds per Hub HTTP request; a request still unanswered then is retried

    def __post_init__(self) -> None:
        if self.mode not in ("none", "local", "remote"):
            raise ValueError(f"mode must be none, local or remote, got {self.mode!r}")
        _integers(self, ("max_retries",), minimum=0)
        if not is_number(self.timeout, 0, open_low=True):
            raise ValueError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")


@dataclass
class EvalSpec:
    """End-of-stage evaluation: per-task loss on `loss_examples`, BLEU on `bleu_examples` with beam search."""

    loss_examples: int | None = 500
    bleu: bool = True
    bleu_examples: int = 100
    num_beams: int = 4
    max_new_tokens: int = 64
    split: str = "validation"

    def __post_init__(self) -> None:
        _integers(self, ("bleu_examples", "num_beams", "max_new_tokens"), minimum=1)
        if self.loss_examples is not None:
            _integers(self, ("loss_examples",), minimum=1)
        if not isinstance(self.bleu, bool):
            raise ValueError(f"bleu must be true or false, got {self.bleu!r}")
        if self.split not in ("validation", "test"):
            raise ValueError(f"split must be validation or test, got {self.split!r}")


@dataclass
class TokenizerSpec:
    """Use `path` (an existing tokenizer), or train SentencePiece on a tau-sampled corpus of all tasks."""

    path: str | None = None
    vocab_size: int = 8000
    tau: float = 3.33
    max_sentences: int = 200_000

    def __post_init__(self) -> None:
        if not is_number(self.tau, 0, float("inf"), open_low=True):
            raise ValueError(f"tau must be a number > 0 (1.0 samples the corpus proportionally), got {self.tau!r}")
        for name in ("vocab_size", "max_sentences"):
            value = getattr(self, name)
            if not is_integer(value, minimum=1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class DataSpec:
    """Held-out sizes, cache and sequence lengths shared by all tasks."""

    cache_dir: str | None = None
    num_dev: int = 500
    num_test: int = 500
    seed: int = 0
    max_source_length: int = 128
    max_target_length: int = 128
    # decoder-only lm rows: `document` restarts position ids at each document so attention stays inside it;
    # `row` is plain packing (attention over the whole row), for models whose attention ignores position ids
    packed_attention: str = "document"
    # streamed tasks: raw examples per window, the span of the (exactly resumable) shuffle; an LM window of 1,000
    # documents packs as a map-style batch does
    stream_window: int = 1000

    def __post_init__(self) -> None:
        _integers(self, ("num_dev", "num_test", "seed"), minimum=0)
        _integers(self, ("stream_window",), minimum=1)
        _integers(self, ("max_source_length", "max_target_length"), minimum=2)
        if self.packed_attention not in ("document", "row"):
            raise ValueError(f"packed_attention must be document or row, got {self.packed_attention!r}")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            raise ValueError(f"cache_dir must be a directory path, got {self.cache_dir!r}")


DEFAULT_MAX_SHARD_SIZE = "5GB"  # (hf_ptjf.shards.DEFAULT_MAX_SHARD_SIZE: transformers' and the Hub's convention)


@dataclass
class RecipeConfig:
    """A whole experiment. ``training`` holds the pass-through ``Seq2SeqTrainingArguments`` fields; ``tasks`` and
    ``model`` are typed (mappings given here are read with ``TaskSpec.from_dict`` / ``ModelArguments.from_dict``)."""

    output_dir: str
    stages: list[StageSpec]
    tasks: list[TaskSpec]
    run_name: str = "run"
    seed: int = 0
    method: str | None = None
    model: ModelArguments = field(default_factory=ModelArguments)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    data: DataSpec = field(default_factory=DataSpec)
    hub: HubSpec = field(default_factory=HubSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    training: dict[str, Any] = field(default_factory=dict)
    # each stage's consolidated output is written in safetensors shards of at most this size (the Hub's convention)
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE

    def __post_init__(self) -> None:
        self.tasks = [TaskSpec.from_dict(t) for t in self.tasks]
        self.model = ModelArguments.from_dict(self.model)
        if size_in_bytes(self.max_shard_size) is None:
            raise ValueError(f"`max_shard_size` must be a size such as \"5GB\", \"500MB\" or \"2GiB\" (or a number of "
                             f"bytes), got {self.max_shard_size!r}; e.g. max_shard_size=2GB.")

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def stage_tasks(self, stage: StageSpec) -> list[str]:
        """The tasks a stage trains on (its mixture's list, else every task of the recipe)."""
        return list(stage.mixture.tasks or self.task_names)

    def training_for(self, stage: StageSpec) -> dict[str, Any]:
        """A stage's pass-through training arguments: defaults, then the recipe's keys, then the stage's."""
        return {**TRAINING_DEFAULTS, **self.training, **stage.training}

    def stage_budget(self, stage: StageSpec, num_processes: int = 1) -> int:
        """Examples a stage draws: max_steps x per-device batch x gradient accumulation x processes."""
        kw = self.training_for(stage)
        return stage.max_steps * kw["per_device_train_batch_size"] * kw.get("gradient_accumulation_steps", 1) * num_processes

    def stage_rates(self, stage: StageSpec, sizes: Mapping[str, float] | Any, num_processes: int = 1) -> dict[str, float]:
        """A stage's sampling rate per task (its :class:`~hf_ptjf.mixture.Mixture` over its budget): ``sizes`` is a
        :class:`~hf_ptjf.data.sizes.TaskSizes` (any ``mixture.size_unit``), or ``{task: examples}``."""
        return stage.mixture.stage_rates(self.stage_tasks(stage), sizes, self.stage_budget(stage, num_processes))

    def to_dict(self) -> dict[str, Any]:
        """The config as a run records it (``recipe.resolved.json``; the tokenizer cache is keyed by it too): every
        section with its defaults filled in, the tasks and the model section as written (:mod:`hf_ptjf.written`)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "tasks":
                out[f.name] = [task.as_written() for task in value]
            elif f.name == "model":
                out[f.name] = value.as_written()
            elif f.name == "stages":
                out[f.name] = [_stage_record(dataclasses.asdict(stage)) for stage in value]
            else:
                out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
        return _recipe_record(out)


def _recipe_record(out: dict[str, Any]) -> dict[str, Any]:
    """Top-level fields added after runs were recorded, left out at their defaults (as a default ``reset`` is):
    the records and cache keys of every existing recipe stay as they were."""
    if out.get("max_shard_size") == DEFAULT_MAX_SHARD_SIZE:
        out.pop("max_shard_size")
    return out


def _stage_record(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage as the run records it: the default ``reset`` is left out, so that the records (and cache keys) of
    every recipe written before resets existed stay as they were (and so is an unset online strategy's part of the
    mixture)."""
    if stage.get("reset") == dataclasses.asdict(StageReset()):
        stage.pop("reset")
    if isinstance(stage.get("mixture"), dict):
        stage["mixture"] = mixture_record(stage["mixture"])
    return stage


_SECTIONS = {"tokenizer": TokenizerSpec, "data": DataSpec, "hub": HubSpec, "eval": EvalSpec}
_RECIPE_KEYS = {f.name for f in dataclasses.fields(RecipeConfig)} | {"method_args"}
# credentials never go in a recipe: the resolved config and the checkpoints' training args are saved with the run
_SECRET_KEYS = {"hub_token"}
_SECRET_MESSAGE = (
    "`{key}`: do not put a token in a recipe (it would be saved with the run's config and checkpoints); "
    "remove it and set the HF_TOKEN environment variable or run `hf auth login`."
)
# managed by the runner per stage; setting them at the top level would be silently overridden
_RUNNER_OWNED = {
    "max_steps", "optim", "lr_scheduler_type", "lr_schedule", "optimizer_args", "push_to_hub", "hub_model_id",
    "predict_with_generate",
}


def _training_keys(raw: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    """Pop the top-level keys that are pass-through training arguments out of ``raw`` (refusing the rest)."""
    training: dict[str, Any] = {}
    for key in list(raw):
        if key in _RECIPE_KEYS:
            continue
        if key in _SECRET_KEYS:
            raise RecipeError(_SECRET_MESSAGE.format(key=key))
        if key in _RUNNER_OWNED:
            raise RecipeError(f"`{key}` is set per stage by the runner; set it in a stage (or the recipe section) instead.")
        if key not in allowed:
            hint = did_you_mean(key, sorted(_RECIPE_KEYS | allowed))
            raise RecipeError(f"unknown config key `{key}`.{hint} (Not a recipe section nor a Seq2SeqTrainingArguments field.)")
        training[key] = raw.pop(key)
    return training


def _parse_tasks(tasks: Any) -> list[TaskSpec]:
    """Every task as the data layer reads it (sources, columns, Bible versions, languages), names unique."""
    if not tasks:
        raise RecipeError("`tasks` is empty: list at least one task (see hf_ptjf.data.TaskSpec).")
    names = [t.get("name") if isinstance(t, Mapping) else None for t in tasks]
    if None in names or len(set(names)) != len(names):
        raise RecipeError(f"every task needs a unique `name`; got {names}.")
    specs = []
    for i, task in enumerate(tasks):
        try:
            specs.append(TaskSpec.from_dict(task))
        except (TypeError, ValueError) as e:
            raise RecipeError(f"`tasks.{i}` (task `{task.get('name')}`): {e}") from e
    return specs


def _parse_model(model: Any) -> ModelArguments:
    """The ``model:`` section (empty: the defaults), checked by the model spec."""
    try:
        return ModelArguments.from_dict(model or {})
    except (TypeError, ValueError) as e:
        raise RecipeError(f"`model`: {e}") from e


def _parse_stages(raw: dict[str, Any], task_names: list[str], expanded: bool) -> list[StageSpec]:
    """The stages: given, or the expansion of ``method`` + ``method_args`` (popped from ``raw``)."""
    method = raw.get("method")
    method_args = raw.pop("method_args", None)
    if method is not None and not expanded:
        if raw.get("stages"):
            raise RecipeError("give either `method` (+ `method_args`) or `stages`, not both.")
        raw["stages"] = expand_method(method, method_args or {}, task_names)
    elif method_args is not None:
        raise RecipeError("`method_args` needs `method` (one of ptjf, scalarization, restart, transfer).")
    from_method = method is not None and not expanded  # (expanded: the user also edited the stages directly)
    stages = []
    for i, stage in enumerate(raw.get("stages") or []):
        try:
            stages.append(_parse_stage(stage, i, task_names))
        except RecipeError as e:
            if not from_method:
                raise
            # name the field the user wrote first: the stage exists only as the expansion of `method_args`
            origin = "method_args.high_resource / pretrain_mixture" if stage.get("name") == "pretrain" else \
                "method_args.mixture"
            if f"`stages.{i}.reset" in str(e):
                origin = "method_args.reset"
            raise RecipeError(f"`{origin}` (expanded into stage `{stage.get('name')}`): {e}") from None
    if not stages:
        raise RecipeError("`stages` is empty: give at least one stage, or a `method` shorthand.")
    _check_inits(stages)
    return stages


def _check_stage_training(stages: list[StageSpec], allowed: set[str]) -> None:
    """Each stage's ``training`` keys and ``optimizer_args``, by name."""
    for i, stage in enumerate(stages):
        if set(stage.training) & _SECRET_KEYS:
            raise RecipeError(_SECRET_MESSAGE.format(key=f"stages.{i}.training.{sorted(set(stage.training) & _SECRET_KEYS)[0]}"))
        bad = set(stage.training) - allowed
        if bad:
            key = sorted(bad)[0]
            raise RecipeError(f"unknown key `stages.{i}.training.{key}`.{did_you_mean(key, sorted(allowed))}")
        check_optimizer_args(stage.optimizer, stage.optimizer_args, f"stages.{i}.optimizer_args")


def parse_recipe(raw: Mapping[str, Any], *, expanded: bool = False) -> RecipeConfig:
    """Validate a recipe dict and expand its method shorthand (``expanded``: its ``stages`` already are the
    expansion of its ``method``, edited by stage overrides; ``method`` then only names the method)."""
    raw = dict(raw)
    allowed = training_fields()
    training = _training_keys(raw, allowed)
    if "output_dir" not in raw:
        raise RecipeError("`output_dir` is required (where checkpoints, results.json and report.md go).")
    tasks = _parse_tasks(raw.get("tasks"))
    stages = _parse_stages(raw, [t.name for t in tasks], expanded)
    sections = {key: _from_dict(cls, raw.get(key), key) for key, cls in _SECTIONS.items()}
    model = _parse_model(raw.get("model"))
    _check_stage_training(stages, allowed)
    check_training_values({**TRAINING_DEFAULTS, **training}, "")
    for i, stage in enumerate(stages):
        check_training_values(stage.training, f"stages.{i}.training.")
    if not is_integer(raw.get("seed", 0)):
        raise RecipeError(f"`seed` must be an integer, got {raw['seed']!r}; e.g. seed=0.")
    return _from_dict(RecipeConfig, {**raw, **sections, "tasks": tasks, "model": model, "stages": stages,
                                     "training": training}, "recipe")


def with_added_defaults(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config (``RecipeConfig.to_dict()``) recorded by an earlier version, with the fields added since
    at their defaults: what a run directory's record is compared with, so that a field a newer version added is not
    read as a change the user made (a run continues after an upgrade)."""
    out = _recipe_record(_fill_defaults(RecipeConfig, recorded))
    for key, cls in _SECTIONS.items():
        out[key] = _fill_defaults(cls, out.get(key))
    stages = []
    for stage in out.get("stages") or []:
        stage = _fill_defaults(StageSpec, stage)
        if isinstance(stage, dict):
            stage["mixture"] = _fill_defaults(Mixture, stage.get("mixture"))
            if stage.get("peft") is not None:
                stage["peft"] = _fill_defaults(PeftSpec, stage["peft"])
            stage = _stage_record(stage)
        stages.append(stage)
    out["stages"] = stages
    return out


def _fill_defaults(cls: type, values: Any) -> Any:
    """``values`` (a dataclass ``cls`` as a dict) with each missing field that has a default at that default."""
    if not isinstance(values, Mapping):
        return values
    out = dict(values)
    for f in dataclasses.fields(cls):
        if f.name in out:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def _parse_stage(raw: Mapping[str, Any], index: int, task_names: list[str]) -> StageSpec:
    where = f"stages.{index}"
    if not isinstance(raw, Mapping):
        raise RecipeError(f"`{where}` must be a mapping with name, max_steps, mixture, ...")
    raw = dict(raw)
    raw.setdefault("name", f"stage{index}")
    mixture = _from_dict(Mixture, raw.get("mixture"), f"{where}.mixture")
    for task in mixture.tasks or []:
        if task not in task_names:
            raise RecipeError(
                f"`{where}.mixture.tasks` names unknown task `{task}`.{did_you_mean(task, task_names)} "
                f"Tasks are {task_names}."
            )
    listed = mixture.tasks or task_names
    if mixture.online:
        try:
            mixture.online_strategy().check(len(listed))
        except ValueError as e:
            raise RecipeError(f"`{where}.mixture`: {e}") from e
    if isinstance(mixture.weights, Mapping):
        for task in mixture.weights:
            if task not in listed:
                raise RecipeError(f"`{where}.mixture.weights` names `{task}`, which is not in this stage's tasks {listed}.")
    elif mixture.weights is not None and len(mixture.weights) != len(listed):
        raise RecipeError(f"`{where}.mixture.weights` has {len(mixture.weights)} entries for {len(listed)} tasks {listed}.")
    if mixture.weights is not None:
        values = list(mixture.weights.values()) if isinstance(mixture.weights, Mapping) else list(mixture.weights)
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < float("inf") for w in values):
            raise RecipeError(f"`{where}.mixture.weights` must be numbers >= 0, got {mixture.weights}; e.g. {{{listed[0]}: 1.0}}.")
        if not any(w > 0 for w in mixture.weight_list(listed)):
            raise RecipeError(
                f"`{where}.mixture.weights` are all zero for the stage's tasks {listed}; give at least one task a weight > 0."
            )
    raw["mixture"] = mixture
    if raw.get("peft") is not None:
        raw["peft"] = _from_dict(PeftSpec, raw["peft"], f"{where}.peft")
    if "reset" in raw:
        if not isinstance(raw["reset"], Mapping):
            raise RecipeError(f"`{where}.reset` must be a mapping such as {{optimizer: keep, lr_schedule: continue}}, "
                              f"got {raw['reset']!r}.")
        raw["reset"] = _from_dict(StageReset, raw["reset"], f"{where}.reset")
    if "max_steps" not in raw:
        raise RecipeError(f"`{where}.max_steps` is required (a positive integer).")
    return _from_dict(StageSpec, raw, where)


def _check_inits(stages: list[StageSpec]) -> None:
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise RecipeError(f"stage names must be unique, got {names}.")
    for i, stage in enumerate(stages):
        if stage.init is None:
            stage.init = "scratch" if i == 0 else "previous"
        init = stage.init
        if init == "previous" and i == 0:
            raise RecipeError(f"`stages.0.init: previous`: the first stage has no previous stage; use `scratch`.")
        if isinstance(init, str) and init not in ("scratch", "previous"):
            if init not in names:
                raise RecipeError(f"`stages.{i}.init: {init}` is not a stage.{did_you_mean(init, names)}")
            if names.index(init) >= i:
                raise RecipeError(
                    f"`stages.{i}.init: {init}`: stage `{stage.name}` cannot start from `{init}`, which runs at "
                    "the same time or later. Initialise from an earlier stage, `previous`, or `scratch`."
                )
        if isinstance(init, Mapping) and not ({"hub"} <= set(init) <= {"hub", "revision"} or set(init) == {"path"}):
            raise RecipeError(f"`stages.{i}.init` must be scratch, previous, a stage name, {{hub, revision}} or {{path}}.")
        _check_peft(stages, i)


def _check_peft(stages: list[StageSpec], i: int) -> None:
    """LoRA stages must be reloadable: an adapter needs saved base weights, and its base is what it was trained on."""
    stage = stages[i]
    source = stages[i - 1] if stage.init == "previous" else next((s for s in stages if s.name == stage.init), None)
    from_adapter = source is not None and source.peft is not None and not source.peft.merge
    if stage.peft is not None and stage.init == "scratch":
        raise RecipeError(f"`stages.{i}.peft`: stage `{stage.name}` trains LoRA adapters on random weights that are "
                          "never saved, so its adapter could not be reloaded; initialise it from an earlier stage, a "
                          "Hub id or a path, or drop `peft` to train the whole model.")
    if stage.peft is not None and stage.peft.continue_adapter and not from_adapter:
        raise RecipeError(f"`stages.{i}.peft.continue_adapter`: stage `{stage.name}` starts from "
                          f"{'`' + source.name + '`' if source else repr(stage.init)}, whose output is not an adapter; "
                          "drop continue_adapter (a new adapter starts), or start from a LoRA stage without `merge`.")
    if stage.peft is not None and from_adapter and not stage.peft.continue_adapter:
        raise RecipeError(f"`stages.{i}.peft`: stage `{stage.name}` would start a new adapter on `{source.name}`'s "
                          "adapter merged into its base, weights that are saved nowhere, so the new adapter could "
                          f"not be reloaded; set `peft.merge: true` on `{source.name}` (its output is then the merged "
                          "model) or `peft.continue_adapter: true` here.")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Read a recipe YAML, apply ``key=value`` overrides, validate it and expand its method shorthand.

    On a ``method:`` recipe, ``stages.<name or index>.<key>=value`` overrides apply to the expanded stages
    (e.g. ``stages.joint.max_steps=200``); every other override applies to the file before expansion.
    """
    overrides = list(overrides or [])
    later = [o for o in overrides if o.split("=", 1)[0].startswith("stages.")]
    raw = read_recipe(path, [o for o in overrides if o not in later])
    if later and raw.get("method") is not None and not raw.get("stages"):
        names = [t.get("name") if isinstance(t, Mapping) else None for t in raw.get("tasks") or []]
        raw["stages"] = expand_method(raw["method"], raw.pop("method_args", None) or {}, names)
        return parse_recipe(apply_overrides(raw, later), expanded=True)
    return parse_recipe(apply_overrides(raw, later))
