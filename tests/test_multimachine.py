"""Two machines x one process, without a shared filesystem, tried on one box: two `accelerate launch` commands with
machine ranks 0 and 1 on 127.0.0.1, each with its own output root, data cache and Hub cache (its own "disk")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .distributed import ROOT, free_port
from .fixtures.recipe_runs import RUN, child_env, run_cli

TINY = ROOT / "tests" / "recipes" / "tiny_ptjf.yaml"


@pytest.mark.slow
def test_a_ptjf_recipe_on_two_machines_with_their_own_disks(tmp_path, tokenizer):
    port = free_port()
    procs = []
    for rank in (0, 1):
        disk = tmp_path / f"machine{rank}"
        env = child_env(HF_PTJF_CACHE=str(disk / "cache"), HF_HUB_CACHE=str(disk / "hf_hub"))
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "accelerate_configs" / "cpu_2machines.yaml"), "--machine_rank", str(rank),
               "--main_process_port", str(port), str(RUN), str(TINY), f"output_dir={disk / 'run'}",
               f"tokenizer.path={tokenizer}", "hub.mode=local", "save_on_each_node=true",
               "per_device_train_batch_size=4"]
        log = open(tmp_path / f"machine{rank}.log", "w")
        procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        proc.wait(timeout=900)
        log.close()
    for rank, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"machine{rank}.log").read_text()[-4000:]

    results = [json.loads((tmp_path / f"machine{r}" / "run" / "results.json").read_text()) for r in (0, 1)]
    for r, res in enumerate(results):  # each machine's disk holds the records and checkpoints a rerun needs
        assert res["complete"], r
        run = tmp_path / f"machine{r}" / "run"
        assert (run / "stages" / "0-pretrain" / "stage.json").is_file() and list(run.rglob("checkpoint-*"))
    pushed = [(s["hub_repo"], s["hub_sha"]) for s in results[0]["stages"]]
    assert pushed == [(s["hub_repo"], s["hub_sha"]) for s in results[1]["stages"]]  # the main process pushed once
    repo, sha = pushed[0]
    for r in (0, 1):  # stage 2 loaded the pushed commit on both machines, each into its own Hub cache
        snapshot = tmp_path / f"machine{r}" / "hf_hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / sha
        assert (snapshot / "model.safetensors").exists(), r

    # the same recipe in one process with the same global batch: the same plan, split between the machines
    single = tmp_path / "single"
    code, err = run_cli([TINY, f"output_dir={single}", f"tokenizer.path={tokenizer}", "per_device_train_batch_size=8"])
    assert code == 0, err
    one = json.loads((single / "results.json").read_text())
    for two_machines, one_process in zip(results[0]["stages"], one["stages"]):
        assert two_machines["examples_seen"] == one_process["examples_seen"]
        assert two_machines["target_tokens_seen"] == one_process["target_tokens_seen"]
    for task, numbers in one["tasks"].items():  # gradients averaged over the machines: the same training
        assert results[0]["tasks"][task]["final_loss"] == pytest.approx(numbers["final_loss"], abs=2e-3)


@pytest.mark.slow
def test_a_machine_that_never_joins_is_one_line_naming_the_setting(tmp_path):
    from .fixtures.recipe_runs import error_line, run_process

    config = ROOT / "accelerate_configs" / "cpu_2machines.yaml"
    proc = run_process([TINY, f"output_dir={tmp_path / 'run'}", "--launch", config, "--machine-rank", "0",
                        "--join-timeout", "10"], timeout=180)  # machine 1 is never started
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    for text in ("`--join-timeout`: not every machine joined within 10 s", "num_machines 2", "127.0.0.1:29531",
                 "--machine-rank"):
        assert text in line, line
