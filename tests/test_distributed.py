"""Two CPU processes under `accelerate launch`: the stream is shared, batches are distinct, counts add up."""

import json

import pytest

from .distributed import ROOT, accelerate_launch
from .toy import collate, tiny_t5, toy_mixture


@pytest.fixture(scope="module")
def ddp_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    accelerate_launch("cpu_ddp2.yaml", ROOT / "tests" / "scripts" / "ddp_check.py", str(out))
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_ranks_get_distinct_batches_of_one_stream(ddp_result):
    from hf_ptjf.mixture.sampler import TemperatureMixtureSampler

    assert ddp_result["world_size"] == 2
    rank0, rank1 = ddp_result["batches"]["0"], ddp_result["batches"]["1"]
    stream = TemperatureMixtureSampler([1000, 50, 7], 64, temperature=2.0, seed=3).indices(0, 64).tolist()
    # accelerate hands out consecutive batches of the global stream round-robin
    interleaved = [i for pair in zip(rank0, rank1) for batch in pair for i in batch]
    assert interleaved == stream
    assert len(rank0) == len(rank1) == 8


@pytest.mark.slow
def test_counts_are_summed_across_ranks_and_loss_matches_one_process(ddp_result, tmp_path):
    from hf_ptjf.train import MixtureTrainer, MixtureTrainingArguments

    logs = ddp_result["logs"]
    last = logs[-1]
    assert [last["examples_seen_hr"], last["examples_seen_lr"]] == ddp_result["sampler_counts"]
    # one process with the same global batch (8) sees the same examples: the first loss agrees
    train, _ = toy_mixture()
    args = MixtureTrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, learning_rate=5e-3, logging_steps=1,
        save_strategy="no", eval_strategy="no", report_to=[], seed=7, use_cpu=True, disable_tqdm=True,
        mixture_strategy="temperature", mixture_tau=3.0,
    )
    single = MixtureTrainer(model=tiny_t5(), args=args, train_datasets=train, data_collator=collate)
    single.train()
    first = [h for h in single.state.log_history if "loss" in h][0]
    assert logs[0]["loss"] == pytest.approx(first["loss"], rel=0.1)
