"""``hf-ptjf``: one command for every tool, a subcommand each (``hf-ptjf COMMAND --help`` for its arguments).

=========  ===================================================================  =================================
command    what it does                                                         also spelled
=========  ===================================================================  =================================
run        run a recipe's stages (``--launch`` for several processes)          ``recipes/run.py``,
                                                                                ``python -m hf_ptjf.runner``
sweep      run a sampling-rate sweep and gather its table and report            ``recipes/sweep.py``
inspect    is PTJF expected to help this recipe? plan, numbers, verdict         ``hf-ptjf-inspect``
plan       will the recipe's model fit under DeepSpeed ZeRO-3?                  ``hf-ptjf-plan``
compare    compare finished runs task by task (the paper's Figs. 7-8)           ``python -m hf_ptjf.analysis.compare``
hub        start the offline Hub-compatible server                              ``python -m hf_ptjf.hub.server``
=========  ===================================================================  =================================

Each command is one module here (``hf_ptjf.cli.<command>``, with ``main(argv, prog)``), and every one reports
errors the same way (:mod:`hf_ptjf.cli.policy`): a user error is one ``error: ...`` line and exit status 2.
Only the chosen command's module is imported, so ``hf-ptjf --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Sequence

__all__ = ["COMMANDS", "main"]

COMMANDS = {  # name -> one line of help; the command is hf_ptjf.cli.<name>.main
    "run": "run a recipe's stages (pre-training, reset, fine-tuning); --launch for several processes",
    "sweep": "run a sampling-rate sweep of trials and gather its table and report",
    "inspect": "is PTJF expected to help this recipe? per-stage plan, deciding numbers, verdict",
    "plan": "will the recipe's model fit the GPUs under DeepSpeed ZeRO-3? (nothing is allocated)",
    "compare": "compare finished runs task by task: seeds pooled, bars and loss-vs-tokens curves",
    "hub": "start the offline Hub-compatible server (serves until interrupted)",
}


def _parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    parser = argparse.ArgumentParser(
        prog="hf-ptjf", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pre-training joint fine-tuning (PTJF) for imbalanced multi-task training.\n\ncommands:\n"
        + "\n".join(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
        epilog="`hf-ptjf COMMAND --help` lists a command's arguments. A user error is one `error:` line and exit "
        "status 2 (HF_PTJF_DEBUG=1 keeps the traceback).")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-ptjf COMMAND [ARGS ...]``: the command's exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    command = import_module(f"{__name__}.{args.command}")
    return command.main(args.args, prog=f"hf-ptjf {args.command}")
