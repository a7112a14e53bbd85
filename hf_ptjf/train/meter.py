"""`TaskMeter`: what each task of a mixture consumed (examples, target tokens, characters) and its training loss.

Counts and loss sums are kept on this rank between logs and summed over ranks when read (a collective call: every
rank reads them at the same point, in ``log`` and ``_save_checkpoint``); a checkpoint's totals are the base a resumed
run adds to.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..seen import CHARACTERS, SEEN_UNITS

__all__ = ["TaskMeter", "sum_over_ranks"]

# the counter rows: SEEN_UNITS, then how many examples carried a character count (all of them, or the task's characters
# are unknown: rows from data without a `characters` column)
CARRIED = "examples_with_characters"
ROWS = (*SEEN_UNITS, CARRIED)
LOSS_CHUNK = 4096  # logit rows per log-softmax: the extra pass stays small for large vocabularies


def sum_over_ranks(local: torch.Tensor, world_size: int, device: Any) -> torch.Tensor:
    """``local`` summed over all ranks (a collective call when distributed), on the CPU."""
    if dist.is_available() and dist.is_initialized() and world_size > 1:
        # gloo and nccl both reduce; nccl needs the tensor on the device
        local = local.to(device if dist.get_backend() == "nccl" else torch.device("cpu"))
        dist.all_reduce(local, op=dist.ReduceOp.SUM)
    return local.cpu()


class TaskMeter:
    """Per-task counts and training-loss windows of one rank (see the module docstring)."""

    def __init__(self, task_names: Sequence[str], world_size: int, device: Any) -> None:
        self.task_names = list(task_names)
        self.world_size, self.device = world_size, device
        k = len(self.task_names)
        self._seen = torch.zeros(len(ROWS), k, dtype=torch.long)  # this rank, since (re)start
        self._base = np.zeros((len(ROWS), k), dtype=np.int64)  # all ranks, restored from a checkpoint
        self._loss_sums = torch.zeros(k, dtype=torch.float32)  # this rank, this logging window (where the logits are)
        self._loss_tokens = torch.zeros(k, dtype=torch.float32)
        self.mixing = False  # an online strategy reads each step's losses too (take_step_losses)
        self._step_losses = torch.zeros(2, k, dtype=torch.float32)  # this rank, this optimizer step: sums, tokens

    # ------------------------------------------------------------------ counting
    def count(self, task_id: torch.Tensor, unit: str, per_example: torch.Tensor | None = None) -> None:
        """Add a batch's per-example values (``None``: one each) to this rank's per-task counts of ``unit``."""
        weights = None if per_example is None else per_example.detach().to("cpu", torch.float64)
        self._seen[ROWS.index(unit)] += torch.bincount(task_id, weights=weights, minlength=len(self.task_names)).long()

    def count_batch(self, task_id: torch.Tensor, scored_labels: torch.Tensor | None,
                    characters: torch.Tensor | None) -> None:
        """Count a training batch: its examples, the label tokens the loss scores, and its characters (a row's -1:
        no count, and its task's characters stay unknown)."""
        self.count(task_id, "examples")
        if scored_labels is not None:
            self.count(task_id, "target_tokens", (scored_labels != -100).sum(dim=-1))
        if characters is not None:
            self.count(task_id, CHARACTERS, characters.clamp(min=0))
            self.count(task_id, CARRIED, characters >= 0)

    def seen(self) -> dict[str, dict[str, int]]:
        """Cumulative per-task counts consumed by all ranks, ``{task: {unit: n}}`` over ``SEEN_UNITS`` (a collective
        call). ``characters`` only for a task every one of whose examples carried a character count."""
        total = self._base + sum_over_ranks(self._seen.clone(), self.world_size, self.device).numpy()
        out = {}
        for i, name in enumerate(self.task_names):
            counts = {unit: int(total[u, i]) for u, unit in enumerate(SEEN_UNITS)}
            if total[ROWS.index(CARRIED), i] != counts["examples"]:  # some rows had no character count
                del counts[CHARACTERS]
            out[name] = counts
        return out

    def restore(self, saved: Mapping[str, Mapping[str, int]]) -> None:
        """Continue from a checkpoint's ``seen`` counts (a task saved without characters stays unknown)."""
        base = np.zeros((len(ROWS), len(self.task_names)), dtype=np.int64)
        for i, name in enumerate(self.task_names):
            counts = {**saved[name], CARRIED: saved[name]["examples"] if CHARACTERS in saved[name] else 0}
            base[:, i] = [counts.get(row, 0) for row in ROWS]
        self._base = base
        self._seen.zero_()

    # ------------------------------------------------------------------ training loss per task
    def add_losses(self, logits: torch.Tensor, labels: torch.Tensor, task_id: torch.Tensor, *, causal: bool,
                   label_smoothing: float) -> None:
        """Per-task sums of the per-token training loss (label smoothing as the loss applies it) and token counts.

        Computed without gradients from the logits the loss was computed from, in row chunks.
        """
        with torch.no_grad():
            if causal:  # position t predicts label t + 1: shift the labels, not the (large) logits
                labels = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
            eps = label_smoothing
            rows = logits.reshape(-1, logits.shape[-1])
            flat = labels.reshape(-1).to(rows.device)
            per_token = torch.zeros(flat.shape[0], dtype=torch.float32, device=rows.device)
            for start in range(0, rows.shape[0], LOSS_CHUNK):
                logp = torch.log_softmax(rows[start : start + LOSS_CHUNK].float(), dim=-1)
                target = flat[start : start + LOSS_CHUNK]
                nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                per_token[start : start + LOSS_CHUNK] = (1 - eps) * nll - eps * logp.mean(-1) if eps else nll
            active = (flat != -100).reshape(labels.shape)
            per_example = (per_token.reshape(labels.shape) * active).sum(-1)
            if self._loss_sums.device != per_example.device:  # kept where the logits are: no sync per step
                self._loss_sums = self._loss_sums.to(per_example.device)
                self._loss_tokens = self._loss_tokens.to(per_example.device)
            ids = task_id.to(per_example.device)
            tokens = active.sum(-1).float()
            self._loss_sums.index_add_(0, ids, per_example)
            self._loss_tokens.index_add_(0, ids, tokens)
            if self.mixing:
                self._step_losses = self._step_losses.to(per_example.device)
                self._step_losses[0].index_add_(0, ids, per_example)
                self._step_losses[1].index_add_(0, ids, tokens)

    def take_step_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """This optimizer step's per-task loss sums and scored tokens, summed over ranks (float64), then zeroed (a
        collective call)."""
        total = sum_over_ranks(self._step_losses.clone(), self.world_size, self.device).double().numpy()
        self._step_losses.zero_()
        return total[0], total[1]

    def window_losses(self) -> dict[str, float]:
        """``train_<task>_loss`` over the logging window (summed over ranks), then a new window (a collective)."""
        stacked = torch.stack([self._loss_sums, self._loss_tokens])
        sums, tokens = sum_over_ranks(stacked, self.world_size, self.device).double()
        self._loss_sums.zero_()
        self._loss_tokens.zero_()
        return {f"train_{name}_loss": round(float(sums[i] / tokens[i]), 4)
                for i, name in enumerate(self.task_names) if tokens[i] > 0}
