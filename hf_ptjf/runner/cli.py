"""Command-line entry of the recipe runner (``recipes/run.py``): clear one-line errors, no tracebacks."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..recipe import RecipeError, load_recipe

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """``run.py CONFIG [key=value ...] [--start-over]``; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="recipes/run.py",
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_intermixed_args(argv)  # options may come between the config and the overrides
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "filelock"):  # a line per Hub request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    debug = os.environ.get("HF_PTJF_DEBUG", "") not in ("", "0")
    reading = True  # every rank reads the same recipe and fails the same way: rank 0 alone reports it
    try:
        from .loop import run_recipe

        config = load_recipe(args.config, args.overrides)
        reading = False
        if args.launch:
            return _launch(config, args.launch, _without_launch(argv), start_over=args.start_over,
                           machine_rank=args.machine_rank, join_timeout=args.join_timeout)
        results = run_recipe(config, start_over=args.start_over)
    except Exception as e:  # one clear line, unless debugging
        if debug or not _is_user_error(e):
            full = None if reading else _disk_full(e)
            if debug or full is None:
                raise
            e = RecipeError(f"output_dir `{config.output_dir}`: {full}")
        if _is_main_process() or not (reading or getattr(e, "shared", False)):  # shared: rank 0 reports it
            rank = "" if _is_main_process() else f" (rank {os.environ.get('RANK')})"
            print(f"error{rank}: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from .results import render_report, where_everything_is

    if _is_main_process():
        print(render_report(results))
        print(where_everything_is(results, config.output_dir))
    return 0


_LAUNCH_OPTIONS = ("--launch", "--machine-rank", "--join-timeout")  # for this process, not the ranks


def _without_launch(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in map(str, argv):
        if skip or arg.startswith(tuple(f"{o}=" for o in _LAUNCH_OPTIONS)):
            skip = False
            continue
        if arg in _LAUNCH_OPTIONS:
            skip = True
            continue
        out.append(arg)
    return out


def _launch(config, accelerate_config: str, argv: list[str], *, start_over: bool, machine_rank: int | None = None,
            join_timeout: int = 600) -> int:
    """Check everything checkable in this process, then run this same command under ``accelerate launch``.

    The launcher reports a failed rank with its own traceback (``CalledProcessError`` / ``ChildFailedError``) and
    exit status 1; here a rank's own status comes back instead (2 for a user error, whose line the rank printed).
    """
    import subprocess

    from accelerate.commands.launch import launch_command, launch_command_parser

    from .preflight import check_before_work
    from .records import RunDirectory

    if not os.path.isfile(accelerate_config):
        raise RecipeError(f"`--launch`: accelerate config {accelerate_config!r} does not exist; give a file such as "
                          "accelerate_configs/cpu_ddp2.yaml (or create one with `accelerate config`).")
    check_before_work(config)
    RunDirectory(config.output_dir).check_claim(config.to_dict(), start_over=start_over)
    machine = ["--machine_rank", str(machine_rank)] if machine_rank is not None else []
    launch_args = launch_command_parser().parse_args(
        ["--config_file", accelerate_config, *machine, "--rdzv_conf", f"timeout={join_timeout}",
         "--module", "hf_ptjf.runner", *argv])
    from .loop import _cuda_available

    if not _cuda_available() and "DEEPSPEED" not in open(accelerate_config).read():
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
        failures = getattr(e, "failures", None)
        if not failures and ("timed out" in str(e).lower() or "timeout" in type(e).__name__.lower()):
            # the rendezvous: machine 0 waited for the others in vain
            raise RecipeError(
                f"`--join-timeout`: not every machine joined within {join_timeout} s ({accelerate_config}: "
                f"num_machines {getattr(launch_args, 'num_machines', '?')}, machine 0 at "
                f"{getattr(launch_args, 'main_process_ip', '?')}:{getattr(launch_args, 'main_process_port', '?')}); "
                "start the same command on every machine with its own --machine-rank, check that machine 0's "
                "address and port are reachable from the others, or raise --join-timeout.") from e
        if not failures:
            raise
        codes = {f.exitcode for f in failures.values()}
        return EXIT_BAD_INPUT if EXIT_BAD_INPUT in codes else max(codes)
    return 0


def _one_line(e: BaseException) -> str:
    """The error's own message; one re-raised from a DataLoader worker ("Caught X in DataLoader worker process 0",
    then the worker's traceback) is reduced to the worker's last line, without the exception's name."""
    text = str(e)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def _is_user_error(e: BaseException) -> bool:
    from ..hub import HubError

    return isinstance(e, (RecipeError, HubError, ValueError, FileNotFoundError, PermissionError))


def _disk_full(e: BaseException) -> str | None:
    """The one-line story of a save that ran out of disk (torch and safetensors report it as C++ stream errors)."""
    text = f"{type(e).__name__}: {e}"
    cause = e
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == 28 or any(
            marker in str(cause) for marker in ("iostream error", "No space left", "file write failed")
        ):
            return ("the disk filled up while saving (" + " ".join(text.split())[:160] + "); free some space and rerun "
                    "the same command: the run resumes from its newest complete checkpoint.")
        cause = cause.__cause__ or cause.__context__
    return None


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"
