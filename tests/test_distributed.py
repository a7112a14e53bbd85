"""Two CPU processes under `accelerate launch`: the stream is shared, batches are distinct, counts add up, and the
training is the same maths as one process at the same global batch."""

import json

import pytest
import torch

from .distributed import ROOT, accelerate_launch
from .toy import tiny_t5

SCRIPT = ROOT / "tests" / "scripts" / "ddp_check.py"
# What differs between two runs by nature (wall-clock measurements), not by their maths.
TIMINGS = ("_runtime", "_per_second")
# Tolerance of the 2-process vs 1-process comparison (relative, per logged float and per weight). Both runs take
# the same two batches of 4 per step (the 2 ranks one each; the 1 process as 2 accumulated batches, sharded from
# the same sampler stream) and step on the mean of the two batch-mean losses' gradients: (g0 + g1) / 2 reduced by
# gloo versus g0 / 2 + g1 / 2 accumulated in `.grad`, the same up to the order of float additions. Measured
# (torch 2.13, gloo, one thread per process): bitwise identical logs and weights after 6 steps. 1e-6 leaves room
# for another reduction order; a change of the maths is far larger: one process taking the token mean over all 8
# examples (per-device batch 8, no accumulation) moves the logged losses by 1.7e-4 to 7e-3 relative and the
# weights by up to 1.8e-2. Weights near zero also get WEIGHT_ABS (absolute): a relative bound means little there.
REL = 1e-6
WEIGHT_ABS = 1e-7


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """The script on 2 processes (per-device batch 4) and on 1 process (2 accumulated batches of 4)."""
    results = {}
    for name, config in (("two", "cpu_ddp2.yaml"), ("one", "cpu_single.yaml")):
        out = tmp_path_factory.mktemp(f"ddp-{name}")
        accelerate_launch(config, SCRIPT, str(out))
        results[name] = json.loads((out / "result.json").read_text())
        results[name]["weights"] = torch.load(out / "weights.pt")
    return results


@pytest.fixture(scope="module")
def ddp_result(ddp_runs):
    return ddp_runs["two"]


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
def test_counts_are_summed_across_ranks(ddp_result):
    last = [h for h in ddp_result["logs"] if "loss" in h][-1]
    assert [last["examples_seen_hr"], last["examples_seen_lr"]] == ddp_result["sampler_counts"]


def _compared(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.endswith(TIMINGS)}


@pytest.mark.slow
def test_two_processes_log_what_one_process_logs_at_the_same_global_batch(ddp_runs):
    two, one = ddp_runs["two"], ddp_runs["one"]
    assert (two["world_size"], two["gradient_accumulation_steps"]) == (2, 1)
    assert (one["world_size"], one["gradient_accumulation_steps"]) == (1, 2)
    assert two["torch_threads"] == one["torch_threads"] == 1
    assert [h["step"] for h in two["logs"] if "loss" in h] == list(range(1, 7))  # several optimizer steps
    assert sum(f"eval_{t}_loss" in h for h in two["logs"] for t in ("hr", "lr")) == 4  # at steps 3 and 6
    assert len(two["logs"]) == len(one["logs"])
    for a, b in zip(two["logs"], one["logs"]):
        a, b = _compared(a), _compared(b)
        assert a.keys() == b.keys(), (a, b)
        for key in a:  # losses (overall, per task, eval per task), grad norm, LR, counts: every logged value
            if isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], rel=REL, abs=0), (a["step"], key)
            else:
                assert a[key] == b[key], (a["step"], key)


@pytest.mark.slow
def test_two_processes_end_with_the_weights_of_one_process(ddp_runs):
    two, one = ddp_runs["two"]["weights"], ddp_runs["one"]["weights"]
    init = tiny_t5(dropout=0.0).state_dict()
    assert two.keys() == one.keys() == init.keys()
    moved = max((two[k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-3  # the comparison is not of untrained weights
    for name in two:
        torch.testing.assert_close(two[name], one[name], rtol=REL, atol=WEIGHT_ABS, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow
def test_a_resume_with_dropout_on_two_processes_continues_exactly(tmp_path):
    """2-process DDP, dropout 0.3, map-style and streamed, fixed rates and ODM: the resumed run's losses (and online
    rates) after the checkpoint and its final weights equal the uninterrupted run's, bit for bit, and both ranks hold
    the same online state (tests/scripts/ddp_resume_check.py)."""
    accelerate_launch("cpu_ddp2.yaml", ROOT / "tests" / "scripts" / "ddp_resume_check.py", str(tmp_path), timeout=1200)
    result = json.loads((tmp_path / "resume.json").read_text())
    for case in ("map", "stream", "map-odm", "stream-odm"):
        got = result[case]
        assert got["world_size"] == 2
        assert [s for s, _, _ in got["full"]] == list(range(5, 9)), case
        assert got["resumed"] == got["full"], case
        assert got["same_weights"], case
    for case in ("map-odm", "stream-odm"):
        assert len({r for _, _, r in result[case]["full"]}) > 1, case  # the rates changed after the checkpoint
        ranks = [json.loads((tmp_path / case / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert ranks[0] == ranks[1] and ranks[0]["strategy"]["t"] == 4, case
