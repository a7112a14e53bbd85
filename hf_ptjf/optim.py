"""The paper's LM optimizer and LR schedules: T5X-style Adafactor and the rsqrt schedules.

* :class:`Adafactor`: Adafactor (Shazeer & Stern 2018) as in T5X, which the paper used for mT5 (its Appendix B:
  "we use momentum, and we do not factorize the second moment"): optional momentum ``beta1``, factored or full
  (``factored=False``) second moment with the ``1 - t**-decay_rate`` decay, update clipping, optional
  parameter-scale multiplication, and an explicit learning rate (no relative step: the LR comes from the
  scheduler).
* LR multipliers for :class:`torch.optim.lr_scheduler.LambdaLR` (callable objects, so the scheduler's state dict
  keeps them): :func:`constant_then_rsqrt` (pre-training: constant for ``constant_steps``, then inverse square
  root) and :func:`warmup_then_rsqrt` (fine-tuning: linear warmup, then inverse square root);
  :func:`get_lr_schedule` builds the ``LambdaLR`` by name.
* Where a stage's schedule starts when it is not fresh (its ``reset.lr_schedule``, :mod:`hf_ptjf.runner.resets`):
  :class:`ScheduleHandoff` (what the trainer's ``create_scheduler`` reads), :func:`fast_forward` (a ``continue`` stage
  takes up a schedule at the update where the previous stage left it) and :func:`anneal_schedule` (an ``anneal``
  stage: linear decay from the previous stage's last LR to 0, as OLMo 2's annealing stage).

Under DeepSpeed ZeRO-3 the optimizer is handed flat 1-D fp32 partitions instead of the model's tensors, so the
second moment is never factored there (the paper's setting anyway). :func:`register_zero3_segments` (called by
``MixtureTrainer``) tells the optimizer where each weight lies in those partitions, so that update clipping and the
parameter scale stay per weight; each rank computes them on its own slice of the weight (no communication), an
estimate of the whole weight's RMS.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .checks import is_integer, is_number

__all__ = [
    "ADAFACTOR_OPTIONS",
    "ADAMW_OPTIONS",
    "LR_SCHEDULES",
    "Adafactor",
    "ConstantThenRsqrt",
    "LinearToZero",
    "ScheduleHandoff",
    "WarmupThenRsqrt",
    "anneal_schedule",
    "constant_then_rsqrt",
    "fast_forward",
    "get_lr_schedule",
    "register_zero3_segments",
    "warmup_then_rsqrt",
]

# The options a recipe's `optimizer_args` (and MixtureTrainingArguments `optimizer_args`) may set, per `optim`, by one
# unprefixed name each. AdamW's are transformers' `adam_beta1` / `adam_beta2` / `adam_epsilon`.
ADAFACTOR_OPTIONS = ("beta1", "decay_rate", "clipping_threshold", "factored", "multiply_by_parameter_scale")
ADAMW_OPTIONS = ("beta1", "beta2", "epsilon")


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean().sqrt()


class Adafactor(Optimizer):
    """Adafactor with momentum and an optional unfactored second moment (T5X's ``adafactor.Adafactor``).

    Per parameter ``p`` with gradient ``g`` at step ``t`` (1-based), all in fp32:

    1. ``beta2 = 1 - t ** -decay_rate``; ``v = beta2 * v + (1 - beta2) * (g**2 + epsilon1)``, or, when factored,
       the row/column means of ``g**2 + epsilon1`` are averaged instead and ``v`` is their normalised outer product;
    2. ``u = g / sqrt(v)``, divided by ``max(1, rms(u) / clipping_threshold)`` (update clipping);
    3. ``u *= lr`` (times ``max(epsilon2, rms(p))`` with ``multiply_by_parameter_scale``);
    4. momentum: ``m = beta1 * m + (1 - beta1) * u``; ``u = m`` (T5X keeps the LR inside ``m``);
    5. ``p = p * (1 - lr * weight_decay) - u``.

    Args:
        params: parameters or parameter groups (groups may set ``lr`` and ``weight_decay``).
        lr: learning rate (the scheduler multiplies it); there is no relative-step mode.
        beta1: momentum coefficient, or ``None`` for none (Adafactor's default; the paper uses 0.9).
        decay_rate: exponent of the second-moment decay ``1 - t**-decay_rate`` (T5X: 0.8).
        clipping_threshold: update-clipping threshold on ``rms(u)``; ``None`` disables it.
        factored: factor the second moment of matrices (memory ~ rows + cols); ``False`` keeps it in full
            (the paper's choice).
        min_dim_size_to_factor: factor only tensors whose last two dims are both at least this (T5X: 128).
        multiply_by_parameter_scale: scale updates by the parameter's RMS (T5X's default; off here, as in the HF
            Trainer's ``adafactor``).
        epsilon1: added to ``g**2``. epsilon2: floor of the parameter scale.
        weight_decay: decoupled weight decay, multiplied by ``lr``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        *,
        beta1: float | None = None,
        decay_rate: float = 0.8,
        clipping_threshold: float | None = 1.0,
        factored: bool = True,
        min_dim_size_to_factor: int = 128,
        multiply_by_parameter_scale: bool = False,
        epsilon1: float = 1e-30,
        epsilon2: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0:
            raise ValueError(f"Adafactor: `lr` must be >= 0, got {lr!r}.")
        if beta1 is not None and not is_number(beta1, 0.0, 1.0):
            raise ValueError(f"Adafactor: `beta1` must be in [0, 1) or None, got {beta1!r}.")
        if not is_number(decay_rate, 0.0, open_low=True):
            raise ValueError(f"Adafactor: `decay_rate` must be > 0 (T5X uses 0.8), got {decay_rate!r}.")
        if clipping_threshold is not None and not is_number(clipping_threshold, 0.0, open_low=True):
            raise ValueError(f"Adafactor: `clipping_threshold` must be > 0 or None, got {clipping_threshold!r}.")
        if not is_integer(min_dim_size_to_factor, minimum=1):
            raise ValueError(f"Adafactor: `min_dim_size_to_factor` must be a positive int, got {min_dim_size_to_factor!r}.")
        defaults = dict(
            lr=lr, beta1=beta1, decay_rate=decay_rate, clipping_threshold=clipping_threshold, factored=factored,
            min_dim_size_to_factor=min_dim_size_to_factor, multiply_by_parameter_scale=multiply_by_parameter_scale,
            epsilon1=epsilon1, epsilon2=epsilon2, weight_decay=weight_decay,
        )
        super().__init__(params, defaults)
        self.segments: dict[torch.Tensor, list[int]] = {}  # see set_segments

    def set_segments(self, tensor: torch.Tensor, lengths: list[int]) -> None:
        """Declare ``tensor`` a flat concatenation of several weights of these lengths (a ZeRO partition group):
        update clipping and the parameter scale are then computed per segment, i.e. per weight, not over the whole
        flat tensor (see :func:`register_zero3_segments`). Its second moment is never factored (it is 1-D)."""
        if tensor.dim() != 1 or sum(lengths) != tensor.numel():
            raise ValueError(f"segments must tile a 1-D tensor: {sum(lengths)} elements given for {tuple(tensor.shape)}.")
        self.segments[tensor] = [int(n) for n in lengths]

    @staticmethod
    def _factored(group: dict[str, Any], shape: torch.Size) -> bool:
        return bool(group["factored"]) and len(shape) >= 2 and min(shape[-2:]) >= group["min_dim_size_to_factor"]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta1 = group["lr"], group["beta1"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Adafactor does not support sparse gradients.")
                grad = p.grad.float() if p.grad.dtype in _LOW_PRECISION else p.grad  # fp32 (or fp64) maths
                state = self.state[p]
                factored = self._factored(group, grad.shape)
                if not state:
                    state["step"] = 0
                    if factored:
                        state["v_row"] = grad.new_zeros(grad.shape[:-1])
                        state["v_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])
                    else:
                        state["v"] = torch.zeros_like(grad)
                    if beta1 is not None:
                        state["m"] = torch.zeros_like(grad)
                state["step"] += 1
                beta2 = 1.0 - state["step"] ** -group["decay_rate"]
                grad_sq = grad.square().add_(group["epsilon1"])
                if factored:
                    v_row, v_col = state["v_row"], state["v_col"]
                    v_row.mul_(beta2).add_(grad_sq.mean(dim=-1), alpha=1.0 - beta2)
                    v_col.mul_(beta2).add_(grad_sq.mean(dim=-2), alpha=1.0 - beta2)
                    row_factor = (v_row / v_row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
                    update = grad * row_factor * v_col.rsqrt().unsqueeze(-2)
                else:
                    v = state["v"]
                    v.mul_(beta2).add_(grad_sq, alpha=1.0 - beta2)
                    update = grad * v.rsqrt()
                param = p.float() if p.dtype in _LOW_PRECISION else p
                lengths = self.segments.get(p)  # a flat ZeRO partition: RMS quantities per weight
                pieces = zip(update.split(lengths), param.split(lengths)) if lengths else [(update, param)]
                for u, w in pieces:  # views: update is scaled in place
                    if not u.numel():
                        continue
                    if group["clipping_threshold"] is not None:
                        u.div_((_rms(u) / group["clipping_threshold"]).clamp_(min=1.0))
                    if group["multiply_by_parameter_scale"]:
                        u.mul_(_rms(w).clamp_(min=group["epsilon2"]))
                update.mul_(lr)
                if beta1 is not None:
                    update = state["m"].mul_(beta1).add_(update, alpha=1.0 - beta1)
                if group["weight_decay"]:
                    param.mul_(1.0 - lr * group["weight_decay"])
                param.sub_(update)
                if param is not p:
                    p.copy_(param)
        return loss


def register_zero3_segments(zero_optimizer: Any) -> int:
    """Tell an :class:`Adafactor` wrapped by DeepSpeed's ZeRO-3 optimizer where each weight lies in the flat fp32
    partitions it steps, so update clipping and the parameter scale stay per weight (computed on this rank's slice
    of it). Returns the number of partition groups registered (0 if this is not ZeRO-3 over an Adafactor)."""
    basic = getattr(zero_optimizer, "optimizer", None)
    flats = getattr(zero_optimizer, "fp32_partitioned_groups_flat", None)
    params = getattr(zero_optimizer, "fp16_groups", None)
    if not isinstance(basic, Adafactor) or flats is None or params is None:
        return 0
    for flat, group in zip(flats, params):
        basic.set_segments(flat, [p.partition_numel() for p in group])
    return len(flats)


def _positive_steps(name: str, steps: Any) -> int:
    if not is_integer(steps, minimum=1):
        raise ValueError(f"`{name}` must be a positive integer number of optimizer steps, got {steps!r}.")
    return steps


class ConstantThenRsqrt:
    """LR multiplier ``min(1, sqrt(constant_steps / step))``: constant, then inverse square root (T5's schedule)."""

    def __init__(self, constant_steps: int) -> None:
        self.constant_steps = _positive_steps("constant_steps", constant_steps)

    def __call__(self, step: int) -> float:
        return 1.0 if step <= self.constant_steps else math.sqrt(self.constant_steps / step)

    def __repr__(self) -> str:
        return f"constant_then_rsqrt({self.constant_steps})"


class WarmupThenRsqrt:
    """LR multiplier: linear warmup ``(step + 1) / warmup_steps`` to 1, then ``sqrt(warmup_steps / step)``."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = _positive_steps("warmup_steps", warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps  # the first update already moves (no zero-LR step)
        return math.sqrt(self.warmup_steps / step)

    def __repr__(self) -> str:
        return f"warmup_then_rsqrt({self.warmup_steps})"


def constant_then_rsqrt(constant_steps: int) -> ConstantThenRsqrt:
    """The paper's pre-training (and static-sampling baseline) schedule: ``lr = base * min(1, sqrt(c / step))``.

    ``LambdaLR(optimizer, constant_then_rsqrt(10_000))`` with base LR 0.01 is T5's ``1/sqrt(max(step, 10k))``.
    ``step`` is the number of optimizer updates already done (``LambdaLR``'s counter).
    """
    return ConstantThenRsqrt(constant_steps)


def warmup_then_rsqrt(warmup_steps: int) -> WarmupThenRsqrt:
    """The paper's fine-tuning schedule: linear warmup over ``warmup_steps`` updates, then ``sqrt(w / step)``."""
    return WarmupThenRsqrt(warmup_steps)


LR_SCHEDULES: dict[str, Callable[[int], Callable[[int], float]]] = {
    "constant_then_rsqrt": constant_then_rsqrt,
    "warmup_then_rsqrt": warmup_then_rsqrt,
}


def get_lr_schedule(name: str, optimizer: Optimizer, steps: int, last_epoch: int = -1) -> LambdaLR:
    """``LambdaLR`` for the schedule ``name`` (one of :data:`LR_SCHEDULES`) pivoting at ``steps`` updates."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"unknown LR schedule {name!r}; choose one of {sorted(LR_SCHEDULES)}.")
    return LambdaLR(optimizer, LR_SCHEDULES[name](steps), last_epoch=last_epoch)


class LinearToZero:
    """LR multiplier ``max(0, 1 - step / steps)``: 1 at the first update, then linearly to 0 after ``steps`` updates."""

    def __init__(self, steps: int) -> None:
        self.steps = _positive_steps("steps", steps)

    def __call__(self, step: int) -> float:
        return max(0.0, 1.0 - step / self.steps)

    def __repr__(self) -> str:
        return f"linear_to_zero({self.steps})"


@dataclass
class ScheduleHandoff:
    """Where a stage's LR schedule starts when its ``reset.lr_schedule`` is not ``fresh`` (set on the trainer by
    :mod:`hf_ptjf.runner.resets`; ``None`` there: the stage's own schedule from update 0).

    Args:
        horizon: updates the schedule spans (``continue``: the chain of stages linked by ``continue``, so that a
            decay set over the first stage alone does not end at 0 there and the warmup happens once); None: the
            training's own ``max_steps``.
        start: updates of that schedule the earlier stages of the chain did (the schedule resumes there).
        anneal_from: ``anneal``: the LR of each parameter group where the previous stage left it; the schedule
            decays linearly from it to 0 over the training's ``max_steps``.
    """

    horizon: int | None = None
    start: int = 0
    anneal_from: Sequence[float] | None = None


def fast_forward(scheduler: LambdaLR, steps: int) -> LambdaLR:
    """Move a ``LambdaLR`` ``steps`` updates on (its optimizer's LR set to the schedule's value there) without
    stepping the optimizer: a ``continue`` stage takes up the schedule where the previous stage left it."""
    if not isinstance(scheduler, LambdaLR):
        raise ValueError(f"a schedule can be continued only as a LambdaLR (transformers' and hf_ptjf's schedules "
                         f"are), got {type(scheduler).__name__}.")
    scheduler.last_epoch = steps - 1
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": on purpose here
        warnings.simplefilter("ignore", UserWarning)
        scheduler.step()
    return scheduler


def anneal_schedule(optimizer: Optimizer, start_lrs: Sequence[float], steps: int) -> LambdaLR:
    """The LR of an annealing stage: from ``start_lrs`` (one per parameter group, where the previous schedule left
    them) linearly to 0 over ``steps`` updates (:class:`LinearToZero`)."""
    if len(start_lrs) != len(optimizer.param_groups):
        raise ValueError(f"{len(start_lrs)} starting LRs for {len(optimizer.param_groups)} parameter groups.")
    for group, lr in zip(optimizer.param_groups, start_lrs):
        group["lr"] = group["initial_lr"] = float(lr)  # (the schedule's base LR: a kept optimizer has its own)
    return LambdaLR(optimizer, LinearToZero(steps))
