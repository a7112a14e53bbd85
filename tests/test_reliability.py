"""Crash safety and Hub faults of the recipe runner (tiny CPU recipe, deterministic fp32).

* SIGKILL at a random step in stage 1, then in stage 2; each rerun of the same command resumes and the
  final per-task losses, examples/tokens seen and weights equal those of an uninterrupted run;
* a save cut short, and a kill between a confirmed push and the stage record, are resumed correctly;
* Hub 5xx / timeouts are retried; an unconfirmed push (server down, verification mismatch) stops the run
  before the next stage, and a rerun finishes the job without training again;
* a changed config in the same output directory is refused; records are written atomically; a checkpoint
  is only deleted once a newer one is complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .hub_faults import FaultyHubServer
from hf_ptjf.runner import STAGE_RECORD, latest_checkpoint
from hf_ptjf.hub import use_endpoint
from hf_ptjf.hub.server import hub_endpoint_env

from .fixtures.recipe_runs import (
    HOOKS,
    ROOT,
    assert_kept,
    child_env,
    error_line,
    files_sha256,
    results,
    run_cli,
    run_process,
    tiny_args,
)

STEPS = 12  # per stage in tests/fixtures/tiny_recipe.yaml (checkpoints every 3 steps, 2 kept)
STAGES = ("0-pretrain", "1-joint")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tokenizer):
    """The uninterrupted run (subprocess, as a user would launch it)."""
    out = tmp_path_factory.mktemp("reference")
    proc = run_process(tiny_args(out, tokenizer))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, results(out)


def assert_same_experiment(got: dict, ref: dict) -> None:
    """Final per-task losses, examples / tokens seen, eval curves and final weights equal the reference."""
    assert got["complete"] and got["total_steps"] == ref["total_steps"] == 2 * STEPS
    for name, want in ref["tasks"].items():
        have = got["tasks"][name]
        assert have["examples_seen"] == want["examples_seen"], name
        assert have["target_tokens_seen"] == want["target_tokens_seen"], name
        assert have["final_loss"] == pytest.approx(want["final_loss"], rel=1e-6), name
        assert have["best_loss"] == pytest.approx(want["best_loss"], rel=1e-6), name
    for a, b in zip(got["stages"], ref["stages"], strict=True):
        assert (a["name"], a["steps"], a["examples_seen"], a["target_tokens_seen"]) == (
            b["name"], b["steps"], b["examples_seen"], b["target_tokens_seen"])
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-6)
        assert a["files_sha256"]["model.safetensors"] == b["files_sha256"]["model.safetensors"], a["name"]

    def evals(r):
        return [(h["stage"], h["step"], k, v) for h in r["history"] for k, v in sorted(h.items())
                if k.startswith("eval_") and k.endswith("_loss")]

    assert [e[:3] for e in evals(got)] == [e[:3] for e in evals(ref)]
    assert [e[3] for e in evals(got)] == pytest.approx([e[3] for e in evals(ref)], rel=1e-6)


def steps_run(progress: Path) -> dict[str, list[int]]:
    """Optimizer steps a hooked run went through, per stage directory."""
    out: dict[str, list[int]] = {s: [] for s in STAGES}
    if progress.exists():
        for line in progress.read_text().splitlines():
            stage, step = line.split()
            out[stage].append(int(step))
    return out


def kill_at_random_step(cmd: list[str], env: dict, progress: Path, stage: str, rng: random.Random,
                        sleep: float, log: Path) -> tuple[int, float]:
    """Start ``cmd``; SIGKILL it a random delay after it finished a random step of ``stage``."""
    step, delay = rng.randint(1, STEPS - 1), rng.uniform(0, sleep)
    env = {**env, "HF_PTJF_TEST_PROGRESS": str(progress), "HF_PTJF_TEST_STEP_SLEEP": str(sleep)}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if any(s >= step for s in steps_run(progress)[stage]):
                    time.sleep(delay)
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.005)
        finally:
            if proc.poll() is None and time.monotonic() >= deadline:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"not killed in {stage} at step {step}:\n{log.read_text()[-3000:]}"
    return step, delay


@pytest.mark.slow
def test_sigkill_at_random_steps_in_both_stages_then_rerun_equals_the_uninterrupted_run(tmp_path, tokenizer, reference):
    _, ref = reference
    seed = int(os.environ.get("HF_PTJF_TEST_KILL_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    out = tmp_path / "run"
    cmd = [sys.executable, str(HOOKS), *tiny_args(out, tokenizer)]
    env = child_env()
    where = f"(HF_PTJF_TEST_KILL_SEED={seed})"

    # 1) killed somewhere in stage 1
    p1 = tmp_path / "progress1"
    kill1 = kill_at_random_step(cmd, env, p1, STAGES[0], rng, 0.15, tmp_path / "log1")
    assert not (out / "stages" / STAGES[0] / STAGE_RECORD).exists(), where
    resume1 = latest_checkpoint(out / "stages" / STAGES[0], "pretrain")

    # 2) the same command: stage 1 resumes from its latest complete checkpoint; killed somewhere in stage 2
    p2 = tmp_path / "progress2"
    kill2 = kill_at_random_step(cmd, env, p2, STAGES[1], rng, 0.15, tmp_path / "log2")
    first = int(Path(resume1).name.split("-")[1]) + 1 if resume1 else 1
    assert steps_run(p2)[STAGES[0]] == list(range(first, STEPS + 1)), (where, kill1, resume1)
    assert (out / "stages" / STAGES[0] / STAGE_RECORD).exists(), where
    assert not (out / "stages" / STAGES[1] / STAGE_RECORD).exists(), where
    resume2 = latest_checkpoint(out / "stages" / STAGES[1], "joint")

    # 3) the same command again: stage 1 is skipped, stage 2 resumes, the run completes
    p3 = tmp_path / "progress3"
    proc = run_process(cmd[2:], script=HOOKS, env={**env, "HF_PTJF_TEST_PROGRESS": str(p3)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    first = int(Path(resume2).name.split("-")[1]) + 1 if resume2 else 1
    assert steps_run(p3) == {STAGES[0]: [], STAGES[1]: list(range(first, STEPS + 1))}, (where, kill2, resume2)
    assert_same_experiment(results(out), ref)


@pytest.mark.slow
def test_save_cut_short_and_kill_after_a_confirmed_push_resume_exactly(tmp_path, tokenizer, reference):
    """Deterministic kill points: inside a checkpoint save, then between a confirmed push and the record."""
    _, ref = reference
    out = tmp_path / "run"
    with FaultyHubServer(tmp_path / "hub") as server:
        env = child_env(**hub_endpoint_env(server.url), HF_HUB_CACHE=str(tmp_path / "hf_cache"))
        args = tiny_args(out, tokenizer, "hub.mode=remote")

        # A) killed while saving checkpoint-6 of stage 1: weights written, trainer state not
        p = run_process(args, script=HOOKS, env={**env, "HF_PTJF_TEST_KILL": "save:0-pretrain:6"})
        assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
        stage1 = out / "stages" / STAGES[0]
        assert (stage1 / "checkpoint-6" / "model.safetensors").exists()
        assert not (stage1 / "checkpoint-6" / "trainer_state.json").exists()
        assert latest_checkpoint(stage1, "pretrain") == str(stage1 / "checkpoint-3")  # the cut-short one is skipped

        # B) resumes from checkpoint-3; killed right after stage 1's push was verified, before its record
        progress = tmp_path / "progress_b"
        p = run_process(args, script=HOOKS, env={**env, "HF_PTJF_TEST_KILL": "pushed:pretrain",
                                                 "HF_PTJF_TEST_PROGRESS": str(progress)})
        assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
        assert steps_run(progress)[STAGES[0]] == list(range(4, STEPS + 1))
        assert "not resuming from" in p.stderr and "checkpoint-6" in p.stderr  # the warning about the skipped one
        assert not (stage1 / STAGE_RECORD).exists() and not (out / "stages" / STAGES[1]).exists()
        assert server.count("POST", "-0-pretrain/commit/") >= 1
        uploads = server.count("POST", "-0-pretrain/preupload/")

        # C) the same command: stage 1 is not trained again, but pushed and verified again, then stage 2 runs
        progress = tmp_path / "progress_c"
        p = run_process(args, script=HOOKS, env={**env, "HF_PTJF_TEST_PROGRESS": str(progress)})
        assert p.returncode == 0, p.stderr[-4000:]
        assert steps_run(progress) == {STAGES[0]: [], STAGES[1]: list(range(1, STEPS + 1))}
        got = results(out)
        s1 = got["stages"][0]
        assert server.count("POST", "-0-pretrain/preupload/") > uploads  # pushed again (no duplicate commit needed)
        assert s1["hub_sha"] == server.store.resolve("model", s1["hub_repo"], "main")
        assert server.count("GET", f"/resolve/{s1['hub_sha']}/model.safetensors") >= 1  # stage 2 loaded that sha
    assert_same_experiment(got, ref)


# ---------------------------------------------------------------------------------------------- in process
@pytest.fixture
def hub(tmp_path):
    with FaultyHubServer(tmp_path / "hub") as server, use_endpoint(server.url, cache_dir=tmp_path / "hf_cache"):
        yield server


def hub_args(out: Path, tokenizer: Path, *extra: str) -> list[str]:
    return tiny_args(out, tokenizer, "hub.mode=remote", "hub.max_retries=2", "hub.timeout=2", *extra)


@pytest.mark.slow
def test_transient_hub_faults_are_retried_and_records_are_atomic(tmp_path, tokenizer, reference, hub, monkeypatch):
    import transformers.trainer_utils as trainer_utils

    import hf_ptjf.runner.records as runner

    # 503 twice on stage 1's commit, then a commit the server holds past the 2 s timeout, then a dropped connection
    hub.faults.fail_next(2, status=503, path_contains="-0-pretrain/commit/")
    hub.faults.delay_next(1, seconds=4, path_contains="-0-pretrain/commit/")
    hub.faults.drop_next(1, path_contains="-1-joint/commit/")

    written: list[str] = []
    atomic = runner.atomic_write_text
    monkeypatch.setattr(runner, "atomic_write_text", lambda path, text: (written.append(path.name), atomic(path, text)))
    deleted: list[str] = []
    rmtree = shutil.rmtree

    def checked_rmtree(path, *a, **kw):  # rotation: a newer *complete* checkpoint must exist already
        path = Path(path)
        if not path.name.startswith("checkpoint-"):
            return rmtree(path, *a, **kw)
        newest = latest_checkpoint(path.parent, "any")
        assert newest and int(Path(newest).name.split("-")[1]) > int(path.name.split("-")[1]), (path, newest)
        deleted.append(path.name)
        return rmtree(path, *a, **kw)

    monkeypatch.setattr(trainer_utils.shutil, "rmtree", checked_rmtree)

    out = tmp_path / "run"
    code, err = run_cli(hub_args(out, tokenizer, "hub.max_retries=3"))
    assert code == 0, err
    assert hub.count("POST", "-0-pretrain/commit/") == 4 and hub.count("POST", "-1-joint/commit/") == 2
    assert hub.faults.pending == 0
    got = results(out)
    for stage in got["stages"]:
        assert stage["hub_sha"] == hub.store.resolve("model", stage["hub_repo"], "main")
    assert_same_experiment(got, reference[1])
    assert {"recipe.resolved.json", "results.json", STAGE_RECORD, "report.md"} <= set(written)
    assert deleted  # save_total_limit=2 rotated checkpoints, each time after a newer one was complete
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.slow
def test_hub_down_stops_before_the_next_stage_and_a_rerun_finishes(tmp_path, tokenizer, reference, hub, monkeypatch):
    from hf_ptjf.runner.loop import RecipeRunner

    out = tmp_path / "run"
    run_stage = RecipeRunner.run_stage

    def hub_goes_down(self, index, stage):  # the Hub answered the check before work, then went down
        if index == 0:
            hub.stop()
        return run_stage(self, index, stage)

    monkeypatch.setattr(RecipeRunner, "run_stage", hub_goes_down)
    code, err = run_cli(hub_args(out, tokenizer))
    monkeypatch.setattr(RecipeRunner, "run_stage", run_stage)
    assert code == 2
    line = error_line(err)
    assert "stage `pretrain`" in line and "push was not confirmed" in line and "after 3 attempts" in line
    assert "Rerun the same command" in line
    stage1 = out / "stages" / STAGES[0]
    assert (stage1 / "final" / "model.safetensors").exists() and not (stage1 / STAGE_RECORD).exists()
    assert not (out / "stages" / STAGES[1]).exists()  # the next stage never started
    kept = files_sha256(stage1)

    hub.start()  # same port
    code, err = run_cli(hub_args(out, tokenizer))
    assert code == 0, err
    assert_kept({k: v for k, v in kept.items() if k.startswith("checkpoint-")}, stage1)  # not trained again
    got = results(out)
    assert got["stages"][0]["hub_sha"] == hub.store.resolve("model", got["stages"][0]["hub_repo"], "main")
    assert_same_experiment(got, reference[1])


@pytest.mark.slow
def test_push_that_does_not_verify_is_not_recorded(tmp_path, tokenizer, hub, monkeypatch):
    import hf_ptjf.hub as hub_module

    push = hub_module.push_folder

    def push_then_corrupt(folder, repo_id, **kw):  # the upload lands damaged on the Hub
        sha = push(folder, repo_id, **kw)
        hub.blob_path(repo_id, "model.safetensors", revision=sha).write_bytes(b"not the weights")
        return sha

    monkeypatch.setattr(hub_module, "push_folder", push_then_corrupt)
    out = tmp_path / "run"
    code, err = run_cli(hub_args(out, tokenizer))
    assert code == 2
    line = error_line(err)
    assert "does not match" in line and "model.safetensors" in line and "push was not confirmed" in line
    assert not (out / "stages" / STAGES[0] / STAGE_RECORD).exists()
    assert not (out / "stages" / STAGES[1]).exists()


@pytest.mark.slow
def test_hub_timeouts_give_up_with_a_clear_error(tmp_path, tokenizer, hub):
    hub.faults.delay_next(10, seconds=5, path_contains="/commit/")
    out = tmp_path / "run"
    code, err = run_cli(hub_args(out, tokenizer, "hub.timeout=0.5", "hub.max_retries=1"))
    assert code == 2
    line = error_line(err)
    assert "after 2 attempts" in line and "Timeout" in line and str(hub.url) in line
    assert not (out / "stages" / STAGES[1]).exists()


def test_changed_config_in_the_same_output_dir_is_refused(tmp_path, reference):
    out, _ = reference
    before = files_sha256(out)
    config = json.loads((out / "recipe.resolved.json").read_text())
    code, err = run_cli(tiny_args(out, Path(config["tokenizer"]["path"]), "learning_rate=1e-3"))
    assert code == 2
    line = error_line(err)
    assert "different config" in line and "--start-over" in line and "output_dir" in line
    assert files_sha256(out) == before  # nothing touched


def test_a_run_recorded_before_new_config_fields_existed_continues(tmp_path, reference):
    """A field a newer version added (here `data.stream_window`, each stage's `mixture.size_unit`) is absent from an
    older run's record: at its default it is not a change, so the finished stages are reused, not refused."""
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    record = out / "recipe.resolved.json"
    config = json.loads(record.read_text())
    config["output_dir"] = str(out)
    del config["data"]["stream_window"]
    for stage in config["stages"]:
        del stage["mixture"]["size_unit"]
    record.write_text(json.dumps(config))
    finished = {p: p.read_bytes() for p in (out / "stages").glob("*/stage.json")}
    code, err = run_cli(tiny_args(out, Path(config["tokenizer"]["path"])))
    assert code == 0, err
    assert {p: p.read_bytes() for p in finished} == finished  # reused, not trained again
    # a real change to a finished stage is still refused (the added default does not hide it)
    code, err = run_cli(tiny_args(out, Path(config["tokenizer"]["path"]), "data.stream_window=10"))
    assert code == 2 and "different config" in error_line(err) and "data.stream_window" in error_line(err)


def test_latest_checkpoint_skips_interrupted_saves_and_refuses_damaged_ones(tmp_path, reference):
    src = reference[0] / "stages" / STAGES[0]
    stage = tmp_path / "stage"
    for name in ("checkpoint-9", "checkpoint-12"):
        shutil.copytree(src / name, stage / name)
    assert latest_checkpoint(stage, "pretrain") == str(stage / "checkpoint-12")
    # a save cut short: weights half written, no trainer state
    cut = stage / "checkpoint-15"
    cut.mkdir()
    shutil.copy(stage / "checkpoint-12" / "mixture_state.json", cut)
    (cut / "model.safetensors").write_bytes((stage / "checkpoint-12" / "model.safetensors").read_bytes()[:100])
    assert latest_checkpoint(stage, "pretrain") == str(stage / "checkpoint-12")
    # a trainer_state.json cut short is the same
    shutil.copytree(stage / "checkpoint-12", stage / "checkpoint-18")
    state = stage / "checkpoint-18" / "trainer_state.json"
    state.write_text(state.read_text()[:50])
    assert latest_checkpoint(stage, "pretrain") == str(stage / "checkpoint-12")
    assert latest_checkpoint(tmp_path / "missing", "pretrain") is None
    # a complete checkpoint with a damaged file is refused (not skipped, not deleted)
    for damage in ("model.safetensors", "optimizer.pt", "mixture_state.json"):
        bad = stage / "checkpoint-21"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(stage / "checkpoint-12", bad)
        data = (bad / damage).read_bytes()
        (bad / damage).write_bytes(data[: len(data) // 2])
        from hf_ptjf.recipe import RecipeError

        with pytest.raises(RecipeError, match=rf"checkpoint-21 is damaged .*{damage.split('.')[0]}.*checkpoint-12"):
            latest_checkpoint(stage, "pretrain")
        assert bad.is_dir()


def test_start_over_discards_the_old_run_config_record_last(tmp_path, reference, monkeypatch):
    import hf_ptjf.runner.records as runner

    out = tmp_path / "run"
    shutil.copytree(reference[0], out)  # another run (its recorded config differs: output_dir)
    config = json.loads((out / "recipe.resolved.json").read_text())
    args = tiny_args(out, Path(config["tokenizer"]["path"]), "method=scalarization", "method_args.total_steps=2")
    code, err = run_cli(args)
    assert code == 2 and "different config" in error_line(err)

    removed: list[str] = []
    rmtree, unlink = runner.shutil.rmtree, Path.unlink
    monkeypatch.setattr(runner.shutil, "rmtree", lambda p, *a, **k: (removed.append(Path(p).name), rmtree(p, *a, **k)))
    monkeypatch.setattr(Path, "unlink", lambda p, *a, **k: (removed.append(p.name), unlink(p, *a, **k))[1])
    code, err = run_cli([*args, "--start-over"])
    assert code == 0, err
    top = [name for name in removed if name in {"stages", "results.json", "report.md", "recipe.resolved.json",
                                                "tokenizer"}]
    assert top[-1] == "recipe.resolved.json" and {"stages", "results.json"} <= set(top)
    got = results(out)
    assert got["complete"] and [s["name"] for s in got["stages"]] == ["scalarization"]
    assert not (out / "stages" / "0-pretrain").exists()


@pytest.mark.slow
def test_a_config_change_in_stages_that_did_not_finish_is_accepted(tmp_path, tokenizer):
    out = tmp_path / "run"
    code, err = run_cli(tiny_args(out, tokenizer))
    assert code == 0, err
    (out / "stages" / STAGES[1] / "stage.json").unlink()  # as if the run had died in its second stage
    pretrain = files_sha256(out / "stages" / STAGES[0])
    code, err = run_cli(tiny_args(out, tokenizer, "stages.joint.max_steps=8"))
    assert code == 0, err
    assert files_sha256(out / "stages" / STAGES[0]) == pretrain  # reused, not retrained
    (aside,) = (out / "stages").glob(".superseded-*")  # the old partial stage is kept, not resumed from
    assert (aside / STAGES[1] / "stage.json").exists() is False and list((aside / STAGES[1]).glob("checkpoint-*"))
    got = results(out)
    assert got["complete"] and [s["steps"] for s in got["stages"]] == [12, 8]
    # a change to a finished stage is refused, naming the key, and changes nothing
    before = files_sha256(out)
    code, err = run_cli(tiny_args(out, tokenizer, "stages.joint.max_steps=8", "stages.pretrain.max_steps=10"))
    line = error_line(err)
    assert code == 2 and "`stages.0.max_steps` was 12, now 10" in line and "pretrain, joint" in line
    assert files_sha256(out) == before


def test_a_run_that_failed_before_any_stage_finished_accepts_the_corrected_config(tmp_path, tokenizer):
    out = tmp_path / "run"
    out.mkdir()
    (out / "recipe.resolved.json").write_text(json.dumps({"learning_rate": "the config of a failed attempt"}))
    code, err = run_cli(tiny_args(out, tokenizer, "method=scalarization", "method_args.total_steps=2"))
    assert code == 0, err
    assert json.loads((out / "recipe.resolved.json").read_text())["method"] == "scalarization"


@pytest.mark.slow
def test_hub_down_before_the_run_is_reported_before_any_work(tmp_path, tokenizer, hub):
    out = tmp_path / "run"
    hub.stop()
    code, err = run_cli(hub_args(out, tokenizer))
    line = error_line(err)
    assert code == 2 and "`hub.mode: remote`" in line and hub.url in line and "does not answer" in line
    assert not out.exists()  # nothing trained, nothing written
