"""Run under `accelerate launch` (DeepSpeed ZeRO-3, 2 CPU processes): load checkpoint folder ARGV[1] with
`hf_ptjf.modeling.build_model` (partitioned, one shard at a time), then write it again with
`hf_ptjf.shards.save_sharded` to ARGV[2]/resaved in shards of ARGV[3]. Each rank writes ARGV[2]/rank<r>.json: its
RSS before the (second) load, that load's peak (VmHWM reset before it), the elements it holds locally, the full count.
"""

import gc
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import TrainingArguments  # noqa: E402

from hf_ptjf.modeling import ModelArguments, build_model  # noqa: E402
from hf_ptjf.runner.host_memory import return_freed_memory, trim_heap  # noqa: E402
from hf_ptjf.runner.phases import memory_status, reset_peak  # noqa: E402
from hf_ptjf.shards import save_sharded  # noqa: E402


def main(folder: str, out: str, max_shard_size: str) -> None:
    # the training arguments first, as the runner does: they make transformers' ZeRO-3 config active
    args = TrainingArguments(output_dir=f"{out}/args", ddp_backend="gloo", report_to=[], per_device_train_batch_size=1)
    rank = args.process_index
    return_freed_memory()  # (as the runner does on CPU)
    # a first load warms up what a process sets up once (gloo, DeepSpeed's zero.Init); the second one is measured
    del_model = build_model(ModelArguments(name_or_path=folder))
    del del_model
    gc.collect()
    trim_heap()
    reset_peak()
    before = memory_status()["VmRSS"]
    model = build_model(ModelArguments(name_or_path=folder))
    peak = memory_status()["VmHWM"]
    params = list(model.parameters())
    row = {"rank": rank, "world_size": args.world_size, "rss_before_kib": before, "load_peak_kib": peak,
           "local_numel": sum(p.numel() + getattr(getattr(p, "ds_tensor", None), "numel", lambda: 0)() for p in params),
           "full_numel": sum(int(getattr(p, "ds_numel", p.numel())) for p in params),
           "partitioned": all(hasattr(p, "ds_id") for p in params)}
    save_sharded(model, f"{out}/resaved", max_shard_size=max_shard_size, is_writer=rank == 0)
    Path(out, f"rank{rank}.json").write_text(json.dumps(row))
    args.distributed_state.wait_for_everyone()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(*sys.argv[1:4])
