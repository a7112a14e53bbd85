"""Stage resets (hf_ptjf.runner.resets): the reset is the only difference between the methods.

Tiny T5 (dropout 0.1), one torch thread, CPU fp32: a two-stage run on one mixture whose second stage keeps the
optimizer and continues the schedule trains exactly as one stage of the same total steps (every logged loss, the
final weights); with the default reset the two stages are the restart baseline; a crash inside a `keep` stage
resumes from its own checkpoint; `keep` on another mixture carries the optimizer state, `anneal` decays the LR.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_ptjf.recipe import RecipeError, load_recipe
from hf_ptjf.runner import run_recipe
from hf_ptjf.runner.preflight import check_before_work

from .fixtures.recipe_runs import TINY

MIXTURE = {"strategy": "temperature", "tau": 3.33}
# eval, save and log points that fall on the stage boundary (step 6) in both runs
COMMON = ["eval.bleu=false"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _stages(*stages: dict) -> str:
    import json

    return "stages=" + json.dumps(list(stages))


def _run(out: Path, tokenizer: Path, *overrides: str) -> dict:
    cfg = load_recipe(TINY, [f"output_dir={out}", f"tokenizer.path={tokenizer}", "method=null", "method_args=null",
                             *COMMON[:1], *overrides])
    return run_recipe(cfg)


def _one_stage(steps: int) -> str:
    return _stages({"name": "all", "max_steps": steps, "init": "scratch", "mixture": MIXTURE,
                    "lr_scheduler": "linear"})


def _two_stages(reset: dict | None, first: int = 6, second: int = 6, mixture2: dict | None = None) -> str:
    two = {"name": "more", "max_steps": second, "init": "previous", "mixture": mixture2 or MIXTURE,
           "lr_scheduler": "linear"}
    if reset is not None:
        two["reset"] = reset
    return _stages({"name": "first", "max_steps": first, "init": "scratch", "mixture": MIXTURE,
                    "lr_scheduler": "linear"}, two)


TRAINING = ["eval_steps=3", "save_steps=3", "logging_steps=1", "warmup_steps=2"]
KEEP_CONTINUE = {"optimizer": "keep", "lr_schedule": "continue"}


def _losses(results: dict) -> dict[tuple[int, str], float]:
    """Every logged loss of a run (training, per-task training, evaluation), by (run step, key)."""
    return {(h["step"], k): v for h in results["history"] for k, v in h.items()
            if (k == "loss" or k.endswith("_loss")) and k != "train_loss"}


def _final_weights(results: dict) -> dict[str, torch.Tensor]:
    return load_file(Path(results["stages"][-1]["output_dir"]) / "model.safetensors")


@pytest.fixture(scope="module")
def single_and_continued(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("resets")
    torch.set_num_threads(1)
    single = _run(root / "single", tokenizer, _one_stage(12), *TRAINING)
    continued = _run(root / "continued", tokenizer, _two_stages(KEEP_CONTINUE), *TRAINING)
    return root, single, continued


@pytest.mark.slow
def test_keep_and_continue_on_one_mixture_equals_one_stage_of_the_same_steps(single_and_continued):
    _, single, continued = single_and_continued
    assert [s["steps"] for s in continued["stages"]] == [6, 6] and continued["total_steps"] == 12
    one, two = _losses(single), _losses(continued)
    assert len(one) > 30 and set(one) <= set(two)
    # beyond them only the first stage's end-of-stage evaluation (plain cross-entropy) at the boundary
    assert {k for k in set(two) - set(one)} == {(6, "ce_en-fr_loss"), (6, "ce_en-ro_loss")}
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=0, abs=1e-6), key
    a, b = _final_weights(single), _final_weights(continued)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6)
    # the records: the second stage's own examples (not the run's), its reset named
    assert continued["tasks"]["en-fr"]["examples_seen"] == single["tasks"]["en-fr"]["examples_seen"]
    assert sum(continued["stages"][1]["examples_seen"].values()) == 6 * 8
    assert continued["stages"][1]["reset"] == KEEP_CONTINUE
    assert continued["stages"][0]["reset"] == {"optimizer": "fresh", "lr_schedule": "fresh"}
    report = (Path(continued["stages"][0]["output_dir"]).parents[2] / "report.md").read_text()
    assert "| keep, continue |" in report


@pytest.mark.slow
def test_the_schedule_of_a_continued_chain_spans_both_stages(single_and_continued):
    _, single, continued = single_and_continued
    lr = {h["step"]: h["learning_rate"] for h in continued["history"] if "learning_rate" in h}
    assert lr == {h["step"]: h["learning_rate"] for h in single["history"] if "learning_rate" in h}
    assert lr[6] > 0.4 * 5e-3  # a linear decay over stage 1 alone would be at 0 here


@pytest.mark.slow
def test_a_crash_inside_a_keep_stage_resumes_from_its_own_checkpoint(single_and_continued, tokenizer):
    root, _, continued = single_and_continued
    out = root / "crashed"
    _run(out, tokenizer, _two_stages(KEEP_CONTINUE), *TRAINING)
    stage = out / "stages" / "1-more"
    # a crash after the stage's checkpoint at run step 9: its later checkpoint, output and record never written
    for name in ("checkpoint-12", "final", "stage.json"):
        path = stage / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert (stage / "checkpoint-9").is_dir()
    shutil.rmtree(out / "stages" / "0-first" / "checkpoint-6")  # the previous stage's final state: not read again
    again = _run(out, tokenizer, _two_stages(KEEP_CONTINUE), *TRAINING)
    assert _losses(again) == pytest.approx(_losses(continued), rel=0, abs=1e-6)
    a, b = _final_weights(continued), _final_weights(again)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_default_reset_is_the_restart_baseline(tmp_path, tokenizer):
    two = _run(tmp_path / "two", tokenizer, _two_stages(None, 3, 3), *TRAINING)
    cfg = load_recipe(TINY, [f"output_dir={tmp_path / 'restart'}", f"tokenizer.path={tokenizer}", "method=restart",
                             "method_args.total_steps=6", "method_args.first_stage_steps=3",
                             f"method_args.mixture={MIXTURE}", "method_args.high_resource=null",
                             "method_args.stage={lr_scheduler: linear}", *COMMON[:1], *TRAINING])
    restart = run_recipe(cfg)
    assert [s["reset"] for s in two["stages"]] == [s["reset"] for s in restart["stages"]]
    assert list(_losses(two).values()) == pytest.approx(list(_losses(restart).values()), abs=1e-6)


@pytest.mark.slow
def test_keep_on_another_mixture_carries_the_optimizer_and_anneal_decays_from_the_last_lr(tmp_path, tokenizer):
    from hf_ptjf.runner.resets import OPTIMIZER_STATE

    pretrain = {"tasks": ["en-fr"]}
    kept = _run(tmp_path / "kept", tokenizer, _stages(
        {"name": "first", "max_steps": 6, "init": "scratch", "mixture": pretrain, "lr_scheduler": "constant"},
        {"name": "more", "max_steps": 6, "init": "previous", "mixture": MIXTURE, "reset": {"optimizer": "keep",
                                                                                              "lr_schedule": "anneal"}}),
        *TRAINING)
    stage_dir = Path(kept["stages"][1]["output_dir"]).parent
    state = torch.load(stage_dir / "checkpoint-3" / OPTIMIZER_STATE, weights_only=True)["state"]
    steps = {int(s["step"]) for s in state.values()}
    assert steps == {6 + 3}  # the kept moments: 6 updates in the first stage, 3 in this one
    assert kept["stages"][1]["steps"] == 6 and sum(kept["stages"][1]["examples_seen"].values()) == 6 * 8
    lrs = [h["learning_rate"] for h in kept["history"] if h.get("stage") == "more" and "learning_rate" in h]
    last = [h["learning_rate"] for h in kept["history"] if h.get("stage") == "first" and "learning_rate" in h][-1]
    # linear from the previous stage's last LR (constant: 5e-3) to 0 over 6 steps (the LR used at steps 1..6)
    assert last == pytest.approx(5e-3)
    assert lrs == pytest.approx([5e-3 * (1 - k / 6) for k in range(6)])


# ---------------------------------------------------------------------- refusals, before any work
def _cfg(tmp_path, *overrides: str):
    return load_recipe(TINY, [f"output_dir={tmp_path}", *overrides])


@pytest.mark.parametrize("overrides, message", [
    (["stages.pretrain.reset={optimizer: keep}"], "`stages.0.reset`: stage `pretrain` is the first stage"),
    (["method_args.reset={optimizer: keep, lr_schedule: continue}", "stages.joint.init={hub: someone/model}"],
     "starts from {'hub': 'someone/model'}, not from the previous stage `pretrain`"),
    (["method_args.reset={optimizer: keep}", "stages.joint.init={path: /some/model}"], "not from the previous stage"),
    (["method_args.reset={optimizer: keep}", "stages.joint.optimizer=adafactor"],
     "a kept optimizer state needs the same optimizer and optimizer_args"),
    (["method_args.reset={optimizer: keep}", "stages.joint.peft={r: 4}"],
     "stage `joint` trains LoRA adapters and `pretrain` trains the whole model"),
])
def test_a_reset_without_a_previous_state_is_refused_before_any_work(tmp_path, overrides, message):
    cfg = _cfg(tmp_path, *overrides)
    with pytest.raises(RecipeError, match=None) as e:
        check_before_work(cfg)
    assert message in str(e.value)
    assert not tmp_path.joinpath("recipe.resolved.json").exists()


def test_a_missing_final_state_of_a_finished_stage_is_refused(tmp_path):
    from hf_ptjf.runner.records import RunDirectory
    from hf_ptjf.runner.resets import StageResets

    cfg = _cfg(tmp_path, "method_args.reset={optimizer: keep}")
    run_dir = RunDirectory(tmp_path)
    (run_dir.stage_dir(0, cfg.stages[0])).mkdir(parents=True)
    (run_dir.stage_dir(0, cfg.stages[0]) / "stage.json").write_text("{}")
    resets = StageResets(cfg, run_dir)
    resets.rates = {"pretrain": {"en-fr": 1.0}, "joint": {"en-fr": 0.7, "en-ro": 0.3}}
    with pytest.raises(RecipeError, match=r"takes over the final state of `pretrain`, but .*checkpoint-12 does not "
                                          r"exist; rerun `pretrain`"):
        resets.check_final_states()


def test_the_stage_before_a_keep_stage_saves_its_full_final_state(tmp_path):
    from hf_ptjf.runner.records import RunDirectory
    from hf_ptjf.runner.resets import StageResets

    cfg = _cfg(tmp_path, "save_strategy=no", "method_args.reset={optimizer: keep, lr_schedule: continue}")
    resets = StageResets(cfg, RunDirectory(tmp_path))
    kw = {"save_strategy": "no", "max_steps": 12, "learning_rate": 1.0}
    resets.adjust_arguments(0, kw)
    assert kw["save_strategy"] == "steps" and kw["save_only_model"] is False
    joint = {"max_steps": 12, "learning_rate": 7.0, "lr_scheduler_type": "inverse_sqrt"}
    resets.adjust_arguments(1, joint)  # `continue`: the schedule of the chain's first stage
    assert joint["learning_rate"] == 5e-3 and joint["lr_scheduler_type"] == "cosine"
    plain = StageResets(_cfg(tmp_path), RunDirectory(tmp_path))
    kw = {"save_strategy": "no", "max_steps": 12}
    plain.adjust_arguments(0, kw)
    assert kw == {"save_strategy": "no", "max_steps": 12}  # the default reset: nothing more is saved


# ---------------------------------------------------------------------- two processes: DDP and ZeRO-3
def _kept_steps(checkpoint: Path) -> set[int]:
    """The update counts in a checkpoint's optimizer state (DDP: optimizer.pt; ZeRO-3: DeepSpeed's shards)."""
    shards = sorted(checkpoint.glob("global_step*/*optim_states.pt"))
    if not shards:
        return {int(s["step"]) for s in torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"].values()}
    steps = set()
    for shard in shards:  # (DeepSpeed's own pickles: a test reads only the files its run just wrote)
        state = torch.load(shard, weights_only=False)["optimizer_state_dict"]
        inner = state.get("optimizer_state_dict", state)
        steps |= {int(s["step"]) for s in inner["state"].values()}
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("config", ["cpu_ddp2.yaml", "cpu_zero3_2proc.yaml"], ids=["ddp", "zero3"])
def test_keep_carries_the_optimizer_state_over_two_processes(config, tmp_path, tokenizer):
    from .distributed import ROOT, accelerate_launch

    out = tmp_path / "run"
    accelerate_launch(config, ROOT / "recipes" / "run.py", str(TINY), f"output_dir={out}",
                      f"tokenizer.path={tokenizer}", "eval.bleu=false", "per_device_train_batch_size=4",
                      "method_args.reset={optimizer: keep, lr_schedule: continue}", "method_args.total_steps=12",
                      "method_args.first_stage_steps=6", *TRAINING, timeout=900)
    # the joint stage's moments continued the pre-training's: 6 updates there, 3 here at its checkpoint-3
    assert _kept_steps(out / "stages" / "1-joint" / "checkpoint-3") == {6 + 3}
    assert _kept_steps(out / "stages" / "0-pretrain" / "checkpoint-6") == {6}
