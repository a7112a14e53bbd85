"""Sampling-rate sweeps: a grid of trials per method, run N at a time, gathered into one table + report.

A sweep (paper Sec. 4.1) trains every method at every low-resource sampling rate (and optionally every
learning rate and seed) at equal total steps ``N``, takes each trial's final per-task validation loss,
and compares the methods' trade-off fronts. A :class:`SweepConfig` (YAML) names a base recipe (tasks,
model, data, training arguments) and the grid; :func:`expand_trials` turns it into one resolved recipe
per trial; :func:`run_sweep` runs them as subprocesses (``recipes/run.py``'s entry point, with
``OMP_NUM_THREADS`` set), ``parallel`` at a time, skips trials whose ``results.json`` says complete,
writes ``sweep_results.csv`` / ``sweep_results.json`` and calls :func:`hf_ptjf.plots.write_report`.

Sweep YAML::

    recipe: recipes/configs/repro_base_cpu.yaml  # tasks, model, data, eval, training args (method set here)
    output_dir: runs/sweep-fr-ro
    hr_task: en-fr
    lr_task: en-ro
    methods: [scalarization, ptjf, restart, transfer]
    rates: [0.1, 0.2, 0.3, 0.5]     # low-resource sampling rate; the high-resource task gets 1 - rate
    lrs: null                       # null: the recipe's learning_rate; else a grid
    seeds: [0, 1]
    total_steps: 1000               # N, equal for every trial ...
    first_stage_steps: 750          # N1 (ptjf / restart / transfer); a list sweeps pre-training length
    finetune_steps: null            # ... unless set: then N = N1 + finetune_steps (fixed fine-tuning)
    share_pretrain: true            # ptjf/transfer trials with the same seed/lr/N1 share one pre-training run
    shared_tokenizer: true          # train one tokenizer for the whole sweep
    parallel: 2                     # trials at a time
    threads: 1                      # torch/OMP threads per trial
    overrides: [eval.bleu=false]    # key=value applied to every trial's recipe
    keep_other_tasks: false         # drop the recipe's tasks other than hr_task / lr_task
    report_dir: null                # tables + report elsewhere (sweeps sharing one output_dir)
    launcher: null                  # e.g. [accelerate, launch, --config_file, X]; default: this python
    devices: null                   # CUDA_VISIBLE_DEVICES per running trial, e.g. ["0", "1"]
    launch_until: null              # "HH:MM" UTC: start no trial after this (a time budget)

With ``share_pretrain`` the pre-training stage (``N1`` steps on the high-resource task(s)) is its own run,
``pretrain-n<N1>-lr<lr>-s<seed>``; every PTJF rate (and the transfer trial) fine-tunes from its saved
model (a stage ``init: {path: ...}``, fresh optimizer and LR schedule), so each extra PTJF point costs only
``N - N1`` steps. The gathered record of such a trial includes the pre-training run's history, examples
seen and wall time, so it reads like an unshared PTJF trial; its examples-seen counters run across stages.

Trial ids: ``scalarization-r<rate>-s<seed>``, ``<method>-n<N1>-r<rate>-s<seed>`` (ptjf, restart),
``transfer-n<N1>-s<seed>`` (one per seed: the low-resource task alone, no rate), with ``-lr<lr>`` when
``lrs`` is a grid. A running trial holds ``<trial>/.running`` (its pid), so several sweep commands can
share one ``output_dir`` without running a trial twice.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..hints import did_you_mean
from ..mixture import SIZE_UNITS
from ..runner.results import best_loss, cumulative_counts
from ..seen import SEEN_UNITS, seen_key, seen_label, seen_of_size_unit, total_seen
from ..recipe import METHODS, RecipeError, apply_overrides, expand_method, parse_recipe, read_recipe, read_yaml

logger = logging.getLogger(__name__)

__all__ = [
    "SweepConfig",
    "Trial",
    "expand_trials",
    "gather",
    "load_sweep",
    "run_sweep",
    "trial_records",
    "write_tables",
]

RESULTS_CSV = "sweep_results.csv"
RESULTS_JSON = "sweep_results.json"
TRIAL_RECIPE = "trial.yaml"
TRIAL_LOG = "trial.log"
LOCK = ".running"  # pid of the process running a trial, so that concurrent sweeps never run it twice
# method_args of the base recipe that reach every trial (the sweep sets steps, tasks and the mixture itself)
_KEPT_METHOD_ARGS = ("stage", "first_stage", "second_stage", "pretrain_mixture")
_PRETRAIN = "pretrain"  # the name expand_method gives the first stage of ptjf / transfer
_RUN_CODE = "import sys; from hf_ptjf.runner.cli import main; sys.exit(main(sys.argv[1:]))"


def _positive_int(value: Any) -> bool:
    """A step or process count: an integer >= 1 (the check every count field of a sweep shares)."""
    return isinstance(value, int) and value > 0


@dataclass
class SweepConfig:
    """A grid of trials over a base recipe (see the module docstring for the YAML)."""

    recipe: str
    output_dir: str
    hr_task: str
    lr_task: str
    methods: list[str] = field(default_factory=lambda: ["scalarization", "ptjf"])
    rates: list[float] = field(default_factory=lambda: [round(i / 10, 1) for i in range(1, 10)])
    lrs: list[float] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    total_steps: int | None = None
    first_stage_steps: int | list[int] | None = None
    finetune_steps: int | None = None
    share_pretrain: bool = True
    shared_tokenizer: bool = True
    parallel: int = 1
    threads: int = 1
    launcher: list[str] | None = None  # e.g. [accelerate, launch, --config_file, X]; default: this python
    devices: list[str] | None = None  # CUDA_VISIBLE_DEVICES per running trial, e.g. ["0", "1"] or ["0,1", "2,3"]
    launch_until: str | None = None  # "HH:MM" (UTC): start no trial after this time (a time budget)
    overrides: list[str] = field(default_factory=list)
    keep_other_tasks: bool = False  # False: drop recipe tasks other than hr_task / lr_task
    report_dir: str | None = None  # tables + report (default: output_dir); lets sweeps share trials
    size_unit: str = "examples"  # the trials' mixture size_unit, and what the efficiency figure and summary count

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise RecipeError(f"sweep `methods` must be a non-empty subset of {METHODS}, got {self.methods}.")
        if not isinstance(self.rates, list) or not self.rates or any(
                isinstance(r, bool) or not isinstance(r, (int, float)) or not (0.0 < r < 1.0) for r in self.rates):
            raise RecipeError(f"sweep `rates` are low-resource sampling rates in (0, 1), got {self.rates}.")
        if self.hr_task == self.lr_task:
            raise RecipeError("`hr_task` and `lr_task` must differ.")
        if not _positive_int(self.parallel):
            raise RecipeError(f"`parallel` must be a positive integer, got {self.parallel!r}.")
        if not _positive_int(self.threads):
            raise RecipeError(f"`threads` must be a positive integer, got {self.threads!r}.")
        if not isinstance(self.seeds, list) or not self.seeds or any(type(x) is not int for x in self.seeds):
            raise RecipeError(f"sweep `seeds` must be a non-empty list of integers, e.g. seeds=[0,1]; got {self.seeds!r}.")
        n1 = self.first_stage_steps
        if n1 is not None and not all(map(_positive_int, n1 if isinstance(n1, list) else [n1])):
            raise RecipeError(f"`first_stage_steps` (N1) must be a positive integer or a list of them, got {n1!r}.")
        if self.size_unit not in SIZE_UNITS:
            raise RecipeError(f"sweep `size_unit` must be one of {SIZE_UNITS}, got {self.size_unit!r}.")
        if self.devices is not None:
            self.devices = [str(d) for d in self.devices]
            if len(self.devices) < self.parallel:
                raise RecipeError(f"`devices` lists {len(self.devices)} device sets for `parallel: {self.parallel}`.")
        n1s = self.n1_values
        staged = [m for m in self.methods if m != "scalarization"]
        if staged and not n1s:
            raise RecipeError(f"methods {staged} need `first_stage_steps` (N1).")
        if self.finetune_steps is None:
            if self.total_steps is None:
                raise RecipeError("`total_steps` (N, a positive integer) is required unless `finetune_steps` is set.")
            if not _positive_int(self.total_steps):
                raise RecipeError(f"`total_steps` (N) must be a positive integer, got {self.total_steps!r}.")
            if any(not (0 < n1 < self.total_steps) for n1 in n1s):
                raise RecipeError(f"need 0 < first_stage_steps < total_steps, got {n1s} and {self.total_steps}.")
        else:
            if not _positive_int(self.finetune_steps):
                raise RecipeError(f"`finetune_steps` must be a positive integer, got {self.finetune_steps!r}.")
            if "scalarization" in self.methods and len(n1s) > 1 and self.total_steps is None:
                raise RecipeError("with several `first_stage_steps` and `finetune_steps`, give `total_steps` for scalarization.")
        self.rates = [float(r) for r in self.rates]

    @property
    def n1_values(self) -> list[int]:
        n1 = self.first_stage_steps
        if n1 is None:
            return []
        return [int(x) for x in (n1 if isinstance(n1, (list, tuple)) else [n1])]

    def total_for(self, n1: int | None) -> int:
        """N of a trial: fixed, or N1 + finetune_steps (fixed fine-tuning length)."""
        if self.finetune_steps is not None and n1 is not None:
            return n1 + self.finetune_steps
        if self.total_steps is not None:
            return self.total_steps
        return max(self.n1_values) + self.finetune_steps  # scalarization with fixed fine-tuning and one N1

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    @property
    def report_out(self) -> Path:
        return Path(self.report_dir) if self.report_dir else self.out


def load_sweep(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SweepConfig:
    """Read a sweep YAML and apply ``key=value`` overrides (e.g. ``parallel=2``, ``rates=[0.1,0.5]``)."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path, "sweep config"), list(overrides))
    names = [f.name for f in dataclasses.fields(SweepConfig)]
    for key in raw:
        if key not in names:
            raise RecipeError(f"unknown sweep key `{key}`.{did_you_mean(key, names)}")
    if "recipe" in raw and not Path(raw["recipe"]).is_file() and (path.parent / raw["recipe"]).is_file():
        raw["recipe"] = str(path.parent / raw["recipe"])  # relative to the sweep file
    try:
        return SweepConfig(**raw)
    except TypeError as e:
        raise RecipeError(f"sweep config: {e}") from e


# ---------------------------------------------------------------------------------------------- trials
@dataclass
class Trial:
    """One run of the grid: a resolved recipe (dict), where it goes, and what it depends on."""

    trial: str
    method: str  # "pretrain" for a shared pre-training run
    rate: float | None
    lr: float | None
    seed: int
    first_stage_steps: int | None
    total_steps: int
    output_dir: str
    recipe: dict[str, Any]
    depends_on: str | None = None  # trial id of the shared pre-training run
    label: str = ""  # method name in plots/tables (e.g. "ptjf@N1=500" when N1 is swept)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    def is_complete(self) -> bool:
        return _read_results(self.out).get("complete") is True


def _read_results(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def _fmt(x: float | None) -> str:
    return "default" if x is None else f"{x:g}"


def expand_trials(cfg: SweepConfig) -> list[Trial]:
    """Every trial of the grid as a resolved recipe dict, shared pre-training runs first.

    The base recipe is read like any recipe (:func:`hf_ptjf.recipe.read_recipe`) and every trial's stages come from
    the recipe's own method expansion (:func:`hf_ptjf.recipe.expand_method`) with the base's ``method_args``
    (per-stage optimizer, schedule and training keys) kept; the sweep sets only N, N1, the high-resource task
    and the mixture. With ``share_pretrain`` the expansion is split where the method resets: its first stage
    runs once per seed, and each trial is its second stage initialised from that run's output (a ``path``).
    Trials are validated with :func:`hf_ptjf.recipe.parse_recipe`, so a bad grid fails before anything runs.
    """
    base = read_recipe(cfg.recipe, list(cfg.overrides))
    base_args = dict(base.pop("method_args", None) or {})
    for key in ("method", "stages", "output_dir", "run_name", "seed"):
        base.pop(key, None)
    names = [t.get("name") for t in base.get("tasks") or []]
    for task in (cfg.hr_task, cfg.lr_task):
        if task not in names:
            raise RecipeError(f"sweep task `{task}` is not a task of the recipe {cfg.recipe} (tasks: {names}).")
    if not cfg.keep_other_tasks:
        base["tasks"] = [t for t in base["tasks"] if t.get("name") in (cfg.hr_task, cfg.lr_task)]
        names = [t["name"] for t in base["tasks"]]
    if cfg.shared_tokenizer:
        base["tokenizer"] = {**(base.get("tokenizer") or {}), "path": str(cfg.out / "tokenizer")}
    lrs: list[float | None] = list(cfg.lrs) if cfg.lrs else [None]
    n1s: list[int | None] = list(cfg.n1_values) or [None]
    several_n1 = len(cfg.n1_values) > 1
    trials: list[Trial] = []
    pretrains: list[Trial] = []

    def method_args(method: str, rate: float | None, n1: int | None, total: int) -> dict[str, Any]:
        """The trial's ``method_args``: the base recipe's per-stage keys, plus N, N1, the HR task and the mixture."""
        rate = 0.5 if rate is None else rate  # transfer: the static mixture is filtered to the LR task (rate 1)
        args = {key: value for key, value in base_args.items() if key in _KEPT_METHOD_ARGS}
        args.update(total_steps=total, mixture={"strategy": "static",
                                                "weights": {cfg.hr_task: round(1.0 - rate, 6), cfg.lr_task: rate}})
        if cfg.size_unit != "examples":  # (absent by default: earlier sweeps' trials keep their recipes)
            args["mixture"]["size_unit"] = cfg.size_unit
        if method != "scalarization":
            args["first_stage_steps"] = n1
        if method in ("ptjf", "transfer"):
            args["high_resource"] = [cfg.hr_task]
        return args

    def make(trial_id: str, method: str, rate: float | None, lr: float | None, seed: int, n1: int | None,
             total: int, plan: dict[str, Any], depends: str | None, label: str) -> Trial:
        """``plan``: ``{"method", "method_args"}`` (a whole method) or ``{"stages"}`` (part of a split method)."""
        raw = copy.deepcopy(base)
        out = cfg.out / "trials" / trial_id
        raw.update(output_dir=str(out), run_name=trial_id, seed=seed, **plan)
        if lr is not None:
            raw["learning_rate"] = lr
        parse_recipe(copy.deepcopy(raw))  # validate now
        return Trial(trial_id, method, rate, lr, seed, n1, total, str(out), raw, depends, label or method)

    for seed in cfg.seeds:
        for lr in lrs:
            lr_tag = f"-lr{_fmt(lr)}" if cfg.lrs else ""
            for n1 in n1s:
                pre_id = None
                shared = cfg.share_pretrain and n1 is not None and {"ptjf", "transfer"} & set(cfg.methods)
                if shared:  # the pre-training stage of ptjf (= of transfer), run once for this seed / lr / N1
                    pre_id = f"pretrain-n{n1}{lr_tag}-s{seed}"
                    first = expand_method("ptjf", method_args("ptjf", None, n1, cfg.total_for(n1)), names)[0]
                    pretrains.append(make(pre_id, "pretrain", None, lr, seed, n1, n1, {"stages": [first]}, None,
                                          "pretrain"))
                pre_model = str(cfg.out / "trials" / str(pre_id) / "stages" / f"0-{_PRETRAIN}" / "final")
                for method in cfg.methods:
                    if method == "scalarization" and n1 != n1s[0]:
                        continue  # one scalarization grid, whatever N1
                    label = f"{method}@N1={n1}" if several_n1 and method != "scalarization" else method
                    rates: list[float | None] = [None] if method == "transfer" else list(cfg.rates)
                    for rate in rates:
                        r_tag = "" if rate is None else f"-r{rate:g}"
                        tag = "" if method == "scalarization" else f"-n{n1}"
                        tid = f"{method}{tag}{r_tag}{lr_tag}-s{seed}"
                        n_total = cfg.total_for(None if method == "scalarization" else n1)
                        args = method_args(method, rate, n1, n_total)
                        plan: dict[str, Any] = {"method": method, "method_args": args}
                        split = method in ("ptjf", "transfer") and shared
                        if split:  # the stage after the reset, initialised from the shared pre-training run
                            plan = {"stages": [{**expand_method(method, args, names)[1], "init": {"path": pre_model}}]}
                        trials.append(make(tid, method, rate, lr, seed, None if method == "scalarization" else n1,
                                           n_total, plan, pre_id if split else None, label))
    return pretrains + trials


# ---------------------------------------------------------------------------------------------- running
def prepare_tokenizer(cfg: SweepConfig, trials: Sequence[Trial]) -> Path | None:
    """Train the sweep's one shared tokenizer (and build the data cache) before any trial starts."""
    if not cfg.shared_tokenizer or not trials:
        return None
    path = cfg.out / "tokenizer"
    if (path / "tokenizer_config.json").is_file():
        return path
    from ..data.prepare import load_recipe_corpora, train_recipe_tokenizer

    recipe = parse_recipe(copy.deepcopy(trials[0].recipe))
    train_recipe_tokenizer(recipe, load_recipe_corpora(recipe), path)
    return path


def _env(threads: int, device: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("DISABLE_TQDM", "1")
    env["HF_PTJF_TRIAL"] = "1"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _command(cfg: SweepConfig, recipe_path: Path) -> list[str]:
    if cfg.launcher:  # e.g. accelerate launch ...: needs a script file
        return [*cfg.launcher, str(Path(__file__).resolve().parents[2] / "recipes" / "run.py"), str(recipe_path)]
    return [sys.executable, "-c", _RUN_CODE, str(recipe_path)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def running_elsewhere(trial: Trial) -> bool:
    """Whether a live process (another sweep's trial) holds this trial's lock."""
    try:
        pid = int((trial.out / LOCK).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid != os.getpid() and _alive(pid)


def _take_lock(trial: Trial) -> bool:
    trial.out.mkdir(parents=True, exist_ok=True)
    lock = trial.out / LOCK
    if lock.exists() and not running_elsewhere(trial):
        lock.unlink(missing_ok=True)  # stale
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    return True


def _launch(trial: Trial, cfg: SweepConfig, device: str | None = None) -> subprocess.Popen:
    trial.out.mkdir(parents=True, exist_ok=True)
    recipe_path = trial.out / TRIAL_RECIPE
    recipe_path.write_text(yaml.safe_dump(trial.recipe, sort_keys=False))
    log = open(trial.out / TRIAL_LOG, "a")
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {trial.trial} ===\n")
    log.flush()
    cmd = _command(cfg, recipe_path)
    log.write(f"$ {' '.join(cmd)}" + (f"  (CUDA_VISIBLE_DEVICES={device})" if device is not None else "") + "\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(cfg.threads, device))
    proc._ptjf_log = log  # type: ignore[attr-defined]
    proc._ptjf_start = time.time()  # type: ignore[attr-defined]
    proc._ptjf_device = device  # type: ignore[attr-defined]
    (trial.out / LOCK).write_text(f"{proc.pid}\n")
    return proc


def _deadline(hhmm: str | None) -> float | None:
    if not hhmm:
        return None
    import datetime as dt

    if isinstance(hhmm, int):  # YAML 1.1 reads an unquoted 11:50 as sexagesimal 710
        h, m = divmod(hhmm, 60)
    else:
        h, m = (int(x) for x in str(hhmm).split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(hour=h, minute=m, second=0, microsecond=0).timestamp()


def run_trials(cfg: SweepConfig, trials: Sequence[Trial], poll_s: float = 1.0) -> dict[str, str]:
    """Run the trials ``cfg.parallel`` at a time, dependencies first; returns ``{trial: status}``.

    Status is ``skipped`` (already complete, possibly by another sweep), ``done``, ``failed`` (see its
    ``trial.log``), ``blocked`` (its pre-training run failed) or ``not started`` (past ``launch_until``).
    """
    deadline = _deadline(cfg.launch_until)
    status: dict[str, str] = {}
    pending: list[Trial] = []
    for t in trials:
        if t.is_complete():
            status[t.trial] = "skipped"
            logger.info("skip %s (complete)", t.trial)
        else:
            pending.append(t)
    running: dict[str, tuple[Trial, subprocess.Popen]] = {}
    waiting: set[str] = set()  # trials another process is running right now
    while pending or running:
        if deadline is not None and time.time() > deadline and pending:
            for t in pending:
                status[t.trial] = "not started"
            logger.warning("launch_until %s passed: %d trials not started", cfg.launch_until, len(pending))
            pending, waiting = [], set()
        for tid, (t, proc) in list(running.items()):
            if proc.poll() is None:
                continue
            proc._ptjf_log.close()  # type: ignore[attr-defined]
            (t.out / LOCK).unlink(missing_ok=True)
            ok = proc.returncode == 0 and t.is_complete()
            status[tid] = "done" if ok else "failed"
            took = time.time() - proc._ptjf_start  # type: ignore[attr-defined]
            (logger.info if ok else logger.error)("%s %s in %.0fs (rc %s; log %s)", tid, status[tid], took,
                                                   proc.returncode, t.out / TRIAL_LOG)
            del running[tid]
        for t in list(pending):
            if t.depends_on and status.get(t.depends_on) in ("failed", "blocked"):
                status[t.trial] = "blocked"
                pending.remove(t)
            elif t.trial in waiting and not running_elsewhere(t):  # another sweep was running it
                waiting.discard(t.trial)
                if t.is_complete():
                    status[t.trial] = "skipped"
                    pending.remove(t)
        ready = [t for t in pending if t.trial not in waiting and (
            not t.depends_on or status.get(t.depends_on) in ("done", "skipped"))]
        while ready and len(running) < cfg.parallel:
            t = ready.pop(0)
            if t.is_complete():
                status[t.trial] = "skipped"
                pending.remove(t)
                continue
            if running_elsewhere(t) or not _take_lock(t):
                waiting.add(t.trial)
                logger.info("%s is being run by another process; waiting for it", t.trial)
                continue
            pending.remove(t)
            device = None
            if cfg.devices:
                busy = {getattr(p, "_ptjf_device", None) for _, p in running.values()}
                device = next(d for d in cfg.devices if d not in busy)
            logger.info("start %s%s", t.trial, f" on device {device}" if device is not None else "")
            running[t.trial] = (t, _launch(t, cfg, device) if device is not None else _launch(t, cfg))
        if not running and pending and not waiting:
            raise RuntimeError(f"sweep deadlock: {[t.trial for t in pending]} wait on missing runs")
        if running or waiting:
            time.sleep(poll_s if running else max(poll_s, 5.0 * min(poll_s, 1.0)))
    return status


# ---------------------------------------------------------------------------------------------- gathering
def _record(t: Trial, cfg: SweepConfig, by_id: Mapping[str, Trial], status: str | None) -> dict[str, Any] | None:
    res = _read_results(t.out)
    if not res.get("complete"):
        return None
    stages = list(res.get("stages", []))
    history = list(res.get("history", []))
    if t.depends_on:  # prepend the shared pre-training run, as if it were this trial's first stage
        pre = _read_results(by_id[t.depends_on].out)
        offset = sum(s["steps"] for s in pre.get("stages", []))
        history = list(pre.get("history", [])) + [{**h, "step": h.get("step", 0) + offset} for h in history]
        stages = list(pre.get("stages", [])) + stages
    history = cumulative_counts(history, stages)
    final = {k: v.get("final_loss") for k, v in res["tasks"].items()}
    best = {task: best_loss(history, task, final[task]) for task in res["tasks"]}
    return {
        "trial": t.trial,
        "method": t.label,
        "base_method": t.method,
        "rate": t.rate,
        "seed": t.seed,
        "lr": t.lr if t.lr is not None else t.recipe.get("learning_rate"),
        "first_stage_steps": t.first_stage_steps,
        "total_steps": t.total_steps,
        "pretrain": t.depends_on,
        "status": status or "complete",
        "wall_time_s": round(sum(float(s.get("wall_time_s") or 0) for s in stages), 2),
        "final": final,
        "final_ce": {k: v.get("final_ce") for k, v in res["tasks"].items()},  # without label smoothing (if logged)
        "best": best,
        "bleu": {k: v.get("bleu") for k, v in res["tasks"].items() if v.get("bleu") is not None},
        **{seen_key(unit): {task: total_seen(stages, unit, task) for task in res["tasks"]} for unit in SEEN_UNITS},
        "output_dir": t.output_dir,
        "recipe": t.recipe,
        "history": history,
    }


def trial_records(cfg: SweepConfig, trials: Sequence[Trial], status: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Records of the complete trials (shared pre-training runs are folded into their trials)."""
    by_id = {t.trial: t for t in trials}
    out = []
    for t in trials:
        if t.method == "pretrain":
            continue
        rec = _record(t, cfg, by_id, (status or {}).get(t.trial))
        if rec is not None:
            out.append(rec)
    return out


def seed_means(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per (method, rate, lr): losses averaged over seeds (``final_range``: the final losses' min and max
    over two or more seeds); histories averaged per step."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["method"], r["rate"], r["lr"]), []).append(r)
    out = []
    for (method, rate, lr), rs in groups.items():
        def per_task(key: str) -> dict[str, list[float] | None]:
            """Each task's values over the seeds; None when a seed lacks it."""
            values = {}
            for task in rs[0].get(key) or {}:
                xs = [(r.get(key) or {}).get(task) for r in rs]
                values[task] = None if any(x is None for x in xs) else xs
            return values

        def mean(key: str) -> dict[str, float | None]:
            return {task: None if xs is None else sum(xs) / len(xs) for task, xs in per_task(key).items()}

        steps: dict[int, list[Mapping[str, Any]]] = {}
        for r in rs:
            for h in r["history"]:
                steps.setdefault(h.get("step", 0), []).append(h)
        history = []
        for step in sorted(steps):
            hs = steps[step]
            row: dict[str, Any] = {"step": step, "stage": hs[0].get("stage")}
            for key in {k for h in hs for k in h if k.startswith(("eval_", *(f"{seen_key(u)}_" for u in SEEN_UNITS)))}:
                xs = [h[key] for h in hs if isinstance(h.get(key), (int, float))]
                if len(xs) == len(rs):
                    row[key] = sum(xs) / len(xs)
            history.append(row)
        out.append({
            "trial": f"{method}" + ("" if rate is None else f"-r{rate:g}") + f" (mean of {len(rs)})",
            "method": method, "rate": rate, "lr": lr, "seed": "mean", "n_seeds": len(rs),
            "final": mean("final"), "best": mean("best"),
            # the spread the fronts and the report show beside each mean (one seed has none)
            "final_range": {t: None if xs is None else [min(xs), max(xs)] for t, xs in per_task("final").items()}
            if len(rs) > 1 else {},
            **{seen_key(u): mean(seen_key(u)) for u in SEEN_UNITS},
            "history": history,
        })
    return out


def _csv_row(rec: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, Any]:
    row = {k: rec.get(k) for k in ("trial", "method", "base_method", "rate", "lr", "seed", "first_stage_steps",
                                   "total_steps", "pretrain", "status", "wall_time_s")}
    for task in tasks:
        for key in ("final", "final_ce", "best", "bleu", "examples_seen"):
            row[f"{key}_{task}"] = (rec.get(key) or {}).get(task)
    row["output_dir"] = rec.get("output_dir")
    return row


def write_tables(cfg: SweepConfig, records: Sequence[Mapping[str, Any]], status: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """``sweep_results.csv`` (one row per trial: config + metrics) and ``sweep_results.json`` (+ histories)."""
    cfg.report_out.mkdir(parents=True, exist_ok=True)
    tasks = sorted({t for r in records for t in r["final"]}, key=lambda t: (t != cfg.hr_task, t != cfg.lr_task, t))
    rows = [_csv_row(r, tasks) for r in records]
    csv_path = cfg.report_out / RESULTS_CSV
    with open(csv_path, "w", newline="") as f:
        fields = list(rows[0]) if rows else ["trial"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    json_path = cfg.report_out / RESULTS_JSON
    json_path.write_text(json.dumps({"sweep": dataclasses.asdict(cfg), "status": dict(status or {}),
                                     "trials": list(records)}, indent=1, default=str))
    return csv_path, json_path


def _seen_cell(values: Sequence[int | None]) -> str:
    """Mean count over seeds; ``-`` when a seed's count is unknown (characters of rows that carried none)."""
    if not values or any(v is None for v in values):
        return "-"
    return f"{sum(values) / len(values):.0f}"


def summary_markdown(cfg: SweepConfig, records: Sequence[Mapping[str, Any]]) -> str:
    """Per (method, rate): seeds, final/best losses (mean and range over seeds), what the low-resource task saw (in
    the sweep's ``size_unit``), wall time."""
    hr, lr = cfg.hr_task, cfg.lr_task
    seen = seen_of_size_unit(cfg.size_unit)

    def stat(xs: list[float]) -> str:
        xs = [x for x in xs if x is not None]
        if not xs:
            return "-"
        m = sum(xs) / len(xs)
        return f"{m:.3f}" if len(xs) == 1 else f"{m:.3f} ({min(xs):.3f}-{max(xs):.3f})"

    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["method"], r["rate"] if r["rate"] is not None else -1.0, r["lr"]), []).append(r)
    order = {m: i for i, m in enumerate(METHODS)}
    lines = [f"# Sweep summary: {hr} (high-resource) vs {lr} (low-resource)", "",
             "Mean over seeds (min-max). Final = last evaluation (with the recipe's label smoothing); CE = the same "
             "without label smoothing (`-` for runs made before it was logged); best = lowest evaluation during "
             "training (early stopping, for reference only: the fronts use final losses).", "",
             f"| method | rate | lr | seeds | final {hr} | final {lr} | final {lr} CE | best {lr} | best {lr} at step | "
             f"{lr} {seen_label(cfg.size_unit)} seen | wall time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (method, rate, lr_), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0].split("@")[0], 9),
                                                                           kv[0][0], kv[0][1], str(kv[0][2]))):
        steps = []
        for r in rs:
            evals = [(h[f"eval_{lr}_loss"], h["step"]) for h in r["history"] if h.get(f"eval_{lr}_loss") is not None]
            if evals:
                steps.append(min(evals)[1])
        lines.append(
            f"| {method} | {'n/a' if rate < 0 else f'{rate:g}'} | {lr_ if lr_ is not None else '-'} | {len(rs)} | "
            f"{stat([r['final'].get(hr) for r in rs])} | {stat([r['final'].get(lr) for r in rs])} | "
            f"{stat([(r.get('final_ce') or {}).get(lr) for r in rs])} | "
            f"{stat([r['best'].get(lr) for r in rs])} | {'/'.join(str(s) for s in steps) or '-'} | "
            f"{_seen_cell([(r.get(seen_key(seen)) or {}).get(lr) for r in rs])} | "
            f"{sum(float(r['wall_time_s']) for r in rs) / len(rs):.0f} |")
    return "\n".join(lines) + "\n"


def gather(cfg: SweepConfig, trials: Sequence[Trial] | None = None, status: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Tables + ``report.md`` and PNGs (all trials) + ``mean/report.md`` (seed means, with several seeds)."""
    from .plots import write_report

    trials = expand_trials(cfg) if trials is None else trials
    records = trial_records(cfg, trials, status)
    write_tables(cfg, records, status)
    if records:
        (cfg.report_out / "summary.md").write_text(summary_markdown(cfg, records))
        write_report(records, cfg.hr_task, cfg.lr_task, cfg.report_out, cfg.size_unit)
        if len(cfg.seeds) > 1:
            write_report(seed_means(records), cfg.hr_task, cfg.lr_task, cfg.report_out / "mean", cfg.size_unit)
    return records


def run_sweep(cfg: SweepConfig) -> dict[str, Any]:
    """Expand, run (skipping complete trials), gather. Returns ``{"status", "records", "wall_time_s"}``."""
    start = time.time()
    trials = expand_trials(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.report_out.mkdir(parents=True, exist_ok=True)
    (cfg.report_out / "sweep.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    prepare_tokenizer(cfg, trials)
    status = run_trials(cfg, trials)
    records = gather(cfg, trials, status)
    wall = round(time.time() - start, 1)
    with open(cfg.report_out / "sweep_times.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} wall {wall}s; " +
                ", ".join(f"{s}: {sum(v == s for v in status.values())}" for s in ("done", "skipped", "failed", "blocked")) + "\n")
    return {"status": status, "records": records, "wall_time_s": wall}


def main(argv: Sequence[str] | None = None) -> int:
    """``recipes/sweep.py SWEEP_CONFIG [key=value ...] [--gather-only] [--list]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="recipes/sweep.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="sweep YAML")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the sweep config")
    parser.add_argument("--gather-only", action="store_true", help="only rebuild tables and report from finished trials")
    parser.add_argument("--list", action="store_true", help="print the trials (and whether complete) and exit")
    args = parser.parse_intermixed_args(argv)  # options may come between the config and the overrides
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_sweep(args.config, args.overrides)
        if args.list:
            for t in expand_trials(cfg):
                print(f"{t.trial:40s} {'complete' if t.is_complete() else '-':8s} {t.output_dir}")
            return 0
        if args.gather_only:
            records = gather(cfg)
            print(f"{len(records)} trials -> {cfg.report_out / RESULTS_CSV}")
            return 0
        result = run_sweep(cfg)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = {k: v for k, v in result["status"].items() if v in ("failed", "blocked")}
    print(f"{len(result['records'])} trials gathered in {result['wall_time_s']}s -> {cfg.report_out / RESULTS_CSV}")
    if bad:
        print(f"not complete: {bad}", file=sys.stderr)
        return 1
    return 0
