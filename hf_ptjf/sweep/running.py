"""Running a sweep's trials: subprocesses ``parallel`` at a time, a lock per trial, a launch deadline.

Each trial runs as a subprocess (``recipes/run.py``'s entry point, with ``OMP_NUM_THREADS`` set), and skips when
its ``results.json`` says complete. A running trial holds ``<trial>/.running`` (its pid), so several sweep commands
can share one ``output_dir`` without running a trial twice. :func:`run_sweep` is the whole flow: expand, run, gather.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..data.prepare import load_recipe_corpora, train_recipe_tokenizer
from ..recipe import parse_recipe
from .config import SweepConfig
from .gathering import gather
from .trials import Trial, expand_trials

logger = logging.getLogger(__name__)

__all__ = ["LOCK", "TRIAL_LOG", "TRIAL_RECIPE", "launch_deadline", "launch_trial", "prepare_tokenizer", "run_sweep",
           "run_trials", "running_elsewhere", "take_lock", "trial_command", "trial_env"]

TRIAL_RECIPE = "trial.yaml"
TRIAL_LOG = "trial.log"
LOCK = ".running"  # pid of the process running a trial, so that concurrent sweeps never run it twice
_ROOT = Path(__file__).resolve().parents[2]  # the checkout: trials import this very package
_RUN_CODE = "import sys; from hf_ptjf.cli.run import main; sys.exit(main(sys.argv[1:]))"


def prepare_tokenizer(cfg: SweepConfig, trials: Sequence[Trial]) -> Path | None:
    """Train the sweep's one shared tokenizer (and build the data cache) before any trial starts."""
    if not cfg.shared_tokenizer or not trials:
        return None
    path = cfg.out / "tokenizer"
    if (path / "tokenizer_config.json").is_file():
        return path
    recipe = parse_recipe(copy.deepcopy(trials[0].recipe))
    train_recipe_tokenizer(recipe, load_recipe_corpora(recipe), path)
    return path


def trial_env(threads: int, device: str | None = None) -> dict[str, str]:
    """A trial's environment: ``threads`` torch/OMP threads, its CUDA devices, this checkout importable."""
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("DISABLE_TQDM", "1")
    env["HF_PTJF_TRIAL"] = "1"
    env["PYTHONPATH"] = str(_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def trial_command(cfg: SweepConfig, recipe_path: Path) -> list[str]:
    """The command that runs one trial's recipe: this python, or ``cfg.launcher`` with ``recipes/run.py``."""
    if cfg.launcher:  # e.g. accelerate launch ...: needs a script file
        return [*cfg.launcher, str(_ROOT / "recipes" / "run.py"), str(recipe_path)]
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


def take_lock(trial: Trial) -> bool:
    """Create the trial's lock for this process (a stale one is removed first); False if another process holds it."""
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


def launch_trial(trial: Trial, cfg: SweepConfig, device: str | None = None) -> subprocess.Popen:
    """Start one trial (its recipe written to ``trial.yaml``, its output appended to ``trial.log``); the lock then
    holds the trial process's pid."""
    trial.out.mkdir(parents=True, exist_ok=True)
    recipe_path = trial.out / TRIAL_RECIPE
    recipe_path.write_text(yaml.safe_dump(trial.recipe, sort_keys=False))
    log = open(trial.out / TRIAL_LOG, "a")
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {trial.trial} ===\n")
    log.flush()
    cmd = trial_command(cfg, recipe_path)
    log.write(f"$ {' '.join(cmd)}" + (f"  (CUDA_VISIBLE_DEVICES={device})" if device is not None else "") + "\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=trial_env(cfg.threads, device))
    proc._ptjf_log = log  # type: ignore[attr-defined]
    proc._ptjf_start = time.time()  # type: ignore[attr-defined]
    proc._ptjf_device = device  # type: ignore[attr-defined]
    (trial.out / LOCK).write_text(f"{proc.pid}\n")
    return proc


def launch_deadline(hhmm: str | int | None) -> float | None:
    """``launch_until`` ("HH:MM", UTC, today) as a timestamp; None without one."""
    if not hhmm:
        return None
    if isinstance(hhmm, int):  # YAML 1.1 reads an unquoted 11:50 as sexagesimal 710
        h, m = divmod(hhmm, 60)
    else:
        h, m = (int(x) for x in str(hhmm).split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(hour=h, minute=m, second=0, microsecond=0).timestamp()


@dataclasses.dataclass
class _TrialQueue:
    """The trials of one :func:`run_trials` call: waiting to start, running here, run by another process."""

    cfg: SweepConfig
    pending: list[Trial]
    status: dict[str, str]
    running: dict[str, tuple[Trial, subprocess.Popen]] = dataclasses.field(default_factory=dict)
    waiting: set[str] = dataclasses.field(default_factory=set)  # trials another process is running right now

    def stop_starting(self) -> None:
        """The launch deadline passed: nothing pending starts."""
        for t in self.pending:
            self.status[t.trial] = "not started"
        logger.warning("launch_until %s passed: %d trials not started", self.cfg.launch_until, len(self.pending))
        self.pending, self.waiting = [], set()

    def reap(self) -> None:
        """Record the trials that exited (done: exit 0 and a complete results.json) and free their locks."""
        for tid, (t, proc) in list(self.running.items()):
            if proc.poll() is None:
                continue
            proc._ptjf_log.close()  # type: ignore[attr-defined]
            (t.out / LOCK).unlink(missing_ok=True)
            ok = proc.returncode == 0 and t.is_complete()
            self.status[tid] = "done" if ok else "failed"
            took = time.time() - proc._ptjf_start  # type: ignore[attr-defined]
            (logger.info if ok else logger.error)("%s %s in %.0fs (rc %s; log %s)", tid, self.status[tid], took,
                                                   proc.returncode, t.out / TRIAL_LOG)
            del self.running[tid]

    def settle(self) -> None:
        """Block the trials whose pre-training failed; skip those another sweep finished meanwhile."""
        for t in list(self.pending):
            if t.depends_on and self.status.get(t.depends_on) in ("failed", "blocked"):
                self.status[t.trial] = "blocked"
                self.pending.remove(t)
            elif t.trial in self.waiting and not running_elsewhere(t):  # another sweep was running it
                self.waiting.discard(t.trial)
                if t.is_complete():
                    self.status[t.trial] = "skipped"
                    self.pending.remove(t)

    def start_ready(self) -> None:
        """Start ready trials (their pre-training done) up to ``parallel``, each on a free device set."""
        ready = [t for t in self.pending if t.trial not in self.waiting and (
            not t.depends_on or self.status.get(t.depends_on) in ("done", "skipped"))]
        while ready and len(self.running) < self.cfg.parallel:
            t = ready.pop(0)
            if t.is_complete():
                self.status[t.trial] = "skipped"
                self.pending.remove(t)
                continue
            if running_elsewhere(t) or not take_lock(t):
                self.waiting.add(t.trial)
                logger.info("%s is being run by another process; waiting for it", t.trial)
                continue
            self.pending.remove(t)
            device = None
            if self.cfg.devices:
                busy = {getattr(p, "_ptjf_device", None) for _, p in self.running.values()}
                device = next(d for d in self.cfg.devices if d not in busy)
            logger.info("start %s%s", t.trial, f" on device {device}" if device is not None else "")
            self.running[t.trial] = (t, launch_trial(t, self.cfg, device))


def run_trials(cfg: SweepConfig, trials: Sequence[Trial], poll_s: float = 1.0) -> dict[str, str]:
    """Run the trials ``cfg.parallel`` at a time, dependencies first; returns ``{trial: status}``.

    Status is ``skipped`` (already complete, possibly by another sweep), ``done``, ``failed`` (see its
    ``trial.log``), ``blocked`` (its pre-training run failed) or ``not started`` (past ``launch_until``).
    """
    deadline = launch_deadline(cfg.launch_until)
    queue = _TrialQueue(cfg, [], {})
    for t in trials:
        if t.is_complete():
            queue.status[t.trial] = "skipped"
            logger.info("skip %s (complete)", t.trial)
        else:
            queue.pending.append(t)
    while queue.pending or queue.running:
        if deadline is not None and time.time() > deadline and queue.pending:
            queue.stop_starting()
        queue.reap()
        queue.settle()
        queue.start_ready()
        if not queue.running and queue.pending and not queue.waiting:
            raise RuntimeError(f"sweep deadlock: {[t.trial for t in queue.pending]} wait on missing runs")
        if queue.running or queue.waiting:
            time.sleep(poll_s if queue.running else max(poll_s, 5.0 * min(poll_s, 1.0)))
    return queue.status


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
