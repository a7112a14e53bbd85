"""``hf-ptjf run`` (also ``recipes/run.py`` and ``python -m hf_ptjf.runner``): run a recipe's stages.

Besides the error policy (:mod:`hf_ptjf.cli.policy`) the runner's command line has three cases of its own:

* every rank reads the same recipe and fails the same way, so an error met while reading it is printed once;
* a save that runs out of disk (torch and safetensors report it as C++ stream errors) is one line saying so;
* ``--launch ACCELERATE_CONFIG`` checks the recipe in this process, then starts this same command under
  ``accelerate launch``, and a rank's exit status (2 for a user error) comes back instead of the launcher's 1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
from typing import Iterator, Sequence

import torch
from accelerate.commands.launch import launch_command, launch_command_parser

from ..errors import EXIT_USER_ERROR
from ..recipe import RecipeConfig, RecipeError, load_recipe
from ..runner.loop import run_recipe
from ..runner.preflight import check_before_work
from ..runner.records import RunDirectory
from ..runner.results import render_report, where_everything_is
from .policy import configure_logging, debug_mode, is_main_process, is_user_error, report_user_errors

__all__ = ["build_parser", "disk_full_story", "main"]

LAUNCH_OPTIONS = ("--launch", "--machine-rank", "--join-timeout")  # for this process, not for the ranks
RANK_MODULE = "hf_ptjf.runner"  # what each rank runs under `accelerate launch` (`python -m hf_ptjf.runner ...`)
_NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "filelock")  # a line per Hub request


def build_parser(prog: str = "recipes/run.py") -> argparse.ArgumentParser:
    """``CONFIG [key=value ...] [--start-over] [--launch ACCELERATE_CONFIG ...]``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a hf_ptjf recipe: stages of (pre-)training with fresh optimizer + LR schedule each.",
        epilog="Example: accelerate launch --config_file accelerate_configs/cpu_single.yaml recipes/run.py "
        "recipes/configs/quickstart.yaml learning_rate=1e-3 stages.joint.max_steps=200",
    )
    parser.add_argument("config", help="recipe YAML file")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides (values parsed as YAML)")
    parser.add_argument("--start-over", action="store_true", help="discard a different run in output_dir")
    parser.add_argument(
        "--launch", metavar="ACCELERATE_CONFIG",
        help="check the recipe here, then start it under `accelerate launch --config_file ACCELERATE_CONFIG`; a user "
        "error is then one line and exit status 2 however many processes run (a bare `accelerate launch` adds its own "
        "traceback and exits 1 when a rank fails)",
    )
    parser.add_argument("--machine-rank", type=int, help="with --launch on several machines: this machine's rank")
    parser.add_argument("--join-timeout", type=int, default=600, metavar="SECONDS",
                        help="with --launch on several machines: how long machine 0 waits for the others (default 600)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "recipes/run.py") -> int:
    """``run.py CONFIG [key=value ...] [--start-over]``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_intermixed_args(argv)  # options may come between the config and the overrides
    configure_logging()
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return report_user_errors(lambda: _run(args, argv))


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        config = load_recipe(args.config, args.overrides)
    except Exception as error:
        error.shared = True  # type: ignore[attr-defined]  # every rank reads the same recipe: rank 0 reports it
        raise
    with _disk_full_is_one_line(config):
        if args.launch:
            return launch(config, args.launch, without_launch_options(argv), start_over=args.start_over,
                          machine_rank=args.machine_rank, join_timeout=args.join_timeout)
        results = run_recipe(config, start_over=args.start_over)
    if is_main_process():
        print(render_report(results))
        print(where_everything_is(results, config.output_dir))
    return 0


@contextlib.contextmanager
def _disk_full_is_one_line(config: RecipeConfig) -> Iterator[None]:
    """An error that is a full disk (and not already a user error) becomes a :class:`RecipeError` naming
    ``output_dir``; in debug mode the original error propagates."""
    try:
        yield
    except Exception as error:
        story = None if debug_mode() or is_user_error(error) else disk_full_story(error)
        if story is None:
            raise
        raise RecipeError(f"output_dir `{config.output_dir}`: {story}") from error


def disk_full_story(error: BaseException) -> str | None:
    """The one-line story of a save that ran out of disk (torch and safetensors report it as C++ stream errors), or
    None when ``error`` (or what caused it) is not a full disk."""
    text = f"{type(error).__name__}: {error}"
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == 28 or any(
            marker in str(cause) for marker in ("iostream error", "No space left", "file write failed")
        ):
            return ("the disk filled up while saving (" + " ".join(text.split())[:160] + "); free some space and rerun "
                    "the same command: the run resumes from its newest complete checkpoint.")
        cause = cause.__cause__ or cause.__context__
    return None


def without_launch_options(argv: Sequence[str]) -> list[str]:
    """``argv`` less ``--launch``, ``--machine-rank`` and ``--join-timeout`` (and their values): the ranks' command."""
    out, skip = [], False
    for arg in map(str, argv):
        if skip or arg.startswith(tuple(f"{o}=" for o in LAUNCH_OPTIONS)):
            skip = False
            continue
        if arg in LAUNCH_OPTIONS:
            skip = True
            continue
        out.append(arg)
    return out


def launch(config: RecipeConfig, accelerate_config: str, argv: list[str], *, start_over: bool,
           machine_rank: int | None = None, join_timeout: int = 600) -> int:
    """Check everything checkable in this process, then run this same command under ``accelerate launch``.

    The launcher reports a failed rank with its own traceback (``CalledProcessError`` / ``ChildFailedError``) and
    exit status 1; here a rank's own status comes back instead (2 for a user error, whose line the rank printed).
    """
    if not os.path.isfile(accelerate_config):
        raise RecipeError(f"`--launch`: accelerate config {accelerate_config!r} does not exist; give a file such as "
                          "accelerate_configs/cpu_ddp2.yaml (or create one with `accelerate config`).")
    check_before_work(config)
    RunDirectory(config.output_dir).check_claim(config.to_dict(), start_over=start_over)
    machine = ["--machine_rank", str(machine_rank)] if machine_rank is not None else []
    launch_args = launch_command_parser().parse_args(
        ["--config_file", accelerate_config, *machine, "--rdzv_conf", f"timeout={join_timeout}",
         "--module", RANK_MODULE, *argv])
    if not torch.cuda.is_available() and "DEEPSPEED" not in open(accelerate_config).read():
        # DDP on CPU: the torchrun workers must be told (accelerate drops DeepSpeed when this is set, so not then)
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the child's line says it all
    try:
        launch_command(launch_args)
    except subprocess.CalledProcessError as e:
        return e.returncode
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except Exception as e:  # torch's ChildFailedError: one entry per failed rank, with its exit code
        return _rank_status(e, launch_args, accelerate_config, join_timeout)
    return 0


def _rank_status(error: Exception, launch_args: argparse.Namespace, accelerate_config: str, join_timeout: int) -> int:
    """The exit status of a launch whose ranks failed (2 if any rank met a user error), or the rendezvous timeout as
    a user error."""
    failures = getattr(error, "failures", None)
    if not failures and ("timed out" in str(error).lower() or "timeout" in type(error).__name__.lower()):
        # the rendezvous: machine 0 waited for the others in vain
        raise RecipeError(
            f"`--join-timeout`: not every machine joined within {join_timeout} s ({accelerate_config}: "
            f"num_machines {getattr(launch_args, 'num_machines', '?')}, machine 0 at "
            f"{getattr(launch_args, 'main_process_ip', '?')}:{getattr(launch_args, 'main_process_port', '?')}); "
            "start the same command on every machine with its own --machine-rank, check that machine 0's "
            "address and port are reachable from the others, or raise --join-timeout.") from error
    if not failures:
        raise error
    codes = {f.exitcode for f in failures.values()}
    return EXIT_USER_ERROR if EXIT_USER_ERROR in codes else max(codes)
