"""Online rate strategies: rates that a strategy decides while the model trains, from the per-task training loss.

An online strategy starts from initial rates (another strategy's, e.g. temperature; uniform by default) and is
updated every ``update_every`` optimizer steps with each task's mean training loss over that window (summed over the
ranks first, so every rank computes the same rates) and the rates that drew the window's batches. The trainer
(:mod:`hf_ptjf.train.online`) appends its new rates to the data's :class:`~hf_ptjf.mixture.schedule.RateSchedule` at a
position the DataLoader has not drawn yet and keeps its state in every checkpoint; the strategy itself is pure
arithmetic on a few numbers (float64, the same on every rank), registered by name like the fixed-rate ones.

``odm`` is Online Data Mixing (Albalak et al. 2023, "Efficient Online Data Mixing For Language Model Pre-Training"):
EXP3 with each task an arm, the reward a task's training loss importance-weighted by its rate, smoothed by a moving
average, and the exploration rate decaying as ``eps_t = min(1/K, sqrt(ln K / (K t)))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..checks import is_integer, is_number
from .strategies import normalise, register_online_strategy

__all__ = ["ODM", "OnlineStrategy", "exploration_rate"]


class OnlineStrategy:
    """What an online strategy implements (see the module docstring): ``update_every``, :meth:`start`,
    :meth:`update` and a checkpointable state."""

    update_every: int = 1

    def check(self, num_tasks: int) -> None:
        """Refuse parameters that cannot work for ``num_tasks`` tasks (before any work)."""

    def start(self, rates: Sequence[float]) -> None:
        """Begin a stage at ``rates`` (the initial rates, computed by the mixture's ``initial`` strategy)."""
        raise NotImplementedError

    def update(self, losses: np.ndarray, rates_used: np.ndarray) -> np.ndarray:
        """The next rates from each task's mean training loss over the last window (``nan``: the task drew no
        example in it) and the rates that drew the window (mean over its steps)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError


def exploration_rate(t: int, k: int) -> float:
    """ODM's exploration rate after ``t`` updates of ``k`` arms: ``1/k`` at first, then ``min(1/k, sqrt(ln k / (k t)))``."""
    if k < 2 or t <= 0:
        return 1.0 / max(k, 1)
    return min(1.0 / k, math.sqrt(math.log(k) / (k * t)))


@dataclass
class ODM(OnlineStrategy):
    """Online Data Mixing: EXP3 over the tasks, the training loss as the reward (the module docstring has the paper).

    At update ``t`` (after the ``t``-th window), for every task ``i`` that drew examples in the window::

        R_i <- alpha * R_i + (1 - alpha) * L_i / pi_i           (L_i: its mean loss; pi_i: the rate that drew it)
        q   =  softmax(log pi0 + eps_{t-1} * R)                 (pi0: the initial rates; uniform: the paper's rule)
        pi  =  (1 - K eps_t) q + eps_t,   then   (1 - K floor) pi + floor

    so no task's rate falls below ``floor`` and with uniform initial rates the rule is the paper's.

    Args:
        update_every: optimizer steps per window (the paper updates after every step).
        alpha: the moving average's weight on the previous reward estimate (the paper's smoothing, 0.9).
        floor: the least rate of any task (``K * floor < 1``); 0 leaves only the exploration rate.
    """

    update_every: int = 1
    alpha: float = 0.9
    floor: float = 0.01
    t: int = field(default=0, init=False)
    rewards: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)
    prior: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)
    rates: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)

    def __post_init__(self) -> None:
        if not is_integer(self.update_every, minimum=1):
            raise ValueError(f"update_every must be an integer >= 1 (optimizer steps between rate updates), "
                             f"got {self.update_every!r}")
        if not is_number(self.alpha, 0, 1):
            raise ValueError(f"alpha must be a number in [0, 1) (the reward's moving-average weight; the paper's 0.9), "
                             f"got {self.alpha!r}")
        if not is_number(self.floor, 0, 1):
            raise ValueError(f"floor must be a number in [0, 1) (the least rate of a task, e.g. 0.01), got {self.floor!r}")

    def check(self, num_tasks: int) -> None:  # noqa: D102
        if self.floor * num_tasks >= 1:
            raise ValueError(f"floor {self.floor} is too large for {num_tasks} tasks: K * floor must stay below 1 "
                             f"(use less than {1 / num_tasks:.4g}, e.g. 0.01).")

    def start(self, rates: Sequence[float]) -> None:  # noqa: D102
        initial = np.asarray(rates, dtype=np.float64)
        k = initial.size
        self.check(k)
        # A task the initial rates leave out still gets the floor and the exploration rate (log 0 would exclude it).
        self.prior = np.log(np.maximum(initial, 1e-12))
        self.rewards = np.zeros(k)
        self.rates = initial.copy()
        self.t = 0

    def update(self, losses: np.ndarray, rates_used: np.ndarray) -> np.ndarray:  # noqa: D102
        losses, rates_used = np.asarray(losses, dtype=np.float64), np.asarray(rates_used, dtype=np.float64)
        seen = np.isfinite(losses) & (rates_used > 0)
        self.rewards[seen] = self.alpha * self.rewards[seen] + (1 - self.alpha) * losses[seen] / rates_used[seen]
        k = self.rewards.size
        previous = exploration_rate(self.t, k)
        self.t += 1
        eps = exploration_rate(self.t, k)
        logits = self.prior + previous * self.rewards
        q = normalise(np.exp(logits - logits.max()))
        rates = (1 - k * eps) * q + eps
        self.rates = normalise((1 - k * self.floor) * rates + self.floor)
        return self.rates.copy()

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"t": self.t, "rewards": self.rewards.tolist(), "prior": self.prior.tolist(), "rates": self.rates.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: D102
        if len(state["rewards"]) != self.rewards.size:
            raise ValueError(f"cannot resume the online strategy: the checkpoint has {len(state['rewards'])} tasks, "
                             f"this run {self.rewards.size}.")
        self.t = int(state["t"])
        self.rewards, self.prior, self.rates = (np.asarray(state[key], dtype=np.float64)
                                                for key in ("rewards", "prior", "rates"))


register_online_strategy("odm", ODM, params=("update_every", "alpha", "floor"))
