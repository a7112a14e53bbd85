"""The bad-input catalogue (docs/errors.md): each case exits non-zero with one `error: ...` line that names
the field and the fix, no traceback (unless HF_PTJF_DEBUG=1), and loses nothing saved before."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from hf_ptjf.recipe import RecipeError
from hf_ptjf.hub import HubServer, use_endpoint

from .fixtures.recipe_runs import (
    TINY,
    TWO_STAGES,
    assert_kept,
    error_line,
    files_sha256,
    results,
    run_cli,
    run_process,
    tiny_args,
    write_recipe,
)

ONE_STAGE = ("method=scalarization", "method_args.total_steps=4", "save_steps=2", "eval_steps=2")


@pytest.fixture(scope="module")
def previous_run(tmp_path_factory, tokenizer):
    """A finished run: what a bad rerun in the same output_dir must leave untouched."""
    out = tmp_path_factory.mktemp("previous")
    code, err = run_cli(tiny_args(out, tokenizer, *ONE_STAGE))
    assert code == 0, err
    return out


def fails(args: list, *expected: str) -> str:
    """Run the CLI in-process; assert exit code 2 and one error line containing every ``expected``."""
    code, err = run_cli(args)
    assert code == 2, err
    line = error_line(err)
    for text in expected:
        assert text in line, (text, line)
    return line


def stages_recipe(tmp_path: Path, stages: list[dict]) -> Path:
    return write_recipe(tmp_path / "recipe.yaml", method=None, method_args=None, stages=stages)


# ------------------------------------------------------------------ caught when the recipe is read
CONFIG_CASES = {
    # case: (overrides, expected fragments: the field ... and the fix)
    "tau_zero": (["method_args.mixture.tau=0"], ["`stages.1.mixture`", "tau must be > 0", "1.0 is proportional"]),
    "tau_negative_tokenizer": (["tokenizer.tau=-1"], ["`tokenizer`", "tau must be a number > 0"]),
    "negative_weights": (
        ["method_args.mixture={strategy: static, weights: {en-fr: -1, en-ro: 2}}"],
        ["`stages.1.mixture.weights`", "must be numbers >= 0", "e.g. {en-fr: 1.0}"],
    ),
    "all_zero_weights": (
        ["method_args.mixture={strategy: static, weights: {en-fr: 0, en-ro: 0}}"],
        ["`stages.1.mixture.weights`", "all zero", "at least one task a weight > 0"],
    ),
    "unknown_task_in_a_stage": (
        ["method_args.high_resource=[en-fx]"], ["`stages.0.mixture.tasks`", "unknown task `en-fx`", "Did you mean `en-fr`?"]
    ),
    "unknown_config_key": (["learning_rat=1e-3"], ["unknown config key `learning_rat`", "Did you mean `learning_rate`?"]),
    "unknown_section_key": (["tokenizer.vocab_sise=300"], ["`tokenizer.vocab_sise`", "Did you mean `vocab_size`?"]),
    "max_steps_zero_method": (
        ["method_args.total_steps=0"], ["method_args.first_stage_steps", "method_args.total_steps", "need 0 <"]
    ),
    # issue 12: each of these used to end in a traceback, mid-run, or not at all
    "learning_rate_not_a_number": (["learning_rate=fast"], ["`learning_rate`", "must be a number", "'fast'", "e.g."]),
    "seed_not_an_integer": (["seed=abc"], ["`seed`", "must be an integer", "'abc'", "seed=0"]),
    "batch_size_zero": (["per_device_train_batch_size=0"], ["`per_device_train_batch_size`", "> 0", "e.g."]),
    "eval_steps_negative": (["eval_steps=-3"], ["`eval_steps`", "must be a number > 0", "-3"]),
    "report_to_not_installed": (["report_to=[wandb]"], ["`report_to`", "`wandb`", "not installed", "pip install"]),
    "tau_infinite": (["method_args.mixture.tau=.inf"], ["tau must be > 0 and finite", "inf"]),
    "stage_index_out_of_range": (["stages.7.max_steps=5"], ["`stages.7.max_steps`", "no item 7", "pretrain, joint"]),
    "stage_name_misspelt": (["stages.jiont.max_steps=5"], ["no list item named `jiont`", "Did you mean `joint`?"]),
    "scalar_weights": (["method_args.mixture={strategy: static, weights: 5}"],
                       ["weights must be a mapping", "one weight per task", "got 5"]),
    "weights_with_temperature": (["method_args.mixture={strategy: temperature, weights: {en-fr: 1}}"],
                                 ["`weights` are used by strategy `static` only", "strategy: static"]),
    "override_not_yaml": (["learning_rate=[1, 2"], ["override value `[1, 2`", "not valid YAML"]),
    "tokenizer_path_missing": (["tokenizer.path=/nonexistent/tokenizer"], ["`tokenizer.path`", "does not exist"]),
    "init_path_missing": (["stages.joint.init={path: /nonexistent/model}"],
                          ["`stages.1.init.path`", "not a saved model", "save_pretrained"]),
    "high_resource_not_a_list": (["method_args.high_resource={en-fr: 1}"],
                                 ["`method_args.high_resource` must be a list of task names", "[en-fr]"]),
    "model_path_missing": (["model.name_or_path=./no-such-model"], ["`model.name_or_path`", "does not exist"]),
    "section_value_of_the_wrong_type": (["data.num_dev=abc"], ["`data`", "num_dev must be an integer >= 0", "'abc'"]),
    "beam_count_zero": (["eval.num_beams=0"], ["`eval`", "num_beams must be an integer >= 1"]),
    # more, invented: each names the field as written, the value and the fix
    "eval_split_not_held_out": (["eval.split=train"], ["`eval`", "split must be validation or test", "'train'"]),
    "sequence_length_one": (["data.max_source_length=1"], ["`data`", "max_source_length must be an integer >= 2"]),
    "hub_mode_unknown": (["hub.mode=cloud"], ["`hub`", "mode must be none, local or remote", "'cloud'"]),
    "hub_timeout_zero": (["hub.timeout=0"], ["`hub`", "timeout must be a number of seconds > 0"]),
    "vocab_size_zero": (["tokenizer.vocab_size=0"], ["`tokenizer`", "vocab_size must be a positive integer"]),
    "method_misspelt": (["method=ptfj"], ["unknown `method: ptfj`", "Did you mean `ptjf`?"]),
    "first_stage_longer_than_run": (["method_args.first_stage_steps=30"], ["need 0 < method_args.first_stage_steps"]),
    "optimizer_unknown": (["stages.joint.optimizer=sgd"], ["`stages.1`", "optimizer must be one of", "'sgd'"]),
    "scheduler_misspelt": (["stages.joint.lr_scheduler=cosin"], ["lr_scheduler must be one of", "'cosin'"]),
    "optimizer_arg_unknown": (["stages.joint.optimizer_args={beta3: 1}"],
                              ["`stages.1.optimizer_args.beta3`", "Did you mean `beta2`?"]),
    "warmup_negative": (["warmup_steps=-1"], ["`warmup_steps`", "finite number >= 0", "e.g. warmup_steps=0.1"]),
    "learning_rate_nan": (["learning_rate=.nan"], ["`learning_rate`", "finite number >= 0", "nan"]),
    "accumulation_zero": (["gradient_accumulation_steps=0"], ["`gradient_accumulation_steps`", "> 0"]),
    "init_stage_misspelt": (["stages.joint.init=joint2"], ["`stages.1.init: joint2` is not a stage", "`joint`"]),
    "dropout_above_one": (["model.dropout_rate=2"], ["`model`", "dropout_rate must be in [0, 1)"]),
    "stage_training_key_misspelt": (["stages.joint.training={learning_rat: 1}"],
                                    ["`stages.1.training.learning_rat`", "Did you mean `learning_rate`?"]),
    "flag_not_boolean": (["disable_tqdm=maybe"], ["`disable_tqdm` must be true or false", "'maybe'"]),
    "language_code_with_a_space": (["tasks.0.lang=f r"], ["`tasks.0` (task `en-fr`)", "`lang` must be a short code"]),
    "bible_version_misspelt": (["tasks.1.tgt_versions=[Segnod]"], ["`tasks.1` (task `en-ro`)", "Did you mean `Segond`"]),
    "tau_named_where_written": (["method_args.mixture.tau=-2"], ["`method_args.mixture` (expanded into stage `joint`)"]),
    # a bool is an int in Python: `max_steps: true` once trained one step
    "max_steps_boolean": (["stages.joint.max_steps=true"], ["`stages.1`", "max_steps must be a positive integer",
                                                            "got True"]),
    "task_seed_boolean": (["tasks.1.seed=true"], ["`tasks.1` (task `en-ro`)", "`seed` must be an integer >= 0"]),
    "model_size_boolean": (["model.num_layers=true"], ["`model`", "model.num_layers must be a positive integer"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_errors(case, previous_run, tokenizer):
    overrides, expected = CONFIG_CASES[case]
    before = files_sha256(previous_run)
    fails(tiny_args(previous_run, tokenizer, *overrides), *expected)
    assert files_sha256(previous_run) == before


@pytest.mark.parametrize("max_steps", [0, -5])
def test_stage_max_steps_not_positive(tmp_path, previous_run, tokenizer, max_steps):
    stages = [TWO_STAGES[0], {**TWO_STAGES[1], "max_steps": max_steps}]
    before = files_sha256(previous_run)
    fails([stages_recipe(tmp_path, stages), f"output_dir={previous_run}"],
          "`stages.1`", "max_steps must be a positive integer", str(max_steps))
    assert files_sha256(previous_run) == before


def test_stage_initialised_from_a_later_stage(tmp_path, previous_run):
    stages = [{**TWO_STAGES[0], "init": "joint"}, {**TWO_STAGES[1], "init": "scratch"}]
    before = files_sha256(previous_run)
    fails([stages_recipe(tmp_path, stages), f"output_dir={previous_run}"],
          "`stages.0.init: joint`", "runs at the same time or later", "Initialise from an earlier stage")
    assert files_sha256(previous_run) == before


def test_missing_recipe_file_and_bad_override(tmp_path):
    fails([tmp_path / "nope.yaml", "output_dir=x"], "recipe file not found", "nope.yaml")
    fails([TINY, "output_dir"], "override `output_dir` must look like key=value")


# ------------------------------------------------------------------ caught when the data, model or Hub is used
def blank_task(tmp_path: Path, column: str = "fr") -> dict:
    """A JSON-lines task whose training rows are all blank targets (dropped by cleaning); own dev/test."""
    good = "".join(json.dumps({"en": f"line {i}", "fr": f"ligne {i}"}) + "\n" for i in range(4))
    (tmp_path / "dev.jsonl").write_text(good)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"en": f"x {i}", "fr": " "}) + "\n" for i in range(4)))
    files = {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "dev.jsonl"),
             "test": str(tmp_path / "dev.jsonl")}
    return {"name": "en-xx", "source": "json", "data_files": files, "lang": "fr",
            "columns": {"source": "en", "target": column}}


def with_task(tmp_path: Path, task: dict) -> Path:
    tasks = yaml.safe_load(TINY.read_text())["tasks"][:1] + [task]
    return write_recipe(tmp_path / "recipe.yaml", tasks=tasks, method="scalarization", method_args={"total_steps": 2})


def test_empty_task_dataset(tmp_path, tokenizer):
    out = tmp_path / "run"
    fails([with_task(tmp_path, blank_task(tmp_path)), f"output_dir={out}", f"tokenizer.path={tokenizer}"],
          "task `en-xx`", "no training examples", "remove it from `tasks`")
    assert not out.exists()  # the data is read before the run directory is made: nothing to refuse a rerun


def test_a_data_error_with_start_over_deletes_nothing(tmp_path, previous_run, tokenizer):
    # the data and every stage's rates are checked before --start-over may discard the previous run
    before = files_sha256(previous_run)
    fails([with_task(tmp_path, blank_task(tmp_path)), f"output_dir={previous_run}", f"tokenizer.path={tokenizer}",
           "--start-over"], "task `en-xx`", "no training examples")
    assert files_sha256(previous_run) == before


def test_not_enough_disk_for_a_pretrained_checkpoint(tmp_path, previous_run, tokenizer, monkeypatch):
    import shutil as shutil_module

    import hf_ptjf.runner.preflight as preflight

    from .toy import tiny_t5

    model_dir = tmp_path / "pretrained"
    model = tiny_t5()
    model.save_pretrained(model_dir)  # sized from its safetensors headers, not loaded
    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage._replace(free=10_000))
    before = files_sha256(previous_run)
    line = fails([*tiny_args(previous_run, tokenizer, f"model.name_or_path={model_dir}"), "--start-over"],
                 f"output_dir `{previous_run}`", "MiB free", str(model_dir), "free some space")
    assert f"{model.num_parameters() / 1e6:,.1f}M parameters" in line
    assert files_sha256(previous_run) == before


def test_missing_target_column(tmp_path, tokenizer):
    out = tmp_path / "run"
    fails([with_task(tmp_path, blank_task(tmp_path, column="de")), f"output_dir={out}", f"tokenizer.path={tokenizer}"],
          "task 'en-xx'", "target -> de", "not found", "fix the `columns` mapping")
    assert not (out / "stages").exists()


def test_tokenizer_model_vocab_mismatch_at_reload(tmp_path, tokenizer):
    from .toy import tiny_t5

    model_dir = tmp_path / "other-model"
    tiny_t5(vocab_size=48).save_pretrained(model_dir)  # trained with another (48-token) tokenizer
    stages = [{"name": "finetune", "max_steps": 2, "init": {"path": str(model_dir)}}]
    out = tmp_path / "run"
    fails([stages_recipe(tmp_path, stages), f"output_dir={out}", f"tokenizer.path={tokenizer}"],
          "`stages.0.init`", "48 embeddings", "Set `tokenizer.path` to that model's tokenizer")
    assert not list(out.rglob("final"))


def test_hub_unreachable_keeps_the_trained_stage(tmp_path, tokenizer, monkeypatch):
    server = HubServer(tmp_path / "hub").start()
    url = server.url
    server.stop()  # nothing listens there any more
    out = tmp_path / "run"
    with use_endpoint(url, cache_dir=tmp_path / "hf_cache"):
        # checked before any work now (issue 12); a Hub that goes down mid-run keeps the trained stage
        # (tests/test_reliability.py::test_hub_down_stops_before_the_next_stage_and_a_rerun_finishes)
        fails(tiny_args(out, tokenizer, *ONE_STAGE, "hub.mode=remote", "hub.max_retries=1"),
              "`hub.mode: remote`", url, "does not answer", "fix HF_ENDPOINT")
    assert not out.exists()
    # down when a stage loads its init from the Hub (pinned to a commit sha)
    sha = "0123456789abcdef0123456789abcdef01234567"
    stages = [{"name": "finetune", "max_steps": 2, "init": {"hub": "someone/model", "revision": sha}}]
    args = [stages_recipe(tmp_path, stages), f"output_dir={tmp_path / 'run2'}", f"tokenizer.path={tokenizer}",
            "hub.max_retries=1"]
    with use_endpoint(url, cache_dir=tmp_path / "hf_cache"):
        fails(args, "`stages.0.init.hub`", "'someone/model'", "does not answer")  # before any work
        # the Hub answered that check, then went down before the stage downloaded its init
        monkeypatch.setattr("hf_ptjf.runner.preflight._local_or_hub", lambda *a: None)
        fails(args, "`stages.0.init`", "Could not reach the Hub", f"download revision {sha} of 'someone/model'",
              "is the Hub server at $HF_ENDPOINT", "rerun the same command")


def test_hub_auth_error(tmp_path, tokenizer, monkeypatch):
    wrong = "hf_WrongTokenWrongTokenWrongToken1234"
    monkeypatch.setenv("HF_TOKEN", wrong)
    out = tmp_path / "run"
    with HubServer(tmp_path / "hub", require_token="hf_TheRightTokenTheRightToken123456") as server, \
            use_endpoint(server.url, cache_dir=tmp_path / "hf_cache"):
        line = fails(tiny_args(out, tokenizer, *ONE_STAGE, "hub.mode=remote"),
                     "HTTP 401", "check your HF token", "$HF_TOKEN")
        assert server.count("POST", "/api/repos/create") == 1  # not retried: retrying cannot fix a bad token
    assert wrong not in line and wrong[3:] not in line
    assert (out / "stages" / "0-scalarization" / "final" / "model.safetensors").exists()


def test_corrupted_checkpoint_file(tmp_path, tokenizer):
    out = tmp_path / "run"
    args = tiny_args(out, tokenizer, *ONE_STAGE)
    code, err = run_cli(args)
    assert code == 0, err
    stage = out / "stages" / "0-scalarization"
    expected = results(out)
    # as if killed before the stage was finished, then the newest checkpoint got damaged on disk
    (stage / "stage.json").unlink()
    shutil.rmtree(stage / "final")
    weights = stage / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    before = files_sha256(out)
    fails(args, "stage `scalarization`", "checkpoint-4", "is damaged", "model.safetensors is truncated",
          "Move that folder away to resume from the previous complete checkpoint checkpoint-2", "--start-over")
    assert_kept(before, out)
    # following the advice works, and gives the same result
    shutil.move(str(stage / "checkpoint-4"), str(tmp_path / "damaged-checkpoint-4"))
    code, err = run_cli(args)
    assert code == 0, err
    assert results(out)["tasks"] == expected["tasks"]
    # a finished stage whose recorded output changed is refused too
    (stage / "final" / "model.safetensors").write_bytes(b"garbage")
    before = files_sha256(out)
    fails(args, "stage `scalarization` is recorded as finished", "missing or changed", "--start-over")
    assert_kept(before, out)


def test_output_dir_not_writable(tmp_path, tokenizer):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    fails(tiny_args(blocker / "run", tokenizer), "output_dir", "is not writable", "choose another output_dir=")
    assert blocker.read_text() == "keep me"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            fails(tiny_args(locked / "run", tokenizer), "is not writable", "Permission denied")
        finally:
            locked.chmod(0o700)


# ------------------------------------------------------------------ the CLI contract itself
def test_debug_mode_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("HF_PTJF_DEBUG", "1")
    with pytest.raises(RecipeError, match="learning_rat"):
        run_cli([TINY, "output_dir=x", "learning_rat=1"])


@pytest.mark.slow
def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    proc = run_process([str(TINY), f"output_dir={tmp_path / 'run'}", "method_args.mixture.tau=-1"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == error_line(proc.stderr)
    assert "tau must be > 0" in proc.stderr and not (tmp_path / "run").exists()


def test_recipe_file_that_is_not_yaml(tmp_path, previous_run):
    before = files_sha256(previous_run)
    for text, expected in (("output_dir: x\ntasks: [a, b\n", "not valid YAML at line"),
                           ("output_dir: x\n\tseed: 1\n", "indent with spaces, not tabs")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        fails([bad, f"output_dir={previous_run}"], str(bad), expected)
    assert files_sha256(previous_run) == before


def test_cache_dir_that_is_a_file(tmp_path, previous_run, tokenizer):
    before = files_sha256(previous_run)
    fails(tiny_args(previous_run, tokenizer, f"data.cache_dir={previous_run / 'results.json'}"),
          "`data.cache_dir`", "is a file", "give a directory")
    assert files_sha256(previous_run) == before


def test_start_over_with_a_typo_deletes_nothing(previous_run, tokenizer):
    before = files_sha256(previous_run)
    fails([*tiny_args(previous_run, tokenizer, "tokenizer.path=/nonexistent/tok", "learning_rate=1e-3"), "--start-over"],
          "`tokenizer.path`", "does not exist")
    assert files_sha256(previous_run) == before


def test_data_file_with_a_bad_json_line(tmp_path, previous_run, tokenizer):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"source": "a b", "target": "c d"}\n{"source": "e f", "target": "g h"}\n{"source": oops}\n')
    recipe = write_recipe(tmp_path / "recipe.yaml", tasks=[
        {"name": "en-fr", "source": "bible", "src_versions": ["WEB"], "tgt_versions": ["Segond"], "lang": "fr",
         "train_size": 100},
        {"name": "en-xx", "source": "json", "path": str(data), "lang": "xx"}])
    before = files_sha256(previous_run)
    fails([recipe, f"output_dir={tmp_path / 'run'}"], "task `en-xx`", f"{data} line 3 is not valid JSON",
          "each line must be one JSON object")
    assert files_sha256(previous_run) == before


def _streamed_en_xx(folder: Path, bad_line: int | None = None) -> dict:
    """A streamed task of two JSON-lines shards (``bad_line``: that line of the second one is broken)."""
    folder.mkdir()
    for s in range(2):
        lines = [json.dumps({"source": f"The word {s} {i} here", "target": f"Le mot {s} {i} ici"}) for i in range(30)]
        if s == 1 and bad_line:
            lines[bad_line - 1] = '{"source": oops}'
        (folder / f"part-{s}.jsonl").write_text("\n".join(lines) + "\n")
    return {"name": "en-xx", "source": "json", "lang": "xx", "streaming": True,
            "data_files": {"train": str(folder / "part-*.jsonl")}}


def test_a_streamed_shard_with_a_bad_json_row(tmp_path, previous_run, tokenizer):
    task = _streamed_en_xx(tmp_path / "shards", bad_line=4)
    recipe = write_recipe(tmp_path / "recipe.yaml", tasks=[
        {"name": "en-fr", "source": "bible", "src_versions": ["WEB"], "tgt_versions": ["Segond"], "lang": "fr",
         "train_size": 100}, task])
    before = files_sha256(previous_run)
    fails([recipe, f"output_dir={tmp_path / 'run'}"], "task `en-xx`", "part-1.jsonl line 4 is not valid JSON",
          "each line must be one JSON object")
    assert files_sha256(previous_run) == before


def test_a_streamed_train_pattern_that_matches_no_file(tmp_path, previous_run, tokenizer):
    task = _streamed_en_xx(tmp_path / "shards")
    pattern = str(tmp_path / "shards" / "parts-*.jsonl")
    recipe = write_recipe(tmp_path / "recipe.yaml", tasks=[
        {"name": "en-fr", "source": "bible", "src_versions": ["WEB"], "tgt_versions": ["Segond"], "lang": "fr",
         "train_size": 100}, {**task, "data_files": {"train": pattern}}])
    fails([recipe, f"output_dir={tmp_path / 'run'}"], "task `en-xx`: no file matches `data_files`",
          f"`data_files.train` pattern '{pattern}' matches no file", "check the path")


def test_not_enough_disk_for_a_checkpoint(tmp_path, previous_run, tokenizer, monkeypatch):
    import shutil as shutil_module

    import hf_ptjf.runner.preflight as preflight

    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: usage._replace(free=10_000))
    before = files_sha256(previous_run)
    fails([*tiny_args(previous_run, tokenizer, "learning_rate=1e-3"), "--start-over"],
          f"output_dir `{previous_run}`", "MiB free", "one checkpoint", "free some space")
    assert files_sha256(previous_run) == before


@pytest.mark.slow
def test_a_config_error_under_a_two_process_launch_is_one_line_and_no_rank_hangs(tmp_path):
    from .distributed import ROOT, accelerate_launch

    out = tmp_path / "run"
    proc = accelerate_launch("cpu_ddp2.yaml", ROOT / "recipes" / "run.py", str(TINY), f"output_dir={out}",
                             "learning_rate=fast", timeout=120, check=False)  # a hang would time out
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert lines == ["error: `learning_rate` must be a number, got 'fast'; e.g. learning_rate=2e-3."]
    assert proc.returncode != 0 and not out.exists()  # accelerate's launcher turns the ranks' 2 into its own 1


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["cpu_ddp2.yaml", "cpu_single.yaml"])
def test_the_launch_option_gives_one_line_and_exit_2_from_the_ranks(tmp_path, tokenizer, launch):
    """`--launch`: checked here first (a config error never starts the ranks); an error a rank meets (the data)
    comes back as its one line and status 2, without accelerate's or torchrun's traceback."""
    from .distributed import ROOT

    config = str(ROOT / "accelerate_configs" / launch)
    out = tmp_path / "run"
    proc = run_process([TINY, f"output_dir={out}", "learning_rate=fast", "--launch", config], timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert error_line(proc.stderr).startswith("error: `learning_rate` must be a number")
    assert "torch.distributed" not in proc.stderr and not out.exists()  # refused before any rank started

    proc = run_process([with_task(tmp_path, blank_task(tmp_path)), f"output_dir={out}", f"tokenizer.path={tokenizer}",
                        "--launch", config], timeout=240)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr, proc.stderr
    assert "task `en-xx`" in error_line(proc.stderr) and not out.exists()


def test_options_may_come_between_the_config_and_the_overrides(tmp_path, tokenizer):
    """`run.py CONFIG --start-over key=value`: the overrides after an option are read (argparse alone refuses them
    with a usage error), so the bad one is the error reported."""
    fails([TINY, "--start-over", f"output_dir={tmp_path / 'run'}", "learning_rate=fast"], "`learning_rate`", "fast")
    assert not (tmp_path / "run").exists()


def test_the_launch_option_with_a_missing_accelerate_config(tmp_path, previous_run, tokenizer):
    before = files_sha256(previous_run)
    fails([*tiny_args(previous_run, tokenizer), "--launch", str(tmp_path / "nope.yaml")],
          "`--launch`", "nope.yaml' does not exist", "accelerate_configs/cpu_ddp2.yaml")
    assert files_sha256(previous_run) == before


def test_a_hub_id_that_names_nothing_is_reported_at_once(tmp_path, tokenizer):
    with HubServer(tmp_path / "hub") as server, use_endpoint(server.url, cache_dir=tmp_path / "hf_cache"):
        fails(tiny_args(tmp_path / "run", None, "tokenizer.path=someone/no-such-tokenizer"),
              "`tokenizer.path`", "'someone/no-such-tokenizer' is neither a local path nor a repo", server.url)
        url = server.url
    with use_endpoint(url, cache_dir=tmp_path / "hf_cache"):  # the Hub is down: a bounded check, not a minute of retries
        fails(tiny_args(tmp_path / "run", None, "model.name_or_path=someone/no-such-model"),
              "`model.name_or_path`", "does not answer")
    assert not (tmp_path / "run").exists()


def test_a_disk_that_fills_while_saving_is_one_line(tmp_path, tokenizer, monkeypatch):
    from hf_ptjf.train import MixtureTrainer

    def full(self, *a, **k):  # what torch reports when a checkpoint write hits ENOSPC
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0 "
                           "basic_ios::clear: iostream error")

    monkeypatch.setattr(MixtureTrainer, "_save_checkpoint", full)
    out = tmp_path / "run"
    fails(tiny_args(out, tokenizer, *ONE_STAGE), f"output_dir `{out}`", "the disk filled up while saving",
          "free some space and rerun the same command")
