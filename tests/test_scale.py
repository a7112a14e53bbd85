"""The 13B path at CI size (issue 27): sharded consolidated saves, the ZeRO-3 load one shard at a time, the streamed
push, measured per phase against the model size (docs/scale.md has the same at ~0.5B parameters).

The slow tests run ``bench/scale_rehearsal.py``'s :func:`rehearse` on the 0.5B recipes shrunk to ~35-40M parameters
(2-process ZeRO-3 on CPU, the offline Hub in its own process) and assert, relative to the model's size:

* a rank's memory while loading the pinned sha grows by less than the full fp32 model (from_pretrained under ZeRO-3
  reads every shard into one state dict on rank 0: the full model plus the rank's partition);
* the Hub server's and the pushing client's memory grow by less than two of the largest shard during the push;
* the shards round-trip: the pushed sha256s, the downloaded tensors and ``from_pretrained`` of the pinned sha equal
  the local consolidated output, and a ZeRO-3 load re-saved gives the same tensors bit for bit.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_ptjf.memory import plan_cpu_zero3_phases
from hf_ptjf.modeling import ModelArguments, build_config, build_model, count_parameters
from hf_ptjf.recipe import RecipeError, load_recipe
from hf_ptjf.shards import checkpoint_files, load_sharded, plan_shards, save_sharded

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
# the 0.5B recipes shrunk to CI size (~35M / ~40M parameters), in 4 shards
CI_SIZES = {
    "llama": ["model.num_layers=8", "model.d_model=512", "model.d_ff=1536", "model.num_heads=8",
              "max_shard_size=40MB"],
    "t5": ["model.num_layers=4", "model.d_model=512", "model.d_ff=1536", "model.num_heads=8", "max_shard_size=40MB"],
}
TINY = {"llama": dict(family="llama", num_kv_heads=2), "t5": dict(family="t5", tie_word_embeddings=False),
        "t5-tied": dict(family="t5"), "llama-tied": dict(family="llama", tie_word_embeddings=True)}


def _tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelArguments(vocab_size=300, d_model=64, d_ff=128, num_layers=2, num_heads=4, **TINY[kind]))


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path in checkpoint_files(folder):
        out.update(load_file(str(path)))
    return out


@pytest.mark.parametrize("kind", sorted(TINY))
def test_sharded_save_writes_what_save_pretrained_writes_and_reloads_bit_identical(kind, tmp_path):
    model = _tiny(kind)
    files = save_sharded(model, tmp_path / "sharded", max_shard_size="100KB")
    model.save_pretrained(tmp_path / "plain")
    ours, theirs = _tensors(tmp_path / "sharded"), load_file(str(tmp_path / "plain" / "model.safetensors"))
    assert len(files) > 2 and (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    again = build_model(ModelArguments(name_or_path=str(tmp_path / "sharded")))  # transformers reads the shards
    state = again.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_load_sharded_fills_a_fresh_model_one_shard_at_a_time(tmp_path):
    model = _tiny("t5")
    save_sharded(model, tmp_path, max_shard_size="50KB")
    torch.manual_seed(1)  # other initial weights
    fresh = build_model(ModelArguments(vocab_size=300, d_model=64, d_ff=128, num_layers=2, num_heads=4,
                                       tie_word_embeddings=False))
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert load_sharded(fresh, checkpoint_files(tmp_path)) == set()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


def test_shards_stay_under_max_shard_size_and_one_large_tensor_gets_its_own():
    model = _tiny("llama")
    limit = 40_000
    for shard in plan_shards(model, limit):
        sizes = [dict(model.named_parameters())[k].numel() * 4 for k in shard]
        assert sum(sizes) <= limit or len(shard) == 1
    assert len(plan_shards(model)) == 1  # the default, 5GB


def test_max_shard_size_is_a_recipe_field_left_out_of_the_record_at_its_default():
    recipe = ROOT / "recipes" / "configs" / "quickstart.yaml"
    assert "max_shard_size" not in load_recipe(recipe).to_dict()  # (existing run directories stay valid)
    assert load_recipe(recipe, ["max_shard_size=2GB"]).to_dict()["max_shard_size"] == "2GB"
    with pytest.raises(RecipeError, match=r"`max_shard_size` must be a size such as \"5GB\""):
        load_recipe(recipe, ["max_shard_size=5 gigs"])


def test_the_phase_planner_adds_the_main_process_shard_and_the_training_states():
    config = build_config(ModelArguments(family="llama", d_model=256, d_ff=512, num_layers=2, num_heads=4),
                          vocab_size=1000)
    plans = {p.phase: p for p in plan_cpu_zero3_phases(config, 2, micro_batch_size=2, source_length=16,
                                                       target_length=16, max_shard_bytes=10**6)}
    total = count_parameters(config)
    assert plans["train"].terms["model states (5 x 4P/n)"] == 5 * (4 * total // 2)
    assert plans["load_pinned"].rank0_bytes - plans["load_pinned"].other_bytes == 10**6
    assert plans["save"].rank0_bytes > plans["save"].other_bytes == plans["push"].other_bytes + 4 * 256 * 1000


# ---------------------------------------------------------------------- two processes, ZeRO-3, CI-sized
def _bench():
    spec = importlib.util.spec_from_file_location("scale_rehearsal", ROOT / "bench" / "scale_rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _phase(result: dict, stage: str, phase: str) -> dict:
    return next(p for p in result["phases"] if p["stage"] == stage and p["phase"] == phase)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_the_13b_path_at_ci_size(family, tmp_path):
    from .distributed import accelerate_launch

    bench = _bench()
    recipe = str(ROOT / "recipes" / "configs" / f"scale_{family}_0p5b.yaml")
    result = bench.rehearse(recipe, CI_SIZES[family], work=tmp_path / "work", timeout=1200)
    full_mib = 4 * result["parameters"] / MIB  # the fp32 model
    part_mib = full_mib / 2
    checks = result["checks"]
    largest_shard_mib = max(max(c["shard_bytes"]) for c in checks.values()) / MIB
    # several shards, each pushed and downloaded intact, accepted by from_pretrained, the same tensors
    for check in checks.values():
        assert len(check["shards"]) >= 4, check["shards"]  # (40 MB shards of a 140-160 MB model)
        assert all(check["pushed_sha256_equal"].values()) and check["downloaded"]["same_files"]
        assert check["downloaded"]["tensors"] > 0 and not check["downloaded"]["differ"]
        assert not check["from_pretrained"]["differ"]
    # the load at the pinned sha grows no rank by the full model plus its partition (what from_pretrained's path adds
    # at the least on rank 0). At this size the libraries' and the allocator's memory (tens of MiB, run to run) blurs
    # the margin (rank 0 grew by 204 MiB of a 227 MiB bound in a run beside other jobs); the 0.5B runs show the
    # margin (docs/scale.md: 1,408 MiB against 2,733).
    load = _phase(result, "joint", "load")
    for rank in (0, 1):
        assert load[f"rank{rank}_peak_mib"] - load[f"rank{rank}_start_mib"] < part_mib + full_mib, load
    # the push streams: the server and the client within two of the largest shard
    push = _phase(result, "pretrain", "push")
    assert push["server_peak_mib"] - result["server_idle_mib"] < 2 * largest_shard_mib, (push, largest_shard_mib)
    assert push["rank0_peak_mib"] - push["rank0_start_mib"] < 2 * largest_shard_mib, push
    assert any(k.endswith("_bleu") for k in result["metrics"]["joint"])  # generate ran under ZeRO-3
    # a ZeRO-3 load of the stage output, written again, is the same bit for bit; no rank held the full model
    local = Path(result["work"]) / "run" / "stages" / "0-pretrain" / "final"
    out = tmp_path / "reload"
    accelerate_launch("cpu_zero3_2proc_ram.yaml", ROOT / "tests" / "scripts" / "zero3_reload.py", str(local), str(out),
                      "40MB", timeout=600)
    compared = bench.compare_tensors(local, out / "resaved")
    assert compared["same_files"] and compared["tensors"] > 0 and not compared["differ"]
    for rank in (0, 1):
        row = json.loads((out / f"rank{rank}.json").read_text())
        assert row["partitioned"] and row["local_numel"] < 0.6 * row["full_numel"], row
        assert (row["load_peak_kib"] - row["rss_before_kib"]) / 1024 < part_mib + 0.6 * full_mib, row
