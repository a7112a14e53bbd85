"""Stage resets: what a stage takes over from the stage before it (its ``reset:``), the mechanics in one place.

The default, ``{optimizer: fresh, lr_schedule: fresh}``, is the paper's reset: only the weights carry over. Otherwise
the rule is:

* **A stage that keeps the optimizer and continues the schedule on the previous stage's mixture** (the same tasks at
  the same rates) **is the previous stage resumed**: its training resumes from the previous stage's final checkpoint
  (weights, optimizer, LR schedule, RNG, data position and step count) and runs ``max_steps`` more steps, so the two
  stages train exactly as one stage of their summed steps (``tests/test_resets.py``). Its record still holds its own
  steps, history and counts (results.json continues the run's steps and counts across stages as for any stage).
* **Any other reset starts a new training that takes over pieces**: its data starts the stage's own sequence and its
  steps count from 0; ``keep`` loads the previous stage's final optimizer state (AdamW moments, Adafactor factors;
  under ZeRO-3 through DeepSpeed's checkpoint) before the first update; ``continue`` starts the schedule at the update
  where the previous stage left it; ``anneal`` decays linearly from the previous stage's last LR to 0 over the stage.
* ``continue`` continues the schedule of the chain's first stage (its ``lr_scheduler``, ``learning_rate``, warmup and
  ``lr_schedule_steps``), spanning the chain of stages linked by ``continue``: warmup happens once and a decay ends
  at the chain's last step. A continuing stage's own schedule keys are not used (so ``method_args.reset`` turns the
  LM recipes, whose second stage sets its own schedule, into their no-reset ablation in one override).
* The previous stage's final state is its last checkpoint (``checkpoint-<its last step>``): a stage whose next stage
  needs it saves it in full (``save_strategy: steps``, not ``save_only_model``; nothing else is kept). A rerun that
  skips the finished previous stage finds it there. A crash inside the stage resumes from the stage's own checkpoints
  (which hold the carried state), never again from the previous stage's.
* Refused before any training (:func:`check_resets`, in the preflight): a reset on the first stage; a stage that does
  not start from the previous stage's output (scratch, an older stage, a Hub id, a path); ``keep`` across a LoRA and a
  full stage, onto a new adapter, or with another optimizer or ``optimizer_args``. At the run's start
  (:meth:`StageResets.check_final_states`): a finished previous stage whose final state is gone.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import TrainerCallback

from ..optim import ScheduleHandoff
from ..recipe import RecipeConfig, RecipeError, StageSpec
from ..seen import SEEN_UNITS, seen_key
from .records import RunDirectory, StageResult, latest_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["StageResets", "check_resets"]

OPTIMIZER_STATE = "optimizer.pt"  # the Trainer's file names in a checkpoint
SCHEDULER_STATE = "scheduler.pt"
# the schedule keys of a `continue` stage come from the chain's first stage
SCHEDULE_KEYS = ("learning_rate", "warmup_steps", "warmup_ratio", "lr_schedule_steps")


def _previous_is_init(cfg: RecipeConfig, index: int, stage: StageSpec) -> bool:
    return index > 0 and stage.init in ("previous", cfg.stages[index - 1].name)


def check_resets(cfg: RecipeConfig) -> None:
    """Refuse, before any work, a ``reset`` whose previous state cannot exist (see the module docstring)."""
    for i, stage in enumerate(cfg.stages):
        reset, where = stage.reset, f"`stages.{i}.reset`"
        if reset.is_default:
            continue
        if i == 0:
            raise RecipeError(f"{where}: stage `{stage.name}` is the first stage; there is no previous optimizer or "
                              "schedule to keep or continue. Remove `reset` (the first stage always starts fresh).")
        previous = cfg.stages[i - 1]
        if not _previous_is_init(cfg, i, stage):
            raise RecipeError(f"{where} ({reset.describe()}): stage `{stage.name}` starts from {stage.init!r}, not "
                              f"from the previous stage `{previous.name}`, whose final optimizer and schedule state "
                              "it would take over; set `init: previous`, or reset: {optimizer: fresh, lr_schedule: "
                              "fresh}.")
        if reset.lr_schedule == "continue" and previous.reset.lr_schedule == "anneal":
            raise RecipeError(f"`stages.{i}.reset.lr_schedule: continue`: `{previous.name}` anneals its LR to 0, so "
                              "there is no schedule left to continue; use `fresh` (or `anneal` on this stage instead).")
        if reset.optimizer != "keep":
            continue
        if (stage.peft is None) != (previous.peft is None) or (stage.peft is not None and not stage.peft.continue_adapter):
            kinds = {True: "trains LoRA adapters", False: "trains the whole model"}
            raise RecipeError(f"`stages.{i}.reset.optimizer: keep`: stage `{stage.name}` {kinds[stage.peft is not None]} "
                              f"and `{previous.name}` {kinds[previous.peft is not None]}"
                              f"{' (a new adapter)' if stage.peft is not None and previous.peft is not None else ''}, "
                              "so the parameters differ and the optimizer state cannot carry over; use "
                              "`reset.optimizer: fresh`, or continue the same adapter (`peft.continue_adapter: true`).")
        if (stage.optimizer, stage.optimizer_args) != (previous.optimizer, previous.optimizer_args):
            raise RecipeError(f"`stages.{i}.reset.optimizer: keep`: stage `{stage.name}` uses {stage.optimizer} "
                              f"{stage.optimizer_args or ''} and `{previous.name}` {previous.optimizer} "
                              f"{previous.optimizer_args or ''}; a kept optimizer state needs the same optimizer and "
                              "optimizer_args. Use the same ones, or `reset.optimizer: fresh`.")


class _ContinuedStage(TrainerCallback):
    """A stage resumed from the previous stage's final checkpoint logs, evaluates and saves at its own steps (the
    Trainer would take the previous stage's from the checkpoint's trainer state)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        state.compute_steps(args, state.max_steps)


class _KeptOptimizer(TrainerCallback):
    """Load the previous stage's final optimizer state into the new training's optimizer, before its first update."""

    def __init__(self, trainer: Any, checkpoint: Path) -> None:
        self.trainer, self.checkpoint = trainer, checkpoint

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step > 0:  # resumed from the stage's own checkpoint, which holds the carried state
            return
        trainer = self.trainer
        if trainer.is_deepspeed_enabled:  # ZeRO partitions: DeepSpeed reads its own checkpoint (global_step*/)
            trainer.model_wrapped.load_checkpoint(str(self.checkpoint), load_optimizer_states=True,
                                                  load_lr_scheduler_states=False)
        else:
            saved = torch.load(self.checkpoint / OPTIMIZER_STATE, map_location="cpu", weights_only=True)
            trainer.optimizer.load_state_dict(saved)
        # the loaded parameter groups bring the previous stage's LR: this stage's schedule decides it
        scheduler = trainer.lr_scheduler
        for group, lr, base in zip(trainer.optimizer.param_groups, scheduler.get_last_lr(), scheduler.base_lrs):
            group["lr"], group["initial_lr"] = lr, base
        logger.info("optimizer state kept from %s", self.checkpoint)


class StageResets:
    """Each stage's start after its ``reset`` (see the module docstring); ``rates``: every stage's rates, set once
    they are computed (they decide whether a stage continues the previous one)."""

    def __init__(self, cfg: RecipeConfig, run_dir: RunDirectory) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.rates: Mapping[str, Mapping[str, float]] = {}

    # ------------------------------------------------------------------ the plan
    def continues(self, index: int) -> bool:
        """Stage ``index`` is the previous stage resumed: it keeps the optimizer and continues the schedule on the
        same mixture (the same tasks at the same rates)."""
        stages = self.cfg.stages
        if index == 0 or dataclasses.astuple(stages[index].reset) != ("keep", "continue"):
            return False
        now, before = stages[index], stages[index - 1]
        return (self.cfg.stage_tasks(now) == self.cfg.stage_tasks(before)
                and self.rates.get(now.name) == self.rates.get(before.name) and now.name in self.rates)

    def start_step(self, index: int) -> int:
        """The Trainer's step count at the stage's start (the previous stage's last step when it continues it)."""
        if not self.continues(index):
            return 0
        return self.start_step(index - 1) + self.cfg.stages[index - 1].max_steps

    def final_state(self, index: int) -> Path:
        """Where stage ``index`` leaves its final training state: its last checkpoint."""
        stage = self.cfg.stages[index]
        return self.run_dir.stage_dir(index, stage) / f"checkpoint-{self.start_step(index) + stage.max_steps}"

    def _needs_final_state(self, index: int) -> bool:
        stages = self.cfg.stages
        return index + 1 < len(stages) and not stages[index + 1].reset.is_default

    def _chain(self, index: int) -> tuple[int, int]:
        """(first stage, last stage + 1) of the chain of stages linked by ``lr_schedule: continue`` around ``index``."""
        stages = self.cfg.stages
        head = index
        while head > 0 and stages[head].reset.lr_schedule == "continue":
            head -= 1
        end = index + 1
        while end < len(stages) and stages[end].reset.lr_schedule == "continue":
            end += 1
        return head, end

    # ------------------------------------------------------------------ the training arguments
    def adjust_arguments(self, index: int, kw: dict[str, Any]) -> None:
        """Stage ``index``'s training arguments as its reset and the next stage's need them (in place)."""
        stage = self.cfg.stages[index]
        if self._needs_final_state(index):  # the next stage takes over this stage's final state
            kw.update(save_strategy="steps", save_only_model=False)
        kw["max_steps"] = self.start_step(index) + stage.max_steps
        if stage.reset.lr_schedule == "continue":
            head = self.cfg.stages[self._chain(index)[0]]
            kw["lr_scheduler_type"] = head.optimization_arguments()["lr_scheduler_type"]
            theirs = self.cfg.training_for(head)
            for key in SCHEDULE_KEYS:
                kw.pop(key, None)
                if key in theirs:
                    kw[key] = theirs[key]

    # ------------------------------------------------------------------ the stage's start
    def check_final_states(self) -> None:
        """A finished stage whose next stage takes over its final state must still hold it (checked at the run's
        start, before any training)."""
        for index, stage in enumerate(self.cfg.stages[1:], start=1):
            previous = self.cfg.stages[index - 1]
            stage_dir = self.run_dir.stage_dir(index, stage)
            if stage.reset.is_default or not (self.run_dir.stage_dir(index - 1, previous) / "stage.json").is_file():
                continue
            if latest_checkpoint(stage_dir, stage.name) is None:
                self._previous_state(index)

    def _previous_state(self, index: int) -> Path:
        """The previous stage's final checkpoint, refused with the fix when it is gone."""
        stage, previous = self.cfg.stages[index], self.cfg.stages[index - 1]
        folder = self.final_state(index - 1)
        needed = ["trainer_state.json", SCHEDULER_STATE]
        if stage.reset.optimizer == "keep" and not any(folder.glob("global_step*")):  # (DeepSpeed: its own files)
            needed.append(OPTIMIZER_STATE)
        missing = [name for name in needed if not (folder / name).is_file()]
        if missing:
            raise RecipeError(f"stage `{stage.name}` ({stage.reset.describe()}) takes over the final state of "
                              f"`{previous.name}`, but {folder} {'does not exist' if not folder.is_dir() else 'lacks ' + ', '.join(missing)}; "
                              f"rerun `{previous.name}` (e.g. with --start-over), or set `stages.{index}.reset` to "
                              "{optimizer: fresh, lr_schedule: fresh}.")
        return folder

    def prepare(self, trainer: Any, index: int, stage: StageSpec) -> str | None:
        """Set up ``trainer`` for the stage's reset; returns the checkpoint its training resumes from: the stage's
        own newest one (a crash resume), else the previous stage's final one when the stage continues it, else None."""
        own = latest_checkpoint(self.run_dir.stage_dir(index, stage), stage.name)
        reset = stage.reset
        head, end = self._chain(index)
        steps = [s.max_steps for s in self.cfg.stages]
        if end > index + 1 or reset.lr_schedule == "continue":  # a schedule over the chain of `continue` stages
            trainer.schedule_handoff = ScheduleHandoff(horizon=sum(steps[head:end]), start=sum(steps[head:index]))
        if reset.is_default:
            return own
        previous = self._previous_state(index) if own is None else self.final_state(index - 1)
        if self.continues(index):
            trainer.add_callback(_ContinuedStage())
            # (the schedule's position comes with the resumed state)
            trainer.schedule_handoff = dataclasses.replace(trainer.schedule_handoff, start=0)
            logger.info("stage %s continues stage %s from %s", stage.name, self.cfg.stages[index - 1].name, previous)
            return own or str(previous)
        if reset.lr_schedule == "anneal":
            saved = torch.load(previous / SCHEDULER_STATE, map_location="cpu", weights_only=True)
            trainer.schedule_handoff = ScheduleHandoff(anneal_from=[float(lr) for lr in saved["_last_lr"]])
        if reset.optimizer == "keep":
            trainer.add_callback(_KeptOptimizer(trainer, previous))
        return own

    # ------------------------------------------------------------------ the stage's record
    def own_part(self, index: int, steps: int, history: list[dict[str, Any]], seen: dict[str, dict[str, int]],
                 earlier: Sequence[StageResult]) -> tuple[int, list[dict[str, Any]], dict[str, dict[str, int]]]:
        """(steps, history, counts) of the stage alone: a stage that continues the previous one resumed its step
        count, log history and per-task counts; the earlier stages of its chain are taken out."""
        start = self.start_step(index)
        if not start:
            return steps, history, seen
        first = index - self._continued_run(index)
        chain = [r for r in earlier if first <= r.index < index]
        before = {t: {u: sum((getattr(r, seen_key(u)) or {}).get(t, 0) for r in chain) for u in SEEN_UNITS}
                  for t in seen}
        own_seen = {t: {u: n - before[t][u] for u, n in counts.items()} for t, counts in seen.items()}
        logged = {f"{seen_key(u)}_{t}": n for t, counts in before.items() for u, n in counts.items()}
        own_history = [{**{k: (v - logged[k] if k in logged and isinstance(v, (int, float)) else v)
                           for k, v in h.items()}, "step": h.get("step", 0) - start}
                       for h in history if h.get("step", 0) > start]
        return steps - start, own_history, own_seen

    def _continued_run(self, index: int) -> int:
        """How many stages before ``index`` the Trainer's resumed state spans (the stages it continues)."""
        n = 0
        while index - n > 0 and self.continues(index - n):
            n += 1
        return n
