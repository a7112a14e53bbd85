"""Streamed tasks (issue 14): TaskStream readers, the streamed MixtureTrainer, streamed recipes, sizes in units.

* a reader resumes exactly from its state at any row (window edges, shard edges, pass edges), readers split a task
  with no duplicates and no gaps, every pass reshuffles;
* the streamed mixture's task sequence is the map-style sampler's; map-style and streamed tasks mix;
* a resumed streamed run (0 and 2 DataLoader workers) consumes exactly the rows of the uninterrupted one and ends
  with the same weights; a SIGKILLed streamed recipe, rerun, equals the uninterrupted run;
* 2 processes under ``accelerate launch`` read disjoint data that covers the task (tests/scripts/stream_ranks.py);
* sizes in examples / tokens / characters, declared or counted (cached); bad input is one clear error.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from hf_ptjf.data.stream import StreamError, TaskStream
from hf_ptjf.mixture.sampler import TemperatureMixtureSampler
from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments

from .distributed import accelerate_launch
from .fixtures.recipe_runs import (HOOKS, child_env, error_line, results, run_cli, run_process, streamed_recipe,
                                   streamed_tasks, write_bible_files, write_recipe)
from .toy import collate, tiny_t5, toy_task

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- readers
def _jsonl_shards(folder: Path, shards: int, rows: int, prefix: str = "r") -> list[str]:
    files = []
    for k in range(shards):
        path = folder / f"{prefix}-{k}.jsonl"
        with open(path, "w") as f:
            for i in range(rows):
                f.write(json.dumps({"id": f"{prefix}{k}-{i}", "text": f"row {k} {i}"}) + "\n")
        files.append(str(path))
    return files


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return _jsonl_shards(tmp_path_factory.mktemp("shards"), 3, 250)


def _stream(files, window=100, seed=3):
    ds = datasets.load_dataset("json", data_files=files, split="train", streaming=True)
    return TaskStream.from_iterable("t", ds, window=window, seed=seed)


@pytest.mark.parametrize("cut", [0, 1, 99, 100, 101, 250, 251, 749, 750, 1234])
def test_a_reader_resumes_exactly_from_its_state(shards, cut):
    stream = _stream(shards)
    reader = stream.reader()
    for _ in range(cut):
        next(reader)
    state = json.loads(json.dumps(reader.state()))  # what a checkpoint holds
    want = [next(reader)["id"] for _ in range(400)]
    resumed = stream.reader(state=state)
    assert [next(resumed)["id"] for _ in range(400)] == want


@pytest.mark.parametrize("readers", [1, 2, 3, 4])
def test_readers_split_a_pass_without_duplicates_or_gaps_and_every_pass_reshuffles(shards, readers):
    stream = _stream(shards)
    every = {f"r{k}-{i}" for k in range(3) for i in range(250)}
    its = [stream.reader(i, readers) for i in range(readers)]
    even = 3 % readers == 0 or 250 % readers == 0  # shards split evenly, or each shard's rows do
    first = [[next(r)["id"] for _ in range(750 // readers - (0 if even else 3))] for r in its]
    seen = [x for part in first for x in part]
    assert len(seen) == len(set(seen)) and set(seen) <= every  # disjoint
    if even:
        assert set(seen) == every  # and complete
    # the next pass of reader 0 visits its data again, in another order
    again = [next(its[0])["id"] for _ in range(len(first[0]))]
    if readers == 1:
        assert set(again) == set(first[0]) and again != first[0]
        assert its[0].state()["pass"] == 1


def test_an_empty_or_broken_stream_is_one_clear_error(tmp_path, shards):
    nothing = _stream(shards)
    nothing.transform = lambda window: {"id": []}  # every row filtered out
    with pytest.raises(StreamError, match="task `t`: the stream is empty"):
        next(nothing.reader())
    copy = [str(tmp_path / Path(f).name) for f in shards]
    for a, b in zip(shards, copy):
        Path(b).write_text(Path(a).read_text())
    reader = _stream(copy, window=50).reader()
    for _ in range(10):
        next(reader)
    for f in copy:  # shards deleted mid-run
        os.remove(f)
    with pytest.raises(StreamError, match=r"task `t`: reading .* failed .*restore it .* rerun"):
        for _ in range(800):
            next(reader)


# ---------------------------------------------------------------------------------------------- the trainer
def _tagged(ds, prefix):
    return ds.add_column("row", [f"{prefix}{i}" for i in range(len(ds))])


class Recorder:
    """A collator that records the (task, row id) of every row it batches."""

    def __init__(self):
        self.rows = []

    def __call__(self, rows):
        self.rows.extend((r["task_id"], r["row"], r.get("characters")) for r in rows)
        return collate([{k: v for k, v in r.items() if k != "row"} for r in rows])


def _args(out, steps, **kw):
    base = dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, report_to=[], learning_rate=1e-3,
                logging_steps=2, remove_unused_columns=False, use_cpu=True, seed=5, save_strategy="steps",
                save_steps=3, disable_tqdm=True, dataloader_pin_memory=False)
    base.update(kw)
    return MixtureTrainingArguments(**base)


def _tasks():
    hr, lr = _tagged(toy_task(600, 3, 0), "h"), _tagged(toy_task(20, 7, 1), "l")  # lr: 2 passes in 12 x 8 rows
    return hr, lr


def test_streamed_mixture_follows_the_map_style_task_sequence_and_mixes_with_map_style_tasks(tmp_path):
    hr, lr = (ds.add_column("characters", [k * len(x) for x in ds["input_ids"]]) for ds, k in zip(_tasks(), (5, 3)))
    rec = Recorder()
    trainer = MixtureTrainer(model=tiny_t5(), args=_args(tmp_path, 6, save_strategy="no"), data_collator=rec,
                             train_datasets={"hr": hr.to_iterable_dataset(num_shards=4), "lr": lr},
                             rates={"hr": 0.7, "lr": 0.3})
    trainer.train()
    sampler = TemperatureMixtureSampler([600, 20], 48, [0.7, 0.3], seed=5)
    assert [t for t, _, _ in rec.rows[:48]] == [int(sampler.task_of(i)) for i in sampler]
    ids = [r for _, r, _ in rec.rows]
    assert len(set(ids)) == len(ids)  # less than a pass of either task: nothing twice
    logged = trainer.state.log_history[-2]
    assert logged["stream_pass_hr"] == 1 and logged["stream_pass_lr"] == 1
    assert logged["examples_seen_hr"] + logged["examples_seen_lr"] == 48
    for k, name in enumerate(("hr", "lr")):  # the characters counted are the rows' (streamed and map-style)
        assert logged[f"characters_seen_{name}"] == sum(c for t, _, c in rec.rows[:48] if t == k) > 0


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_streamed_run_consumes_exactly_the_rows_of_the_uninterrupted_run(tmp_path, workers):
    hr, lr = _tasks()

    def run(out, steps, resume=None):
        rec = Recorder()
        torch.manual_seed(0)
        trainer = MixtureTrainer(
            model=tiny_t5(), args=_args(out, 12, dataloader_num_workers=workers, gradient_accumulation_steps=2,
                                        per_device_train_batch_size=4),
            data_collator=rec, rates={"hr": 0.6, "lr": 0.4},
            train_datasets={"hr": hr.to_iterable_dataset(num_shards=4), "lr": lr.to_iterable_dataset(num_shards=2)})
        if steps < 12:  # stop after `steps` (a crash after that checkpoint)
            from transformers import TrainerCallback

            class Stop(TrainerCallback):
                def on_step_end(self, args, state, control, **kw):
                    control.should_training_stop = state.global_step >= steps

            trainer.add_callback(Stop())
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full", 12)
    run(tmp_path / "cut", 6)
    resumed = run(tmp_path / "cut", 12, resume=str(tmp_path / "cut" / "checkpoint-6"))
    # the rows the resumed run trained on = the uninterrupted run's rows after step 6 (workers record in their own
    # processes, so compare what the trainers counted and the weights they ended with)
    assert resumed.seen_counts() == full.seen_counts()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    state = json.loads((tmp_path / "full" / "checkpoint-12" / "mixture_state.json").read_text())
    assert state["stream"]["batches"] == 24 and len(state["stream"]["readers"]) == max(1, workers)


def test_streamed_resume_refuses_a_changed_layout(tmp_path):
    hr, lr = _tasks()
    train = {"hr": hr.to_iterable_dataset(num_shards=2), "lr": lr}
    MixtureTrainer(model=tiny_t5(), args=_args(tmp_path, 3), data_collator=Recorder(), train_datasets=train,
                   rates=[0.5, 0.5]).train()
    trainer = MixtureTrainer(model=tiny_t5(), args=_args(tmp_path, 6, per_device_train_batch_size=4),
                             data_collator=Recorder(), train_datasets=train, rates=[0.5, 0.5])
    with pytest.raises(ValueError, match="batch_size 8 -> 4"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))


def test_a_streamed_task_without_a_size_needs_one_or_static_rates(tmp_path):
    hr, lr = _tasks()
    with pytest.raises(ValueError, match=r"streamed task\(s\) \['hr'\] have no size in examples"):
        MixtureTrainer(model=tiny_t5(), args=_args(tmp_path, 3, mixture_strategy="temperature", mixture_tau=2.0),
                       data_collator=Recorder(), train_datasets={"hr": hr.to_iterable_dataset(), "lr": lr})
    with pytest.raises(ValueError, match="set `max_steps`"):
        MixtureTrainer(model=tiny_t5(), args=_args(tmp_path, -1), data_collator=Recorder(),
                       train_datasets={"hr": hr.to_iterable_dataset(), "lr": lr}, rates=[0.5, 0.5])


def test_two_processes_read_disjoint_data_that_covers_each_task(tmp_path):
    """Under `accelerate launch` (2 processes x 2 DataLoader workers = 4 readers per task) every reader's first pass
    is disjoint from the others' and together they are the whole task."""
    out = tmp_path / "ranks"
    accelerate_launch("cpu_ddp2.yaml", ROOT / "tests" / "scripts" / "stream_ranks.py", str(out), timeout=600)
    rows = [json.loads(line) for f in sorted(out.glob("rows-*.jsonl")) for line in f.read_text().splitlines()]
    assert {r["rank"] for r in rows} == {0, 1}
    for task, size in (("hr", 600), ("lr", 40)):
        readers: dict[tuple[int, int], list[str]] = {}
        for r in rows:
            if r["task"] == task:
                readers.setdefault((r["rank"], r["worker"]), []).append(r["row"])
        assert len(readers) == 4, task
        # 4 shards, 4 readers: each pass gives each reader one shard (size / 4 rows), another one every pass
        passes = [[ids[p * size // 4:(p + 1) * size // 4] for ids in readers.values()] for p in range(2)]
        for number, part in enumerate(passes):
            union = [x for ids in part for x in ids]
            assert len(union) == len(set(union)), (task, number)  # no row read by two readers in a pass
            if all(len(ids) == size // 4 for ids in part):  # a whole pass consumed: together, the whole task
                assert set(union) == {f"{task[0]}{i}" for i in range(size)}, (task, number)
        if task == "lr":  # lr's first pass was consumed whole by every reader, so the coverage check ran
            assert min(len(ids) for ids in readers.values()) >= size // 4


# ---------------------------------------------------------------------------------------------- recipes
STREAM_STEPS = 12


@pytest.fixture(scope="module")
def bible_files(tmp_path_factory):
    """The tiny recipe's Bible tasks written as the user's files (see ``write_bible_files``)."""
    return write_bible_files(tmp_path_factory.mktemp("bible_files"))


@pytest.fixture(scope="module")
def streamed_reference(tmp_path_factory, bible_files):
    folder = tmp_path_factory.mktemp("streamed_reference")
    recipe = streamed_recipe(folder / "recipe.yaml", bible_files)
    proc = run_process([str(recipe), f"output_dir={folder / 'run'}"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return recipe, results(folder / "run")


def test_a_streamed_recipe_runs_with_counted_sizes_and_logs_passes(streamed_reference):
    recipe, ref = streamed_reference
    joint = ref["stages"][1]
    assert joint["tasks"] == ["en-fr", "en-ro"] and 0 < joint["rates"]["en-ro"] < 0.5  # temperature on counted sizes
    assert sum(joint["examples_seen"].values()) == STREAM_STEPS * 8
    assert any("stream_pass_en-fr" in h for h in ref["history"])
    # characters seen: counted from the rows (stream and map-style), per stage and over the run
    for name, task in ref["tasks"].items():
        per_stage = [st["characters_seen"].get(name, 0) for st in ref["stages"]]
        assert task["characters_seen"] == sum(per_stage) and per_stage[-1] > 0
        assert 20 < task["characters_seen"] / task["examples_seen"] < 1000  # a Bible verse pair's characters


@pytest.mark.slow
def test_a_streamed_recipe_trains_under_deepspeed_zero3(tmp_path, bible_files, tokenizer):
    """2 CPU processes, DeepSpeed ZeRO-3: each rank reads its own share of the stream, the counts are the global
    batch's, and every rank's reader states are in the checkpoint."""
    recipe = streamed_recipe(tmp_path / "recipe.yaml", bible_files)
    out = tmp_path / "run"
    proc = accelerate_launch("cpu_zero3_2proc.yaml", ROOT / "recipes" / "run.py", str(recipe), f"output_dir={out}",
                             f"tokenizer.path={tokenizer}", "eval.bleu=false", timeout=900)
    assert proc.returncode == 0
    res = results(out)
    assert res["complete"]
    for stage in res["stages"]:
        assert sum(stage["examples_seen"].values()) == STREAM_STEPS * 8 * 2  # 2 ranks x 8 rows per step
        assert all(stage["characters_seen"][t] > 0 for t in stage["tasks"] if stage["examples_seen"][t])
    assert all(np.isfinite(t["final_loss"]) for t in res["tasks"].values())
    state = json.loads(max((out / "stages" / "1-joint").glob("checkpoint-*/mixture_state.json"),
                           key=lambda p: int(p.parent.name.split("-")[1])).read_text())
    assert list((out / "stages" / "1-joint").glob("checkpoint-*/global_step*"))  # DeepSpeed's checkpoint layout
    readers = state["stream"]["readers"]
    assert state["stream"]["world_size"] == 2 and sorted(readers) == ["0.0", "1.0"]  # rank.worker: both ranks saved
    assert readers["0.0"] != readers["1.0"]  # each with its own position in the stream


@pytest.mark.slow
def test_sigkill_a_streamed_recipe_then_rerun_equals_the_uninterrupted_run(tmp_path, streamed_reference):
    from .test_reliability import STAGES, assert_same_experiment, kill_at_random_step, steps_run

    recipe, ref = streamed_reference
    seed = int(os.environ.get("HF_PTJF_TEST_KILL_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    out = tmp_path / "run"
    cmd = [sys.executable, str(HOOKS), str(recipe), f"output_dir={out}"]
    env = child_env()
    kill_at_random_step(cmd, env, tmp_path / "p1", STAGES[0], rng, 0.15, tmp_path / "log1")
    kill_at_random_step(cmd, env, tmp_path / "p2", STAGES[1], rng, 0.15, tmp_path / "log2")
    proc = run_process(cmd[2:], script=HOOKS, env={**env, "HF_PTJF_TEST_PROGRESS": str(tmp_path / "p3")})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert steps_run(tmp_path / "p3")[STAGES[0]] == [], f"HF_PTJF_TEST_KILL_SEED={seed}"
    assert_same_experiment(results(out), ref)


def test_a_deleted_shard_stops_the_rerun_with_one_line_and_restoring_it_resumes_exactly(tmp_path, bible_files,
                                                                                        streamed_reference):
    from .fixtures.recipe_runs import assert_kept, files_sha256
    from .test_reliability import STAGES, assert_same_experiment, kill_at_random_step

    folder = tmp_path / "files"
    folder.mkdir()
    for f in bible_files.iterdir():
        (folder / f.name).write_text(f.read_text())
    recipe = streamed_recipe(tmp_path / "recipe.yaml", folder)
    out = tmp_path / "run"
    cmd = [sys.executable, str(HOOKS), str(recipe), f"output_dir={out}"]
    kill_at_random_step(cmd, child_env(), tmp_path / "p1", STAGES[1], random.Random(7), 0.1, tmp_path / "log1")
    before = files_sha256(out)
    shard = folder / "en-fr-train-2.jsonl"
    shard.rename(tmp_path / "away.jsonl")
    code, err = run_cli([recipe, f"output_dir={out}"])
    line = error_line(err)
    assert code == 2 and "task `en-fr`" in line and "en-fr-train-2.jsonl" in line and "restore them" in line, line
    assert_kept(before, out)
    (tmp_path / "away.jsonl").rename(shard)
    proc = run_process([str(recipe), f"output_dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_experiment(results(out), streamed_reference[1])


def _prepare(tmp_path, tasks, mixture=None):
    from hf_ptjf.data.prepare import prepare_recipe_data
    from hf_ptjf.recipe import load_recipe

    data = {"num_dev": 16, "num_test": 8, "max_source_length": 32, "max_target_length": 32}
    tmp_path.mkdir(parents=True, exist_ok=True)
    recipe = write_recipe(tmp_path / "recipe.yaml", tasks=tasks, data=data)
    overrides = [f"output_dir={tmp_path / 'run'}"]
    cfg = load_recipe(recipe, overrides)
    if mixture:
        cfg.stages[1].mixture = type(cfg.stages[1].mixture)(**mixture)
    return cfg, prepare_recipe_data(cfg, tmp_path / "tok")


def test_rows_carry_the_characters_of_their_text(tokenizer):
    """What ``characters_seen`` and ``size_unit: characters`` count: a pair's source + target characters; a packed LM
    row's share of its documents' characters (in proportion to tokens, adding up to the batch's characters)."""
    from transformers import AutoTokenizer

    from hf_ptjf.data.preprocess import lm_rows, translation_rows

    tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    pairs = {"id": ["a", "b"], "source": ["In the beginning", "God created"], "target": ["Au commencement", "Dieu"]}
    for causal in (False, True):
        rows = translation_rows(tokenizer, "<2fr>", "train", 32, 32, causal)(pairs)
        assert rows["characters"] == [16 + 15, 11 + 4]
    texts = ["word " * 40, "short one", "another document of some length " * 3]
    rows = lm_rows(tokenizer, 7)({"id": ["x", "y", "z"], "text": texts})
    assert sum(rows["characters"]) == sum(len(t) for t in texts) and min(rows["characters"]) >= 0
    ids = tokenizer(texts[0])["input_ids"]
    first = len(ids) // 7  # rows packing the first document alone: its characters in proportion to their tokens
    for n in rows["characters"][:first]:
        assert abs(n - len(texts[0]) * 7 / len(ids)) <= 1


def test_a_counted_stream_has_the_sizes_of_the_same_data_loaded_map_style_and_the_count_is_cached(
        tmp_path, bible_files, monkeypatch):
    from hf_ptjf.data.sizes import TaskSizes

    tasks = streamed_tasks(bible_files, size="count", max_length_ratio=None)
    cfg, data = _prepare(tmp_path / "a", tasks)
    map_style = [dict(t, streaming=False, size=None) for t in tasks]
    _, loaded = _prepare(tmp_path / "b", map_style)
    for unit in ("examples", "tokens", "characters"):
        assert data.sizes.of(unit) == loaded.sizes.of(unit), unit
    assert data.sizes.of("examples")["en-fr"] == 400
    # counted once: a new run of the same data reads the count from the cache
    monkeypatch.setattr(TaskStream, "count_sizes", lambda self: pytest.fail("counted again"))
    _, again = _prepare(tmp_path / "c", tasks)
    assert again.sizes.of("tokens") == data.sizes.of("tokens")
    assert isinstance(again.sizes, TaskSizes)


def test_rates_in_characters_use_declared_sizes_and_unimax_budgets_convert_from_examples(tmp_path, bible_files):
    from hf_ptjf import mixture as mixing

    declared = {"characters": 3.0e7, "examples": 150_000}
    tasks = streamed_tasks(bible_files, size=declared)
    cfg, data = _prepare(tmp_path, tasks, {"strategy": "temperature", "tau": 3.33, "size_unit": "characters"})
    chars = data.sizes.of("characters")
    ro = data.corpora["en-ro"]["train"]
    assert chars == {"en-fr": 3.0e7, "en-ro": float(sum(len(r["source"]) + len(r["target"]) for r in ro))}
    joint = cfg.stages[1]
    want = mixing.temperature([chars["en-fr"], chars["en-ro"]], 3.33)
    assert list(cfg.stage_rates(joint, data.sizes).values()) == pytest.approx(want.tolist())
    joint.mixture = type(joint.mixture)(strategy="unimax", size_unit="characters", max_epochs=1.0)
    budget = cfg.stage_budget(joint) * (sum(chars.values()) / sum(data.sizes.of("examples").values()))
    want = mixing.unimax([chars["en-fr"], chars["en-ro"]], budget, 1.0)
    assert list(cfg.stage_rates(joint, data.sizes).values()) == pytest.approx(want.tolist())
    both = [chars["en-fr"], chars["en-ro"]]
    joint.mixture = type(joint.mixture)(strategy="temperature", tau=3.33, size_unit="characters", max_epochs=0.05)
    capped = mixing.cap_epochs(mixing.temperature(both, 3.33), both, budget, 0.05)
    assert list(cfg.stage_rates(joint, data.sizes).values()) == pytest.approx(capped.tolist())
    assert capped[1] < 0.5 * mixing.temperature(both, 3.33)[1]  # the cap (in characters) bites
    joint.mixture = type(joint.mixture)(strategy="proportional", size_unit="characters")
    assert list(cfg.stage_rates(joint, data.sizes).values()) == pytest.approx(mixing.proportional(both).tolist())
    joint.mixture = type(joint.mixture)(strategy="temperature", tau=2.0, size_unit="tokens")
    with pytest.raises(ValueError, match=r"task `en-fr` is streamed and its size in tokens is not known.*size: count"):
        cfg.stage_rates(joint, data.sizes)


def _write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("case", ["no size", "parquet column", "empty stream", "bad unit", "bible", "train_size",
                                  "mixture unit"])
def test_bad_streamed_input_is_one_line_naming_the_task_field_and_fix(tmp_path, bible_files, tokenizer, case):
    tasks = streamed_tasks(bible_files)
    if case == "parquet column":
        rows = [json.loads(x) for x in (bible_files / "en-fr-train-0.jsonl").read_text().splitlines()]
        _write_parquet(tmp_path / "part-0.parquet", [{"id": r["id"], "en": r["en"], "de": r["tgt"]} for r in rows])
        tasks[0].update(source="parquet", data_files={"train": str(tmp_path / "part-*.parquet"),
                                                       "validation": tasks[0]["data_files"]["validation"]})
        tasks[0]["data_files"]["validation"] = tasks[0]["data_files"]["validation"]
    elif case == "empty stream":
        (tmp_path / "empty.jsonl").write_text("")
        tasks[0]["data_files"]["train"] = str(tmp_path / "empty.jsonl")
    elif case == "bad unit":
        tasks[0]["size"] = {"bytes": 10}
    elif case == "bible":
        tasks[1] = {"name": "en-ro", "source": "bible", "src_versions": ["WEB"], "tgt_versions": ["Cornilescu"],
                    "streaming": True}
    elif case == "train_size":
        tasks[0]["train_size"] = 100
    recipe = write_recipe(tmp_path / "recipe.yaml", tasks=tasks,
                          data={"num_dev": 16, "num_test": 8, "max_source_length": 32, "max_target_length": 32})
    extra = ["method_args.mixture.size_unit=bytes"] if case == "mixture unit" else []
    code, err = run_cli([recipe, f"output_dir={tmp_path / 'run'}", f"tokenizer.path={tokenizer}", *extra])
    line = error_line(err)
    want = {
        "no size": ["`stages.1.mixture`", "task `en-fr` is streamed", "size: count"],
        "parquet column": ["task `en-fr`", "column `tgt`", "columns.target", "'de'"],
        "empty stream": ["task `en-fr`", "empty.jsonl", "have rows"],
        "bad unit": ["task 'en-fr'", "size.bytes", "characters"],
        "bible": ["task 'en-ro'", "streaming: true", "Bible"],
        "train_size": ["task 'en-fr'", "train_size", "streaming: false"],
        "mixture unit": ["mixture", "size_unit must be one of ['examples', 'tokens', 'characters']", "'bytes'"],
    }[case]
    assert code == 2 and all(w in line for w in want), line
    assert not (tmp_path / "run" / "stages").exists()


def test_the_mc4_recipe_mixes_table_2_character_counts_at_tau_3_33_and_inspect_plans_in_characters():
    """recipes/configs/mc4_streamed_lm.yaml: declared sizes (the paper's Table 2) reach the rates unchanged, and the
    applicability check plans the run in characters (no data is read: every size is declared)."""
    from hf_ptjf import mixture as mixing
    from hf_ptjf.analysis.inspect import recipe_report
    from hf_ptjf.data.sizes import TaskSizes
    from hf_ptjf.recipe import load_recipe

    cfg = load_recipe(ROOT / "recipes" / "configs" / "mc4_streamed_lm.yaml")
    chars = {t["name"]: t["size"]["characters"] for t in cfg.tasks}
    assert chars["mc4-en"] / chars["mc4-gd"] == pytest.approx(16745)  # "English is 16745 times larger"
    assert all(t["streaming"] for t in cfg.tasks)
    sizes = TaskSizes({n: None for n in chars}, {n: {"characters": c, "examples": c / 2000} for n, c in chars.items()})
    joint = cfg.stages[1]
    want = mixing.temperature(list(chars.values()), 3.33)
    assert list(cfg.stage_rates(joint, sizes, num_processes=8).values()) == pytest.approx(want.tolist())
    report = recipe_report(cfg, sizes, {}, num_processes=8)
    assert report.unit == "characters"
    budget = cfg.stage_budget(joint, 8) * 2000  # examples x characters per example
    gd = next(r for r in report.stages[1].rows if r.name == "mc4-gd")
    assert gd.expected_epochs == pytest.approx(want[-1] * budget / chars["mc4-gd"])


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "arrow", "hf"])
def test_every_streamed_format_reads_the_same_rows_as_json_lines(tmp_path, bible_files, fmt):
    """The en-fr shards rewritten as CSV / TSV / Parquet / Arrow files and as a saved `datasets` dataset stream the same
    rows: the counted sizes (examples, tokens, characters) equal the JSON-lines stream's. (No validation files: dev and
    test are the stream's first rows, dropped from training by their text, in every format.)"""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    shards = sorted(bible_files.glob("en-fr-train-*.jsonl"))
    tables = [pa.Table.from_pylist([json.loads(x) for x in f.read_text().splitlines()]) for f in shards]
    out = tmp_path / fmt
    out.mkdir()
    for k, table in enumerate(tables):
        if fmt == "csv":
            pcsv.write_csv(table, out / f"part-{k}.csv", pcsv.WriteOptions(quoting_style="needed"))
        elif fmt == "tsv":  # quotes are text in TSV corpora (the loader reads them with QUOTE_NONE)
            lines = ["\t".join(table.column_names)] + ["\t".join(r.values()) for r in table.to_pylist()]
            (out / f"part-{k}.tsv").write_text("\n".join(lines) + "\n")
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, out / f"part-{k}.parquet")
        elif fmt == "arrow":
            with pa.OSFile(str(out / f"part-{k}.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table)
    if fmt == "hf":
        datasets.Dataset(pa.concat_tables(tables)).save_to_disk(str(out / "saved"))
    tasks = streamed_tasks(bible_files, size="count", max_length_ratio=None)
    tasks[0]["data_files"] = {"train": tasks[0]["data_files"]["train"]}  # dev/test: the stream's first rows, each time
    reference = _prepare(tmp_path / "json", tasks)[1].sizes
    if fmt == "hf":
        tasks[0].update(source="hf", path=str(out / "saved"), data_files=None)
    else:
        tasks[0].update(source=fmt, data_files={"train": str(out / f"part-*.{fmt}")})
    _, data = _prepare(tmp_path / "run", tasks)
    for unit in ("examples", "tokens", "characters"):
        assert data.sizes.of(unit)["en-fr"] == reference.of(unit)["en-fr"], unit


class _Failing(torch.utils.data.IterableDataset):
    def __iter__(self):
        raise StreamError("task `en-fr`: reading part-2.jsonl failed (FileNotFoundError: gone); restore it and rerun.")


def test_an_error_raised_in_a_dataloader_worker_is_reported_as_its_own_line():
    from hf_ptjf.cli.policy import one_line as _one_line

    loader = torch.utils.data.DataLoader(_Failing(), batch_size=None, num_workers=1)
    with pytest.raises(StreamError) as caught:
        next(iter(loader))
    assert "Original Traceback" in str(caught.value)  # torch's re-raise carries the worker's traceback
    assert _one_line(caught.value) == ("task `en-fr`: reading part-2.jsonl failed (FileNotFoundError: gone); restore "
                                       "it and rerun.")


def test_inspect_plans_a_streamed_recipe_in_tokens(tmp_path, bible_files, tokenizer, capsys):
    from hf_ptjf.analysis.inspect import main

    recipe = write_recipe(tmp_path / "recipe.yaml", tasks=streamed_tasks(bible_files, size="count"),
                          data={"num_dev": 16, "num_test": 8, "max_source_length": 32, "max_target_length": 32})
    code = main([str(recipe), f"tokenizer.path={tokenizer}", "method_args.mixture.size_unit=tokens"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "recipe budget" in out and " tokens; high-resource = >= " in out
    header = next(line for line in out.splitlines() if line.startswith("stage joint: budget"))
    assert header.endswith("tokens (overfitting threshold 20 passes)")


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory):
    """Bible LM text as the user's files: English in 3 JSON-lines shards (streamed), Swahili in one (map-style)."""
    from hf_ptjf.data.loaders import load_tasks

    folder = tmp_path_factory.mktemp("lm_files")
    corpora = load_tasks([{"name": "lm-en", "type": "lm", "source": "bible", "versions": ["WEB"], "train_size": 1500},
                          {"name": "lm-sw", "type": "lm", "source": "bible", "versions": ["SUV1997"],
                           "train_size": 150}], num_dev=16, num_test=8)
    for name, dsd in corpora.items():
        for split, ds in dsd.items():
            rows = [{"id": r["id"], "text": r["text"]} for r in ds]
            parts = [rows[k::3] for k in range(3)] if (name, split) == ("lm-en", "train") else [rows]
            for k, part in enumerate(parts):
                with open(folder / f"{name}-{split}{f'-{k}' if len(parts) > 1 else ''}.jsonl", "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in part)
    return folder


def lm_tasks(folder, streaming=True):
    files = {s: str(folder / f"lm-en-{s}.jsonl") for s in ("validation", "test")}
    return [
        {"name": "lm-en", "type": "lm", "source": "json", "lang": "en", "streaming": streaming,
         "size": "count" if streaming else None, "data_files": {"train": str(folder / "lm-en-train-*.jsonl"), **files}},
        {"name": "lm-sw", "type": "lm", "source": "json", "lang": "sw",
         "data_files": {s: str(folder / f"lm-sw-{s}.jsonl") for s in ("train", "validation", "test")}},
    ]


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_a_streamed_lm_task_packs_as_the_map_style_path_and_its_recipe_trains(tmp_path, lm_files, family):
    from hf_ptjf.recipe import load_recipe
    from hf_ptjf.runner import run_recipe

    model = {"family": family, "num_layers": 1, "d_model": 32, "d_ff": 64, "num_heads": 2, "dropout_rate": 0.0}
    if family == "llama":
        model["max_position_embeddings"] = 64
    data = {"num_dev": 16, "num_test": 8, "max_source_length": 32, "max_target_length": 32}

    def recipe(name, streaming):
        path = write_recipe(tmp_path / f"{name}.yaml", tasks=lm_tasks(lm_files, streaming), data=data, model=model,
                            method_args={"total_steps": 12, "first_stage_steps": 6, "high_resource": ["lm-en"],
                                         "mixture": {"strategy": "temperature", "tau": 3.33}},
                            tokenizer={"vocab_size": 500, "tau": 3.33, "max_sentences": 2000})
        return load_recipe(path, [f"output_dir={tmp_path / name}"])

    from hf_ptjf.data.prepare import prepare_recipe_data

    streamed = prepare_recipe_data(recipe("streamed", True), tmp_path / "tok")
    loaded = prepare_recipe_data(recipe("loaded", False), tmp_path / "tok")
    # the same tokens, packed the same way within a window (a map batch is 1,000 documents, a window 1,000 raw rows
    # of one shard): only each window's short last row differs, here 3 shards of ~500 documents vs batches of 1,000
    assert streamed.sizes.of("tokens") == loaded.sizes.of("tokens")
    assert streamed.sizes.of("characters") == loaded.sizes.of("characters")  # each window's rows add up to its text
    rows, map_rows = streamed.sizes.of("examples"), loaded.sizes.of("examples")
    assert rows["lm-sw"] == map_rows["lm-sw"] and 0 <= rows["lm-en"] - map_rows["lm-en"] <= 3
    results = run_recipe(recipe("streamed", True))
    assert results["complete"] and all(np.isfinite(t["final_loss"]) for t in results["tasks"].values())
    assert sum(results["stages"][1]["examples_seen"].values()) == 6 * 8


def test_a_resumed_mixture_stream_gives_the_same_batches_with_a_noisy_collator(tmp_path, shards, tokenizer):
    """Span corruption draws its noise from the batch's position, so batches after a resume are the same tensors."""
    from transformers import AutoTokenizer

    from hf_ptjf.data.collators import SpanCorruptionCollator
    from hf_ptjf.mixture.stream import STREAM_STATE, MixtureStream

    tok = AutoTokenizer.from_pretrained(tokenizer)

    def rows(window):
        return {"input_ids": tok([f"{t} and more words to corrupt here" for t in window["text"]])["input_ids"],
                "id": window["id"]}

    streams = [TaskStream.from_iterable(
        n, datasets.load_dataset("json", data_files=f, split="train", streaming=True), window=50, transform=rows)
        for n, f in (("a", shards[:2]), ("b", shards[2:]))]
    collator = SpanCorruptionCollator(tok, seed=0)

    def batches(start=0, states=None, n=8):
        stream = MixtureStream(streams, [0.6, 0.4], batch_size=4, collator=collator, seed=1, start_batch=start,
                               reader_states=states)
        out = []
        for batch in stream:
            out.append(batch)
            if len(out) == n:
                return out

    full = batches()
    states = {full[3][STREAM_STATE]["reader"]: full[3][STREAM_STATE]["tasks"]}
    resumed = batches(4, json.loads(json.dumps(states)), n=4)
    for a, b in zip(full[4:], resumed):
        assert a[STREAM_STATE]["batch"] == b[STREAM_STATE]["batch"]
        for key in ("input_ids", "labels", "task_id"):
            assert torch.equal(a[key], b[key]), key
    assert not torch.equal(full[4]["input_ids"], full[5]["input_ids"])  # (real, different batches)
