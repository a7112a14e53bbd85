"""``recipes/run.py`` with test hooks, for the crash tests in ``tests/test_reliability.py``.

Same command line and exit codes as ``recipes/run.py``; environment variables add:

* ``HF_PTJF_TEST_PROGRESS=FILE``: after every optimizer step append ``<stage output_dir> <global_step>`` to
  FILE (flushed), so the test knows which stage and step the run is at;
* ``HF_PTJF_TEST_STEP_SLEEP=SECONDS``: sleep that long at the start of every step, so that a SIGKILL sent at a
  random moment lands anywhere in a step (training, logging, evaluation, checkpoint saving).

Nothing else changes: the run, its files and its results are those of ``recipes/run.py``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import TrainerCallback  # noqa: E402

from hf_ptjf import trainer as trainer_module  # noqa: E402
from hf_ptjf.cli import main  # noqa: E402


class _Hooks(TrainerCallback):
    def __init__(self) -> None:
        self.progress = os.environ.get("HF_PTJF_TEST_PROGRESS")
        self.sleep = float(os.environ.get("HF_PTJF_TEST_STEP_SLEEP", "0") or 0)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: D102
        if self.sleep:
            time.sleep(self.sleep)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        if self.progress:
            with open(self.progress, "a") as f:
                f.write(f"{args.output_dir} {state.global_step}\n")
                f.flush()


_init = trainer_module.MixtureTrainer.__init__


def _hooked_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.add_callback(_Hooks())


trainer_module.MixtureTrainer.__init__ = _hooked_init

if __name__ == "__main__":
    sys.exit(main())
