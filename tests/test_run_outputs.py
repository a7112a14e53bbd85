"""What a person sees after a run: the terminal, the run directory (report, plots, samples), TensorBoard and the
model cards, from the real recipe runner (tiny recipe, offline Hub, one subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from .fixtures.recipe_runs import ROOT, child_env, run_process

TINY_PTJF = ROOT / "tests" / "recipes" / "tiny_ptjf.yaml"  # 24 + 16 steps, BLEU on 8 examples


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "run"
    proc = run_process([str(TINY_PTJF), f"output_dir={out}", "hub.mode=local", "report_to=[tensorboard]"],
                       env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout, proc.stderr, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_terminal_is_quiet_and_says_what_it_does_and_where_everything_is(run):
    out, stdout, stderr, _ = run
    assert "httpx" not in stderr and "HTTP Request" not in stderr  # one INFO line per Hub request, before
    assert "pin_memory" not in stderr
    assert "Both `max_new_tokens`" not in stderr
    for step in ("[1/2] task en-fr: loading Bible", "[2/2] task en-ro:", "training the SentencePiece tokenizer",
                 "tokenizing 2 tasks"):
        assert step in stderr, step
    assert f"Run directory: {out}" in stdout and f"report:      {out / 'report.md'}" in stdout
    assert f"tensorboard --logdir {out / 'tensorboard'}" in stdout and "samples_en-ro.jsonl" in stdout
    assert str(out / "plots" / "dev_loss.png") in stdout


@pytest.mark.slow
def test_report_embeds_the_curves_and_shows_sample_translations(run):
    out, _, _, results = run
    report = (out / "report.md").read_text()
    for name in ("dev_loss", "train_loss", "examples_seen"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 5_000
        assert f"](plots/{name}.png)" in report
    assert "## Sample translations" in report and "| source | reference | hypothesis |" in report
    for i, stage in enumerate(("0-pretrain", "1-joint")):
        rows = [json.loads(x) for x in (out / "stages" / stage / "samples_en-ro.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and set(rows[0]) == {"source", "reference", "hypothesis", "language",
                                                     "off_target"}  # eval.bleu_examples; the detected language
        assert rows[0]["source"] and rows[0]["reference"] and "<2ro>" not in rows[0]["source"]
    assert results["samples"]["en-ro"] == rows[:3] and rows[0]["reference"] in report
    # the training-loss plot has a curve per task (train_<task>_loss is logged), not only the mixed loss
    assert any("train_en-ro_loss" in h for h in results["history"] if h["stage"] == "joint")


@pytest.mark.slow
def test_tensorboard_step_runs_across_stages_with_bleu_and_no_step_logged_twice(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _, _, results = run
    assert not list((out / "stages").rglob("events.out.tfevents*"))  # one run-wide log directory
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    steps = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert steps["train/loss"] == list(range(2, 41, 2))  # 24 pre-training + 16 joint steps, logging_steps 2
    assert steps["eval/en-ro_loss"] == [8, 16, 24, 32, 40]  # the last step of each stage once, not twice
    assert steps["eval/en-ro_bleu"] == [24, 40] and steps["eval/en-fr_bleu"] == [24, 40]
    history_steps = [h["step"] for h in results["history"] if "eval_en-ro_loss" in h]
    assert history_steps == [8, 16, 24, 32, 40]


@pytest.mark.slow
def test_model_cards_name_each_metrics_task_pin_the_base_and_give_both_step_counts(run):
    out, _, _, results = run
    pre, joint = results["stages"]
    card = ModelCard.load(Path(joint["output_dir"]) / "README.md")
    assert card.data.base_model == pre["hub_repo"] and card.data.hf_ptjf["base_model_revision"] == pre["hub_sha"]
    assert f"at revision `{pre['hub_sha']}`" in card.text
    loss = joint["metrics"]["eval_en-ro_loss"]
    assert f"| en-ro | loss | {loss:.4g} |" in card.text and "| en-ro | bleu |" in card.text
    assert "| all |" not in card.text
    # the final loss without label smoothing (0.1 here) is reported beside it, and is lower
    ce = joint["metrics"]["eval_en-ro_ce"]
    assert f"| en-ro | ce | {ce:.4g} |" in card.text and ce < loss
    assert results["tasks"]["en-ro"]["final_ce"] == ce
    assert "| joint (this stage) | 16 |" in card.text and "| whole run so far | 40 |" in card.text
    assert "| whole recipe | 40 |" in card.text
    from huggingface_hub import HfApi

    from hf_ptjf.hub import HubServer, use_endpoint

    with HubServer(out / "hub") as server, use_endpoint(server.url, cache_dir=out.parent / "hf_cache"):
        files = HfApi().list_repo_files(joint["hub_repo"], revision=joint["hub_sha"])
    assert "README.md" in files and "model.safetensors" in files
    assert "training_args.bin" not in files and (Path(joint["output_dir"]) / "training_args.bin").is_file()
    first = ModelCard.load(Path(pre["output_dir"]) / "README.md")
    assert first.data.base_model is None and "| pretrain (this stage) | 24 |" in first.text
    assert "| en-ro | loss |" in first.text  # every task is evaluated, also those outside the stage
