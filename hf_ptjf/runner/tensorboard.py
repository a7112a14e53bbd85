"""TensorBoard for a whole run: one log directory, the global step continuing across stages.

The Trainer's own callback logs each stage under its output directory with steps from 0, so the stages
overlap in TensorBoard and the reset is invisible. :class:`RunTensorBoardCallback` logs every stage into
``<output_dir>/tensorboard`` at ``steps of the earlier stages + the stage's step``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from transformers.integrations import TensorBoardCallback

__all__ = ["RunTensorBoardCallback", "use_run_tensorboard"]


class RunTensorBoardCallback(TensorBoardCallback):
    """A :class:`~transformers.integrations.TensorBoardCallback` writing to one directory at shifted steps."""

    def __init__(self, logging_dir: str | Path, step_offset: int) -> None:
        super().__init__()
        self.logging_dir = str(logging_dir)
        self.step_offset = int(step_offset)
        self._ended = False

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        shifted = SimpleNamespace(is_world_process_zero=state.is_world_process_zero,
                                  global_step=self.step_offset + state.global_step)
        super().on_log(args, shifted, control, logs=logs, **kwargs)
        if self._ended and self.tb_writer is not None:  # a log after training (BLEU): close what it reopened
            self.tb_writer.close()
            self.tb_writer = None

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_end(args, state, control, **kwargs)
        self._ended = True


def use_run_tensorboard(trainer: Any, logging_dir: str | Path, step_offset: int) -> None:
    """Replace the trainer's TensorBoard callback (if ``report_to`` has one) by the run-wide one."""
    if any(isinstance(cb, TensorBoardCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(TensorBoardCallback)
        trainer.add_callback(RunTensorBoardCallback(logging_dir, step_offset))
