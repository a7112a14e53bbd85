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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "filelock"):  # a line per Hub request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    debug = os.environ.get("HF_PTJF_DEBUG", "") not in ("", "0")
    reading = True  # every rank reads the same recipe and fails the same way: rank 0 alone reports it
    try:
        from .loop import run_recipe

        config = load_recipe(args.config, args.overrides)
        reading = False
        results = run_recipe(config, start_over=args.start_over)
    except Exception as e:  # one clear line, unless debugging
        if debug or not _is_user_error(e):
            full = None if reading else _disk_full(e)
            if debug or full is None:
                raise
            e = RecipeError(f"output_dir `{config.output_dir}`: {full}")
        if _is_main_process() or not reading:
            rank = "" if _is_main_process() else f" (rank {os.environ.get('RANK')})"
            print(f"error{rank}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from .results import render_report, where_everything_is

    if _is_main_process():
        print(render_report(results))
        print(where_everything_is(results, config.output_dir))
    return 0


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
