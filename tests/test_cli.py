"""`hf-ptjf`: one command with a subcommand per tool, one error policy, and every older spelling still working."""

from __future__ import annotations

import configparser
import importlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from hf_ptjf.cli import COMMANDS, main
from hf_ptjf.cli.policy import USER_ERRORS, one_line, report_user_errors
from hf_ptjf.errors import EXIT_USER_ERROR, UserError
from hf_ptjf.hub import HubError

from .fixtures.recipe_runs import ROOT, TINY, child_env, error_line

# the arguments each command's --help must name
ARGUMENTS = {
    "run": ["config", "overrides", "--start-over", "--launch", "--machine-rank", "--join-timeout"],
    "sweep": ["config", "overrides", "--gather-only", "--list"],
    "inspect": ["config", "overrides", "--num-processes", "--overfit-passes", "--min-static-rate", "--hr-min-size",
                "--tokenizer"],
    "plan": ["config", "overrides", "--accelerate-config", "--micro-batch-size", "--gpu-memory-gib", "--strict"],
    "compare": ["out_dir", "runs", "--label"],
    "hub": ["--root", "--host", "--port", "--require-token-env"],
}


def python_m(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root, this checkout importable, output captured."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)


# ----------------------------------------------------------------------------------------- the command
def test_every_command_has_a_module_and_help_naming_its_arguments(capsys):
    assert set(COMMANDS) == set(ARGUMENTS) == {"run", "sweep", "inspect", "plan", "compare", "hub"}
    for command, arguments in ARGUMENTS.items():
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0, command
        out = capsys.readouterr().out
        assert out.startswith(f"usage: hf-ptjf {command} "), out
        for argument in arguments:
            assert argument in out, (command, argument)


def test_the_command_lists_its_commands_and_refuses_an_unknown_one(capsys):
    proc = python_m("-m", "hf_ptjf", "--help")
    assert proc.returncode == 0, proc.stderr
    for command, text in COMMANDS.items():
        assert f"  {command}" in proc.stdout and text in proc.stdout
    with pytest.raises(SystemExit) as done:
        main(["trian", "x.yaml"])
    assert done.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def _unfinished_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"complete": False, "tasks": {}, "stages": [], "history": []}))
    return path


@pytest.mark.slow
def test_a_user_error_is_one_line_and_exit_2_from_every_command(tmp_path):
    no_vocab = tmp_path / "model.yaml"
    no_vocab.write_text("model: {num_layers: 1, d_model: 16, d_ff: 32, num_heads: 2}\n")
    cases = {
        "run": ([str(TINY), f"output_dir={tmp_path / 'run'}", "learning_rate=fast"], "`learning_rate` must be a number"),
        "sweep": ([str(tmp_path / "nope.yaml"), "--list"], "nope.yaml"),
        "inspect": ([str(TINY), "learning_rat=1"], "Did you mean `learning_rate`?"),
        "plan": ([str(no_vocab)], "--vocab-size"),
        "compare": ([str(tmp_path / "out"), str(_unfinished_run(tmp_path / "half"))], "has not finished"),
    }
    for command, (args, expected) in cases.items():
        proc = python_m("-m", "hf_ptjf", command, *args)
        assert proc.returncode == EXIT_USER_ERROR, (command, proc.stderr[-2000:])
        line = error_line(proc.stderr)  # exactly one `error: ` line, no traceback
        assert expected in line, (command, line)
        assert "DeprecationWarning" not in proc.stderr, command
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------- the error policy
def _fails(error: BaseException):
    def command() -> int:
        raise error
    return command


@pytest.mark.parametrize("error", [UserError("bad `x`; give y"), HubError("the Hub at U does not answer", repo_id="ns/r", endpoint="U"),
                                   ValueError("v"), FileNotFoundError("f"), PermissionError("p")])
def test_a_user_error_is_one_line_and_status_2(error, capsys, monkeypatch):
    monkeypatch.delenv("HF_PTJF_DEBUG", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert isinstance(error, USER_ERRORS)
    assert report_user_errors(_fails(error)) == EXIT_USER_ERROR == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_anything_else_and_debug_mode_keep_the_traceback(monkeypatch, capsys):
    monkeypatch.delenv("HF_PTJF_DEBUG", raising=False)
    with pytest.raises(KeyError):
        report_user_errors(_fails(KeyError("a bug")))
    with pytest.raises(OSError):  # an OSError that is not a missing or forbidden file is not the user's
        report_user_errors(_fails(OSError(5, "I/O error")))
    monkeypatch.setenv("HF_PTJF_DEBUG", "1")
    with pytest.raises(UserError):
        report_user_errors(_fails(UserError("bad")))
    monkeypatch.setenv("HF_PTJF_DEBUG", "0")
    assert report_user_errors(_fails(UserError("bad"))) == 2
    assert report_user_errors(lambda: 0) == 0 and capsys.readouterr().err == "error: bad\n"


def test_ranks_other_than_the_main_one_name_themselves_and_leave_shared_errors_to_it(monkeypatch, capsys):
    monkeypatch.delenv("HF_PTJF_DEBUG", raising=False)
    shared = UserError("every rank read the same bad recipe")
    shared.shared = True
    monkeypatch.setenv("RANK", "1")
    assert report_user_errors(_fails(UserError("rank 1's own data"))) == 2
    assert report_user_errors(_fails(shared)) == 2
    assert capsys.readouterr().err == "error (rank 1): rank 1's own data\n"
    monkeypatch.setenv("RANK", "0")
    assert report_user_errors(_fails(shared)) == 2
    assert capsys.readouterr().err == "error: every rank read the same bad recipe\n"


def test_an_error_from_a_dataloader_worker_is_its_own_last_line():
    error = ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                       '  File "x.py", line 1, in f\nValueError: task `en-fr`: row 3 is not JSON')
    assert one_line(error) == "task `en-fr`: row 3 is not JSON"
    assert one_line(ValueError("plain")) == "plain"


# ----------------------------------------------------------------------------------------- older spellings
MOVED = {  # old module -> (a name it had, the module that holds it now)
    "hf_ptjf.analysis.sweep": ("expand_trials", "hf_ptjf.sweep"),
    "hf_ptjf.analysis.plan": ("plan_memory", "hf_ptjf.memory"),
    "hf_ptjf.plan": ("read_accelerate_config", "hf_ptjf.memory"),
    "hf_ptjf.inspect": ("verdict_for", "hf_ptjf.analysis.inspect"),
    "hf_ptjf.pareto": ("hypervolume", "hf_ptjf.analysis.pareto"),
    "hf_ptjf.runner.cli": ("main", "hf_ptjf.cli.run"),
}


@pytest.mark.parametrize("old", list(MOVED))
def test_old_import_paths_work_and_warn(old, monkeypatch):
    name, new = MOVED[old]
    monkeypatch.delitem(sys.modules, old, raising=False)  # imported afresh, so that its warning is raised here
    with pytest.warns(DeprecationWarning, match=rf"`{old}` is deprecated"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_old_names_of_the_commands_are_the_commands():
    import hf_ptjf.analysis.compare as compare
    import hf_ptjf.analysis.inspect as inspect
    import hf_ptjf.cli.compare
    import hf_ptjf.cli.inspect
    import hf_ptjf.cli.run
    import hf_ptjf.cli.sweep

    with warnings.catch_warnings():  # (their warnings are test_old_import_paths_work_and_warn's)
        warnings.simplefilter("ignore", DeprecationWarning)
        from hf_ptjf.analysis.sweep import main as old_sweep
        from hf_ptjf.runner.cli import EXIT_BAD_INPUT, _one_line
        from hf_ptjf.runner.cli import main as old_run
    assert inspect.main is hf_ptjf.cli.inspect.main and compare.main is hf_ptjf.cli.compare.main
    assert old_sweep is hf_ptjf.cli.sweep.main and old_run is hf_ptjf.cli.run.main
    assert EXIT_BAD_INPUT == EXIT_USER_ERROR and _one_line is one_line
    with pytest.raises(AttributeError):
        inspect.no_such_name  # noqa: B018


def test_console_scripts_name_the_commands():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in parser["options.entry_points"]["console_scripts"].strip().splitlines())
    assert scripts == {"hf-ptjf": "hf_ptjf.cli:main", "hf-ptjf-inspect": "hf_ptjf.cli.inspect:main",
                       "hf-ptjf-plan": "hf_ptjf.cli.plan:main"}
    for target in scripts.values():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


@pytest.mark.slow
def test_every_older_spelling_still_runs():
    """Scripts, `python -m` modules and moved modules answer --help; the moved ones warn on stderr."""
    spellings = {  # argv -> (what the usage line starts with, whether it warns)
        ("recipes/run.py",): ("usage: recipes/run.py", False),
        ("recipes/sweep.py",): ("usage: recipes/sweep.py", False),
        ("-m", "hf_ptjf.runner"): ("usage: python -m hf_ptjf.runner", False),
        ("-m", "hf_ptjf.analysis.inspect"): ("usage: python -m hf_ptjf.analysis.inspect", False),
        ("-m", "hf_ptjf.analysis.compare"): ("usage: python -m hf_ptjf.analysis.compare", False),
        ("-m", "hf_ptjf.analysis.plan"): ("usage: python -m hf_ptjf.analysis.plan", True),
        ("-m", "hf_ptjf.inspect"): ("usage: python -m hf_ptjf.inspect", True),
        ("-m", "hf_ptjf.plan"): ("usage: python -m hf_ptjf.plan", True),
        ("-m", "hf_ptjf.cli", "inspect"): ("usage: hf-ptjf inspect", False),
    }
    for argv, (usage, warns) in spellings.items():
        proc = python_m(*argv, "--help")
        assert proc.returncode == 0 and proc.stdout.startswith(usage), (argv, proc.stdout[:200], proc.stderr[-2000:])
        assert ("DeprecationWarning" in proc.stderr) == warns, (argv, proc.stderr[-2000:])


@pytest.mark.slow
def test_the_old_inspect_module_runs_a_recipe(tmp_path):
    """`python -m hf_ptjf.inspect`, broken since the module moved to analysis/, gives the report again."""
    recipe = tmp_path / "recipe.yaml"
    hr, lr = tmp_path / "hr.jsonl", tmp_path / "lr.jsonl"
    hr.write_text("".join(json.dumps({"source": f"a {i}", "target": f"b {i}"}) + "\n" for i in range(400)))
    lr.write_text("".join(json.dumps({"source": f"c {i}", "target": f"d {i}"}) + "\n" for i in range(40)))
    recipe.write_text(f"output_dir: unused\ntasks:\n  - {{name: hr, source: json, path: {hr}, lang: fr}}\n"
                      f"  - {{name: lr, source: json, path: {lr}, lang: ro}}\n"
                      f"data: {{cache_dir: {tmp_path / 'cache'}, num_dev: 10, num_test: 10}}\n"
                      "per_device_train_batch_size: 8\nstages:\n  - {name: joint, max_steps: 50}\n")
    proc = python_m("-m", "hf_ptjf.inspect", str(recipe))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stage joint: budget 400 examples" in proc.stdout and "Verdict:" in proc.stdout
    assert "`hf_ptjf.inspect` is deprecated" in proc.stderr
