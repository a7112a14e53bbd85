"""``recipes/run.py`` with test hooks, for the crash tests in ``tests/test_reliability.py``.

Same command line, files and exit codes as ``recipes/run.py``; environment variables add:

* ``HF_PTJF_TEST_PROGRESS=FILE``: after every optimizer step append ``<stage dir name> <global_step>`` to FILE
  (flushed), so that a test knows which stage and step the run is at;
* ``HF_PTJF_TEST_STEP_SLEEP=SECONDS``: sleep that long at the start of every step, so that a SIGKILL sent at a
  random moment can land anywhere in a step (training, logging, evaluation, checkpoint saving);
* ``HF_PTJF_TEST_KILL=WHEN``: the process SIGKILLs itself at a chosen point, to reach the narrow windows:
  ``save:<stage dir name>:<step>``: in the middle of saving that checkpoint (weights and mixture state
  written; optimizer, scheduler, RNG and trainer state not yet);
  ``pushed:<stage name>``: right after the stage's push was confirmed, before the stage is recorded.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import TrainerCallback  # noqa: E402

from hf_ptjf import hub as hub_module  # noqa: E402
from hf_ptjf import train as trainer_module  # noqa: E402
from hf_ptjf.cli.run import main  # noqa: E402

KILL = os.environ.get("HF_PTJF_TEST_KILL", "")


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


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
                f.write(f"{Path(args.output_dir).name} {state.global_step}\n")


_init = trainer_module.MixtureTrainer.__init__


def _hooked_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.add_callback(_Hooks())


trainer_module.MixtureTrainer.__init__ = _hooked_init

if KILL.startswith("save:"):
    _, _stage, _step = KILL.split(":")
    _save_optimizer = trainer_module.MixtureTrainer._save_optimizer_and_scheduler

    def _save_optimizer_and_scheduler(self, output_dir):
        if Path(self.args.output_dir).name == _stage and self.state.global_step == int(_step):
            _die()  # the weights and mixture_state.json of this checkpoint are on disk, the rest is not
        return _save_optimizer(self, output_dir)

    trainer_module.MixtureTrainer._save_optimizer_and_scheduler = _save_optimizer_and_scheduler

elif KILL.startswith("pushed:"):
    _stage = KILL.split(":", 1)[1]
    _verify = hub_module.verify_revision

    def _verify_then_die(repo_id, sha, folder, **kwargs):
        _verify(repo_id, sha, folder, **kwargs)
        if repo_id.endswith(f"-{_stage}"):
            _die()  # pushed and confirmed, but not yet recorded in stage.json

    hub_module.verify_revision = _verify_then_die

if __name__ == "__main__":
    sys.exit(main())
