"""`OnlineMixer`: drives a mixture's online strategy (``odm``) from the trainer, a callback at the end of every step.

After each optimizer step it takes the step's per-task training-loss sums (summed over the ranks: every rank then
holds the same numbers and computes the same rates), and every ``update_every`` steps gives the strategy the window's
mean loss per task and the rates that drew it. The new rates are appended to the data's
:class:`~hf_ptjf.mixture.schedule.RateSchedule` at the first position of step ``step + delay``: the DataLoader reads
ahead of the optimizer (accelerate prefetches a micro-batch, DataLoader workers ``prefetch_factor`` batches each), and
rates may only change where nothing was computed yet, so that when the data is read does not change what it is.
The strategy's state, the open window and the delay go into every checkpoint (``mixture_state.json``), the schedule
with the data's position: a resumed run continues bit for bit, in O(1).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from transformers import TrainerCallback

from ..mixture.online import OnlineStrategy
from .data import MixtureData
from .meter import TaskMeter

__all__ = ["OnlineMixer"]


class OnlineMixer(TrainerCallback):
    """The online strategy of one training run (see the module docstring)."""

    def __init__(self, strategy: OnlineStrategy, rates: np.ndarray, data: MixtureData, meter: TaskMeter,
                 args: Any) -> None:
        if data.kind == "stream" and args.dataloader_num_workers > 0:
            raise ValueError("an online mixture (strategy odm) of streamed tasks needs `dataloader_num_workers: 0`: "
                             "each DataLoader worker would hold its own copy of the rates, which change while training.")
        self.strategy, self.data, self.meter = strategy, data, meter
        self.task_names = list(data.task_names)
        strategy.start(rates)
        self.per_step = args.total_train_batch_size
        workers = args.dataloader_num_workers
        read_ahead = 1 + workers * ((args.dataloader_prefetch_factor or 2) if workers else 0)  # micro-batches
        self.delay = 2 + math.ceil(read_ahead / args.gradient_accumulation_steps)  # optimizer steps
        self.window = np.zeros((3, len(self.task_names)))  # loss sums, scored tokens, rates (summed over its steps)
        self.window_steps = 0
        data.read_ahead(self.per_step)
        meter.mixing = True

    def rates_of_step(self, step: int) -> np.ndarray:
        """The rates that drew optimizer step ``step``'s examples (steps count from 1)."""
        return self.data.schedule.rates_at((step - 1) * self.per_step)

    def rate_logs(self, step: int) -> dict[str, float]:
        """``rate_<task>``: the rates of step ``step``, for the training log."""
        return {f"rate_{name}": round(float(r), 6) for name, r in zip(self.task_names, self.rates_of_step(step))}

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:  # noqa: D102
        step = state.global_step
        sums, tokens = self.meter.take_step_losses()  # (a collective: every rank is here)
        self.window += np.stack([sums, tokens, self.rates_of_step(step)])
        self.window_steps += 1
        if step % self.strategy.update_every:
            return control
        sums, tokens, rate_sums = self.window
        losses = np.where(tokens > 0, sums / np.maximum(tokens, 1), np.nan)
        rates = self.strategy.update(losses, rate_sums / self.window_steps)
        self.window[:], self.window_steps = 0, 0
        position = (step + self.delay) * self.per_step
        if position < self.data.drawn:
            raise RuntimeError(f"the DataLoader read position {self.data.drawn} before the rates of position {position} "
                               "were decided (an online mixture needs its reads at most a few steps ahead).")
        schedule = self.data.schedule
        schedule.forget_before(step * self.per_step)
        schedule.append(position, rates)
        return control

    def summary(self, step: int) -> dict[str, Any]:
        """What a run records of it: the strategy's parameters, its updates and the rates of step ``step``."""
        params = {k: v for k, v in vars(self.strategy).items() if isinstance(v, (int, float)) and k != "t"}
        return {**params, "updates": int(getattr(self.strategy, "t", 0)),
                "final_rates": {n: float(r) for n, r in zip(self.task_names, self.rates_of_step(step))}}

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state, the open window and the delay (the schedule is saved with the data's position)."""
        return {"strategy": self.strategy.state_dict(), "window": self.window.tolist(),
                "window_steps": self.window_steps, "delay": self.delay}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a checkpoint's online strategy."""
        self.strategy.load_state_dict(state["strategy"])
        self.window = np.asarray(state["window"], dtype=np.float64)
        self.window_steps, self.delay = int(state["window_steps"]), int(state["delay"])
